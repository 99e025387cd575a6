"""Input checks shared by every level of the library.

Each check raises a ``TypeError`` or ``ValueError`` whose message names the argument, says what
shape (or type) it got and what was expected, in words a learner can act on. Keeping them here means
the loops, NumPy and PyTorch levels word the same mistake the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def shape_str(shape: Sequence[int]) -> str:
    """Format a shape as ``(2, 3)``, the way the book writes shapes."""
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def require_array(name: str, x: Any) -> np.ndarray:
    """Return ``x`` as a floating NumPy array, or raise TypeError naming ``name``."""
    if not isinstance(x, np.ndarray):
        try:
            import torch

            if isinstance(x, torch.Tensor):
                raise TypeError(
                    f"{name} must be a NumPy array, got a torch.Tensor of shape "
                    f"{shape_str(x.shape)}; call {name}.numpy() first, or use "
                    "selfattention.multihead for tensors."
                )
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        if isinstance(x, (list, tuple)):
            x = np.asarray(x, dtype=np.float64)
        else:
            raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}.")
    if not (np.issubdtype(x.dtype, np.floating)):
        if np.issubdtype(x.dtype, np.integer):
            x = x.astype(np.float64)
        else:
            raise TypeError(f"{name} must hold floating-point numbers, got dtype {x.dtype}.")
    return x


def require_tensor(name: str, x: Any, floating: bool = True):
    """Raise TypeError unless ``x`` is a torch.Tensor (of a floating dtype when asked)."""
    import torch

    if not isinstance(x, torch.Tensor):
        hint = ""
        if isinstance(x, np.ndarray):
            hint = f" (a NumPy array of shape {shape_str(x.shape)}; wrap it with torch.from_numpy)"
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}{hint}.")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}.")
    return x


def require_ndim(name: str, shape: Sequence[int], min_ndim: int, expected: str) -> None:
    """Raise ValueError unless the shape has at least ``min_ndim`` dimensions."""
    if len(shape) < min_ndim:
        raise ValueError(
            f"{name} must have shape {expected} (at least {min_ndim} dimensions), "
            f"got shape {shape_str(shape)}."
        )


def require_nonempty(name: str, shape: Sequence[int], axis: int, what: str) -> None:
    """Raise ValueError when the sequence axis is empty (attention over nothing is undefined)."""
    if shape[axis] == 0:
        raise ValueError(
            f"{name} has an empty {what} (shape {shape_str(shape)}): attention needs at least "
            "one token."
        )


def check_qkv_shapes(q_shape, k_shape, v_shape, names=("Q", "K", "V")) -> None:
    """Check Q (..., T, d_k), K (..., S, d_k), V (..., S, d_v) agree, with learner-facing messages."""
    qn, kn, vn = names
    require_ndim(qn, q_shape, 2, "(..., T, d_k)")
    require_ndim(kn, k_shape, 2, "(..., S, d_k)")
    require_ndim(vn, v_shape, 2, "(..., S, d_v)")
    require_nonempty(qn, q_shape, -2, "query sequence T")
    require_nonempty(kn, k_shape, -2, "key sequence S")
    if q_shape[-1] != k_shape[-1]:
        raise ValueError(
            f"{qn} and {kn} must have the same last dimension d_k: {qn} has shape "
            f"{shape_str(q_shape)} (d_k={q_shape[-1]}) but {kn} has shape {shape_str(k_shape)} "
            f"(d_k={k_shape[-1]})."
        )
    if k_shape[-2] != v_shape[-2]:
        raise ValueError(
            f"{kn} and {vn} must have the same number of positions S: {kn} has shape "
            f"{shape_str(k_shape)} (S={k_shape[-2]}) but {vn} has shape {shape_str(v_shape)} "
            f"(S={v_shape[-2]})."
        )
    try:
        np.broadcast_shapes(tuple(q_shape[:-2]), tuple(k_shape[:-2]), tuple(v_shape[:-2]))
    except ValueError:
        raise ValueError(
            f"the batch dimensions of {qn} {shape_str(q_shape)}, {kn} {shape_str(k_shape)} and "
            f"{vn} {shape_str(v_shape)} do not broadcast: everything before the last two "
            "dimensions must match (or be 1)."
        ) from None


def check_mask_shape(name: str, mask_shape, target_shape, expected: str = "(..., T, S)") -> None:
    """Raise ValueError unless the mask broadcasts to the scores' shape (..., T, S)."""
    try:
        out = np.broadcast_shapes(tuple(mask_shape), tuple(target_shape))
    except ValueError:
        out = None
    if out != tuple(target_shape):
        raise ValueError(
            f"{name} must broadcast to the scores' shape {expected} = {shape_str(target_shape)}, "
            f"got shape {shape_str(mask_shape)}."
        )


def require_padding_mask(mask: Any, shape: Sequence[int], expected: str) -> None:
    """Check a padding mask: a bool tensor (True = a real token) of exactly ``shape``.

    ``expected`` is the shape in the book's letters, e.g. ``"(B, T)"``, for the message.
    """
    import torch

    require_tensor("padding_mask", mask, floating=False)
    if mask.dtype != torch.bool:
        raise TypeError(
            f"padding_mask must have dtype torch.bool (True = real token), got {mask.dtype}."
        )
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"padding_mask must have shape {expected} = {shape_str(shape)}, got shape "
            f"{shape_str(mask.shape)}."
        )
