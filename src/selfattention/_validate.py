"""Input checks shared by every level of the library.

Each check raises a ``TypeError`` or ``ValueError`` whose message names the argument, says what
shape (or type) it got and what was expected, in words a learner can act on. Keeping them here means
the loops, NumPy and PyTorch levels word the same mistake the same way.
"""

from __future__ import annotations

import numbers
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
            x = _nested_list_to_array(name, x)
        else:
            raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}.")
    if not (np.issubdtype(x.dtype, np.floating)):
        if np.issubdtype(x.dtype, np.integer):
            x = x.astype(np.float64)
        else:
            raise TypeError(f"{name} must hold floating-point numbers, got dtype {x.dtype}.")
    return x


def _nested_list_to_array(name: str, x: list | tuple) -> np.ndarray:
    """A float64 array from nested lists, or an error naming ``name`` (not NumPy's own words)."""
    try:
        arr = np.asarray(x)
    except ValueError:  # NumPy's "inhomogeneous shape": rows of different lengths
        raise ValueError(
            f"{name} is a ragged nested list: its rows have different lengths, so it is not a "
            f"matrix. Every row of {name} must have the same length."
        ) from None
    if arr.dtype.kind not in "biuf":
        example = f" such as {arr.flat[0]!r}" if arr.size else ""
        raise TypeError(f"{name} must hold numbers, got a list holding {arr.dtype} values{example}.")
    return arr.astype(np.float64)


def require_int(name: str, value: Any, minimum: int | None = 1) -> int:
    """Return ``value`` as a Python int, or raise naming ``name``.

    ``minimum=None`` checks the type only (for callers whose bound needs a message of its own).

    Python and NumPy integers are accepted (``np.int64(4)`` is as good as ``4``); ``bool`` is not,
    although Python counts it as an int (``True`` as a size is always a slip).

    Raises:
        TypeError: ``value`` is not an integer (a float, a bool, a string...).
        ValueError: ``value`` < ``minimum``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        bound = "" if minimum is None else f" >= {minimum}"
        raise TypeError(f"{name} must be an int{bound}, got {value!r} (a {type(value).__name__}).")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {int(value)}.")
    return int(value)


def require_real(name: str, value: Any, expected: str = "a real number") -> float:
    """Return ``value`` as a float, or raise TypeError naming ``name``.

    Any real number, Python or NumPy, int or float, is fine; a bool is not (``True`` as a
    temperature is always a slip). ``expected`` words the requirement in the message.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {value!r} (a {type(value).__name__}).")
    return float(value)


def require_same_dtype(names: Sequence[str], tensors: Sequence[Any]) -> None:
    """Raise TypeError unless every tensor (or array) has the same dtype; the message lists them."""
    dtypes = [t.dtype for t in tensors]
    if any(d != dtypes[0] for d in dtypes[1:]):
        got = ", ".join(f"{n} {d}" for n, d in zip(names, dtypes))
        raise TypeError(
            f"{_join(names)} must share one dtype, got {got}; convert them to one dtype first "
            "(e.g. .float() on each)."
        )


def require_same_leading(names: Sequence[str], shapes: Sequence[Sequence[int]]) -> None:
    """Raise ValueError unless the shapes agree on every dimension before the last two."""
    leads = [tuple(s[:-2]) for s in shapes]
    if any(lead != leads[0] for lead in leads[1:]):
        got = ", ".join(f"{n} {shape_str(s)}" for n, s in zip(names, shapes))
        raise ValueError(
            f"{_join(names)} must have the same leading dimensions (everything before the last "
            f"two, no broadcasting), got {got}."
        )


def check_qkv_tensors(q: Any, k: Any, v: Any, same_leading: bool = False) -> None:
    """The torch-level checks of q (..., T, d_k), k (..., S, d_k), v (..., S, d_v).

    Each is a floating tensor, the shapes agree (:func:`check_qkv_shapes`), the three share one
    dtype and, with ``same_leading``, the leading dimensions match exactly instead of
    broadcasting (for code that flattens them into one batch).
    """
    names = ("q", "k", "v")
    for name, t in zip(names, (q, k, v)):
        require_tensor(name, t)
    check_qkv_shapes(q.shape, k.shape, v.shape, names=names)
    if same_leading:
        require_same_leading(names, (q.shape, k.shape, v.shape))
    require_same_dtype(names, (q, k, v))


def require_input_dtype(name: str, x: Any, dtype: Any, owner: str = "layer") -> None:
    """Raise TypeError when an input's dtype differs from the weights' dtype, with both fixes."""
    if x.dtype != dtype:
        to = str(dtype).replace("torch.", "")
        raise TypeError(
            f"{name} has dtype {x.dtype} but the {owner}'s weights are {dtype}: torch cannot "
            f"multiply them together. Convert the input ({name}.to(torch.{to}), e.g. "
            f"{name}.float() for float32) or the {owner} (e.g. {owner}.double() for float64)."
        )


def _join(names: Sequence[str]) -> str:
    """``q, k and v``: the argument names as a sentence."""
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


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


def require_ndim_exact(name: str, shape: Sequence[int], expected: str) -> None:
    """Raise ValueError unless the shape has as many dimensions as ``expected`` names.

    ``expected`` is the shape in the book's letters, e.g. ``"(B, T, d_model)"``.
    """
    ndim = expected.count(",") + 1
    if len(shape) != ndim:
        raise ValueError(
            f"{name} must have shape {expected} ({ndim} dimensions), got shape {shape_str(shape)} "
            f"({len(shape)} dimensions)."
        )


def require_nonempty(name: str, shape: Sequence[int], axis: int, what: str) -> None:
    """Raise ValueError when the sequence axis is empty (attention over nothing is undefined)."""
    if shape[axis] == 0:
        raise ValueError(
            f"{name} has an empty {what} (shape {shape_str(shape)}): attention needs at least one token."
        )


def check_qkv_shapes(q_shape, k_shape, v_shape, names=("Q", "K", "V")) -> None:
    """Check Q (..., T, d_k), K (..., S, d_k), V (..., S, d_v) agree, with learner-facing messages."""
    qn, kn, vn = names
    require_ndim(qn, q_shape, 2, "(..., T, d_k)")
    require_ndim(kn, k_shape, 2, "(..., S, d_k)")
    require_ndim(vn, v_shape, 2, "(..., S, d_v)")
    require_nonempty(qn, q_shape, -2, "query sequence T")
    require_nonempty(kn, k_shape, -2, "key sequence S")
    if q_shape[-1] == 0:
        raise ValueError(
            f"{qn} has d_k = 0 (shape {shape_str(q_shape)}): a score needs at least one feature, "
            "and 1/sqrt(d_k) would divide by zero."
        )
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
        raise TypeError(f"padding_mask must have dtype torch.bool (True = real token), got {mask.dtype}.")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"padding_mask must have shape {expected} = {shape_str(shape)}, got shape "
            f"{shape_str(mask.shape)}."
        )
