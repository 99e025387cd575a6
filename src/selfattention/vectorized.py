"""Level 2: attention as matrix products in NumPy.

The same maths as :mod:`selfattention.loops`, written as three array operations:
``scores = Q @ K^T * scale``, a row-wise softmax, ``out = weights @ V``. Any leading batch
dimensions broadcast, so one call handles a batch of sentences or of heads.

The softmax works in place on the score matrix: with T = S = 2048 and 8 heads one (T, S) float32
array is 128 MiB, and every avoidable temporary of that size costs time (page faults) and memory.
"""

from __future__ import annotations

import numpy as np

from ._validate import check_mask_shape, check_qkv_shapes, require_array, shape_str


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``; returns a new array of x's shape.

    Subtracts the maximum along ``axis`` first so no exponent is positive (float32 logits of 1e4 stay
    finite). Slices that are entirely -inf (fully masked rows) give zeros, not NaN.

    Raises:
        TypeError: ``x`` is not a floating array.
        ValueError: ``axis`` is out of range or the axis is empty.
    """
    x = require_array("x", x)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis={axis} is out of range for x of shape {shape_str(x.shape)}.")
    if x.shape[axis] == 0:
        raise ValueError(f"x has an empty axis {axis} (shape {shape_str(x.shape)}).")
    out = np.array(x, copy=True)
    _softmax_inplace(out, axis)
    return out


def _softmax_inplace(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax of ``a`` along ``axis``, overwriting ``a`` (which must be a float array)."""
    m = a.max(axis=axis, keepdims=True)
    # A row of only -inf has max -inf; shifting by it would give NaN (-inf - -inf). Shift by 0.
    m[~np.isfinite(m)] = 0.0
    np.subtract(a, m, out=a)
    np.exp(a, out=a)
    total = a.sum(axis=axis, keepdims=True)
    # A fully masked row sums to 0: divide by 1 so it stays all zeros.
    total[total == 0] = 1.0
    np.divide(a, total, out=a)
    return a


def causal_mask(T: int, S: int | None = None) -> np.ndarray:
    """Boolean (T, S) array, True = attend: query i sees keys j <= i (top-left, as torch aligns)."""
    S = T if S is None else S
    return np.tri(T, S, dtype=bool)


def attention(
    Q: np.ndarray,
    K: np.ndarray,
    V: np.ndarray,
    mask: np.ndarray | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled dot-product attention with NumPy.

    Args:
        Q: (..., T, d_k) queries.
        K: (..., S, d_k) keys.
        V: (..., S, d_v) values.
        mask: optional, broadcastable to (..., T, S). Boolean: True = attend (the convention of
            torch's SDPA). Floating: added to the scores (use -inf to hide).
        causal: hide keys j > i for query i (top-left alignment, as torch's ``is_causal``).
            Combined with ``mask`` by logical and.
        scale: multiply scores by this; default 1/sqrt(d_k).
    Returns:
        (out, weights): out (..., T, d_v) and weights (..., T, S). Rows of weights sum to 1, except
        fully masked rows, which are all zeros (and so is their output), as in torch's SDPA from
        torch 2.5 on (``torch.softmax`` gives NaN). NaN or inf
        in Q, K or V is not checked for (a scan would cost a pass over the data): it gives NaN
        in every row that attends to it. A row that masks it may get NaN too (a masked weight 0
        times an inf value is NaN): which ones differs between implementations, and between
        SDPA's backends, so do not rely on it.
    Raises:
        TypeError: an input is not a floating array, or the mask is neither bool nor float.
        ValueError: the shapes do not agree (the message gives both), an empty sequence, or a mask
            that does not broadcast to (..., T, S).
    """
    Q = require_array("Q", Q)
    K = require_array("K", K)
    V = require_array("V", V)
    check_qkv_shapes(Q.shape, K.shape, V.shape)
    d_k = Q.shape[-1]
    if scale is None:
        scale = 1.0 / np.sqrt(d_k)
    dtype = np.result_type(Q.dtype, K.dtype, V.dtype)

    # Scale Q (T x d_k numbers) rather than the scores (T x S numbers): same result, less work.
    Qs = np.multiply(Q, dtype.type(scale), dtype=dtype)
    # K^T as its own contiguous array, not the view np.swapaxes(K, -1, -2). Some BLAS builds read
    # a view with these strides through a much slower kernel (at (8, 2048, 64) float32, 140-170 ms
    # against 26-35 ms has been measured on a 2-core machine); elsewhere the two are equally fast.
    # Chapter 3 times both live. The copy costs S x d_k numbers, nothing next to the T x S scores.
    Kt = np.ascontiguousarray(np.swapaxes(K, -1, -2), dtype=dtype)  # (..., d_k, S)
    V = V.astype(dtype, copy=False)

    weights = np.matmul(Qs, Kt)  # (..., T, S): softmax'd in place below, no other T x S array
    added, hidden = _mask_parts(mask, causal, weights.shape)
    if added is not None:
        weights += added
    if hidden is not None:
        np.copyto(weights, -np.inf, where=hidden)
    # The softmax reads and writes the scores five times (max, subtract, exp, sum, divide). Done on
    # blocks of about 1 MiB of rows, each block stays in the cache for all five, instead of five
    # trips through main memory: measured 0.8x the time of the whole-array passes (chapter 7's
    # shapes), with the same result to the bit, since every row is computed the same way.
    rows = weights.reshape(-1, weights.shape[-1])  # (N * T, S), a view: weights is contiguous
    step = softmax_block_rows(rows.shape[1] * rows.itemsize)
    for r0 in range(0, rows.shape[0], step):
        _softmax_inplace(rows[r0 : r0 + step])
    out = np.matmul(weights, V)  # (..., T, d_v)
    return out, weights


#: Bytes of scores that :func:`attention`'s softmax handles at once: about one core's L2 cache.
SOFTMAX_BLOCK_BYTES = 1 << 20


def softmax_block_rows(row_bytes: int) -> int:
    """Rows of ``row_bytes`` each that fit in one softmax block of SOFTMAX_BLOCK_BYTES (>= 1).

    Shared by this level and the torch level (``multihead``), which block their softmax alike.
    """
    return max(1, SOFTMAX_BLOCK_BYTES // row_bytes)


def _mask_parts(
    mask: np.ndarray | None, causal: bool, scores_shape: tuple[int, ...]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Split the masks into what is added to the scores and what is hidden (True = set to -inf).

    Both come back at their own (broadcastable) shapes; nothing of shape (..., T, S) is built.
    """
    added = hidden = None
    if mask is not None:
        if not isinstance(mask, np.ndarray):
            raise TypeError(f"mask must be a NumPy array, got {type(mask).__name__}.")
        check_mask_shape("mask", mask.shape, scores_shape)
        if mask.dtype == bool:
            hidden = ~mask
        elif np.issubdtype(mask.dtype, np.floating):
            added = mask
        else:
            raise TypeError(
                f"mask must be boolean (True = attend) or floating (added to the scores), got "
                f"dtype {mask.dtype}."
            )
    if causal:
        future = ~causal_mask(*scores_shape[-2:])  # (T, S): True above the diagonal
        hidden = future if hidden is None else (hidden | future)
    return added, hidden


def self_attention(
    X: np.ndarray,
    W_q: np.ndarray,
    W_k: np.ndarray,
    W_v: np.ndarray,
    causal: bool = False,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Self-attention of X with itself: Q = X W_q, K = X W_k, V = X W_v, then :func:`attention`.

    Args:
        X: (..., T, d_model).
        W_q, W_k: (d_model, d_k). W_v: (d_model, d_v).
    Returns:
        (out, weights): (..., T, d_v) and (..., T, T).
    Raises:
        ValueError: a weight's first dimension is not d_model, or W_q and W_k differ in d_k.
    """
    X = require_array("X", X)
    if X.ndim < 2:
        raise ValueError(f"X must have shape (..., T, d_model), got shape {shape_str(X.shape)}.")
    d_model = X.shape[-1]
    for name, W in (("W_q", W_q), ("W_k", W_k), ("W_v", W_v)):
        W = require_array(name, W)
        if W.ndim != 2 or W.shape[0] != d_model:
            raise ValueError(
                f"{name} must have shape (d_model, d) = ({d_model}, d) to multiply X of shape "
                f"{shape_str(X.shape)}, got shape {shape_str(W.shape)}."
            )
    return attention(X @ W_q, X @ W_k, X @ W_v, mask=mask, causal=causal)
