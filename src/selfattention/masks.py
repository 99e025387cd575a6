"""Boolean attention masks, True = attend (the convention of torch's SDPA).

``nn.MultiheadAttention``'s ``key_padding_mask`` uses the opposite polarity (True = ignore);
chapter 6 shows what goes wrong when the two are mixed up.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ._validate import require_int

_ALIGNS = ("top_left", "bottom_right")


def causal_mask(
    T: int,
    S: int | None = None,
    device: torch.device | str | None = None,
    align: str = "top_left",
) -> torch.Tensor:
    """Causal mask of shape (T, S), dtype bool, True = query i may attend to key j.

    Args:
        T: number of queries (>= 1).
        S: number of keys (>= 1); defaults to T.
        device: where to build the mask.
        align: ``"top_left"`` (the default) lets query i see keys j <= i, which is exactly what
            torch's ``is_causal=True`` does. ``"bottom_right"`` lets query i see keys
            j <= i + (S - T): the last query sees every key. Decoding with a KV cache, where the T
            new queries are the *last* T positions of S, needs bottom-right. For T == S the two agree.
    Raises:
        TypeError: T or S is not an int (NumPy integers are fine).
        ValueError: T or S < 1, or an unknown ``align``.
    """
    T = require_int("T", T)
    S = T if S is None else require_int("S", S)
    if align not in _ALIGNS:
        raise ValueError(f"align must be one of {_ALIGNS}, got {align!r}.")
    diagonal = 0 if align == "top_left" else S - T
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=diagonal)


def padding_mask(
    lengths: Sequence[int] | torch.Tensor, T: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Padding mask of shape (B, T), dtype bool, True = a real token, False = padding.

    Sentence b has its ``lengths[b]`` real tokens first, then padding. To hide padded *keys* from
    every query, use ``padding_mask(...)[:, None, None, :]`` as an SDPA mask of shape (B, 1, 1, T).
    torch's ``nn.MultiheadAttention`` wants the negation: ``key_padding_mask = ~padding_mask(...)``.

    Args:
        lengths: B integers (a list, NumPy array or integer tensor), the real tokens per sentence.
        T: the padded length (an int >= 1; NumPy integers are fine).
    Raises:
        TypeError: ``lengths`` does not hold integers (floats, bools, strings), or T is not an int.
        ValueError: a length is < 0 or > T, T < 1, or ``lengths`` is not one-dimensional.
    """
    T = require_int("T", T)
    lengths_t = _lengths_tensor(lengths, device)
    if lengths_t.ndim != 1:
        raise ValueError(
            f"lengths must be one-dimensional (one length per sentence, shape (B,)), got shape "
            f"{tuple(lengths_t.shape)}."
        )
    if lengths_t.numel() and (lengths_t.min() < 0 or lengths_t.max() > T):
        raise ValueError(f"every length must lie in [0, T] = [0, {T}], got lengths {lengths_t.tolist()}.")
    positions = torch.arange(T, device=lengths_t.device)
    return positions[None, :] < lengths_t[:, None]


def _lengths_tensor(lengths: object, device: torch.device | str | None) -> torch.Tensor:
    """``lengths`` as an integer tensor, refusing what would silently mean something else."""
    if isinstance(lengths, torch.Tensor):
        values = lengths
        if lengths.dtype == torch.bool:
            kind = "b"
        else:
            kind = "f" if lengths.is_floating_point() or lengths.is_complex() else "i"
    else:
        try:
            values = np.asarray(lengths)
        except ValueError:  # NumPy's "inhomogeneous shape"
            raise ValueError(
                f"lengths must be a flat list of integers (one per sentence), got {lengths!r}."
            ) from None
        if values.size == 0:
            values = values.astype(np.int64)  # no sentences: np.asarray([]) is float64
        kinds = {"b": "b", "i": "i", "u": "i", "f": "f", "c": "f"}
        kind = kinds.get(values.dtype.kind, "other")
    if kind == "b":
        # A boolean mask is already a padding mask; read as lengths it would mean 1s and 0s.
        raise TypeError(
            "lengths must hold integers (the number of real tokens per sentence), got booleans: "
            "that looks like a mask already. Pass lengths such as [3, 2], or use the boolean "
            "mask itself."
        )
    if kind == "f":
        raise TypeError(
            f"lengths must hold integers (a sentence has a whole number of tokens), got floats "
            f"{values.tolist()}."
        )
    if kind == "other":
        raise TypeError(
            f"lengths must hold integers (one per sentence), got {lengths!r} of dtype {values.dtype}."
        )
    return torch.as_tensor(values, device=device)


def sliding_window_mask(T: int, window: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Causal local mask (T, T), True = attend: query i sees keys i - window + 1 .. i.

    Raises:
        TypeError: ``window`` is not an int.
        ValueError: ``window`` < 1.
    """
    window = require_int("window", window)
    c = causal_mask(T, device=device)
    return c & ~causal_mask(T, device=device).tril(diagonal=-window)


def to_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Turn a boolean mask (True = attend) into a float mask: 0 where True, -inf where False."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor of dtype torch.bool, got {type(mask).__name__}.")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must have dtype torch.bool, got {mask.dtype}.")
    out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return out.masked_fill_(~mask, float("-inf"))
