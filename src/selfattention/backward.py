"""Attention's backward pass in NumPy: the gradients of ``out = softmax(Q K^T * scale) V``.

With S = scale * Q K^T (masked entries -inf), P = softmax(S) row by row and O = P V, and dO the
gradient of the loss with respect to O:

* dV = P^T dO,
* dP = dO V^T,
* dS = P * (dP - rowsum(dP * P)) (softmax's backward, :func:`softmax_backward`),
* dQ = scale * dS K and dK = scale * dS^T Q.

A masked score is a constant (-inf), so no gradient flows through it: its P entry is 0 and so is
its dS entry. A fully masked row has P = 0, O = 0 and gets zero gradients, never NaN.

:func:`attention_forward_lse` returns the row logsumexp L = log(sum_j exp(S_ij)), which is all a
memory-light backward keeps of P: it recomputes P = exp(S - L) when it needs it, and uses
D = rowsum(dO * O), which equals rowsum(dP * P) (:func:`attention_backward_from_lse`).
"""

from __future__ import annotations

import numpy as np

from . import vectorized
from ._validate import check_qkv_shapes, require_array, shape_str


def softmax_backward(P: np.ndarray, dP: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient with respect to the logits of ``P = softmax(S, axis)``, given dP = dL/dP.

    The Jacobian of one softmax row p is diag(p) - p p^T, so dS = p * dP - p (p . dP), which is
    ``P * (dP - sum(dP * P, axis))``: O(n) per row instead of the O(n^2) Jacobian.

    Args:
        P: softmax probabilities, any shape; a fully masked row is all zeros.
        dP: the same shape as ``P``.
        axis: the axis the softmax normalised over.
    Returns:
        dS, the same shape as ``P`` (zeros on fully masked rows).
    Raises:
        TypeError: an input is not a floating array.
        ValueError: the shapes differ or ``axis`` is out of range.
    """
    P = require_array("P", P)
    dP = require_array("dP", dP)
    if P.shape != dP.shape:
        raise ValueError(
            f"dP must have the shape of P: P has shape {shape_str(P.shape)}, dP has shape "
            f"{shape_str(dP.shape)}."
        )
    if not -P.ndim <= axis < P.ndim:
        raise ValueError(f"axis={axis} is out of range for P of shape {shape_str(P.shape)}.")
    return P * (dP - np.sum(dP * P, axis=axis, keepdims=True))


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the leading dimensions that broadcasting added to an input of ``shape``."""
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra > 0 else grad
    axes = tuple(i for i, n in enumerate(shape[:-2]) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


def _scale(scale: float | None, *arrays: np.ndarray) -> np.floating:
    """The score scale (default 1/sqrt(d_k)) as a scalar of the inputs' dtype.

    A NumPy float64 scalar times a float32 array is float64 (NumPy 2's promotion rules), so a
    default computed with ``np.sqrt`` would silently turn float32 gradients into float64 ones.
    """
    d_k = arrays[0].shape[-1]
    return np.result_type(*arrays).type(1.0 / np.sqrt(d_k) if scale is None else scale)


def _output_shape(Q: np.ndarray, K: np.ndarray, V: np.ndarray) -> tuple[int, ...]:
    """The forward output's shape (..., T, d_v): every input's leading dimensions broadcast."""
    lead = np.broadcast_shapes(Q.shape[:-2], K.shape[:-2], V.shape[:-2])
    return lead + (Q.shape[-2], V.shape[-1])


def _check_dO(dO: np.ndarray, out_shape: tuple[int, ...]) -> None:
    if dO.shape != tuple(out_shape):
        raise ValueError(
            f"dO must have the shape of the output (..., T, d_v) = {shape_str(out_shape)}, got "
            f"shape {shape_str(dO.shape)}."
        )


def attention_forward_lse(
    Q: np.ndarray,
    K: np.ndarray,
    V: np.ndarray,
    mask: np.ndarray | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~selfattention.vectorized.attention`'s output together with the row logsumexp.

    It takes the arguments of :func:`~selfattention.vectorized.attention`, with its conventions.

    Returns:
        (out, L): out (..., T, d_v) and L (..., T) = log(sum_j exp(S_ij)) over the unmasked scores,
        -inf for a fully masked row. Then P = exp(S - L[..., None]) for every row that sees a key.
    """
    Q = require_array("Q", Q)
    K = require_array("K", K)
    V = require_array("V", V)
    out, _ = vectorized.attention(Q, K, V, mask=mask, causal=causal, scale=scale)  # checks inputs
    scale = _scale(scale, Q, K, V)
    S = masked_scores(Q, K, mask=mask, causal=causal, scale=scale)  # (..., T, S)
    m = np.max(S, axis=-1, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)  # a fully masked row: max -inf, keep L = -inf
    with np.errstate(divide="ignore"):  # log(0) = -inf is the right L for a fully masked row
        L = np.log(np.sum(np.exp(S - m_safe), axis=-1)) + m_safe[..., 0]
    # S has Q's and K's leading dimensions; out also has V's, and L is one number per output row.
    return out, np.ascontiguousarray(np.broadcast_to(L, out.shape[:-1]))


def masked_scores(
    Q: np.ndarray,
    K: np.ndarray,
    mask: np.ndarray | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> np.ndarray:
    """The scores S = scale * Q K^T (..., T, S) with the masks of ``vectorized.attention`` applied.

    Hidden entries (a False in a boolean mask, or j > i under ``causal``) are -inf; a floating mask
    is added. Inputs are assumed checked (call :func:`~selfattention.vectorized.attention` first).
    """
    S = np.matmul(Q * _scale(scale, Q, K), np.swapaxes(K, -1, -2))  # (..., T, S)
    added, hidden = vectorized._mask_parts(mask, causal, S.shape)  # the forward's own mask rules
    if added is not None:
        S = S + added
    if hidden is not None:
        S = np.where(hidden, -np.inf, S)
    return S


def attention_backward(
    Q: np.ndarray,
    K: np.ndarray,
    V: np.ndarray,
    dO: np.ndarray,
    mask: np.ndarray | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`selfattention.vectorized.attention`'s output with respect to Q, K, V.

    The forward is recomputed here (P is needed); masks follow ``vectorized.attention`` exactly:
    a boolean mask is True = attend, a floating mask is added to the scores, ``causal`` hides keys
    j > i (top-left, as torch's ``is_causal``) and combines with ``mask`` by logical and.

    Args:
        Q: (..., T, d_k). K: (..., S, d_k). V: (..., S, d_v). Leading dimensions broadcast.
        dO: (..., T, d_v), the gradient of the loss with respect to the output (its full,
            broadcast shape).
        mask, causal, scale: as in :func:`selfattention.vectorized.attention`.
    Returns:
        (dQ, dK, dV) with the shapes of Q, K and V (gradients of broadcast inputs are summed over
        the dimensions they were broadcast along). Fully masked rows contribute zeros, never NaN.
    Raises:
        TypeError: an input is not a floating array, or the mask is neither bool nor float.
        ValueError: Q, K, V disagree, ``dO`` does not have the output's shape, or ``mask`` does
            not broadcast to (..., T, S) (each message gives both shapes).
    """
    Q = require_array("Q", Q)
    K = require_array("K", K)
    V = require_array("V", V)
    dO = require_array("dO", dO)
    out, P = vectorized.attention(Q, K, V, mask=mask, causal=causal, scale=scale)  # checks inputs
    scale = _scale(scale, Q, K, V)
    _check_dO(dO, out.shape)
    # P has the leading dimensions of Q and K only; V may add more, which out and dO carry.
    P = np.broadcast_to(P, out.shape[:-1] + (K.shape[-2],))  # (..., T, S)
    dV = np.matmul(np.swapaxes(P, -1, -2), dO)  # (..., S, d_v)
    dP = np.matmul(dO, np.swapaxes(V, -1, -2))  # (..., T, S)
    dS = softmax_backward(P, dP)  # (..., T, S); zero wherever P is zero
    dQ = scale * np.matmul(dS, K)  # (..., T, d_k)
    dK = scale * np.matmul(np.swapaxes(dS, -1, -2), Q)  # (..., S, d_k)
    return _unbroadcast(dQ, Q.shape), _unbroadcast(dK, K.shape), _unbroadcast(dV, V.shape)


def attention_backward_from_lse(
    Q: np.ndarray,
    K: np.ndarray,
    V: np.ndarray,
    out: np.ndarray,
    dO: np.ndarray,
    L: np.ndarray,
    mask: np.ndarray | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same gradients as :func:`attention_backward`, from what FlashAttention keeps.

    Only the output ``out`` and the row logsumexp ``L`` of the forward are used: P is recomputed
    as exp(S - L), and rowsum(dP * P) is replaced by D = rowsum(dO * out) (they are equal, since
    rowsum(dP * P)_i = sum_j P_ij (dO_i . V_j) = dO_i . (sum_j P_ij V_j) = dO_i . O_i).

    Args:
        Q, K, V, mask, causal, scale: as in :func:`attention_backward`.
        out: (..., T, d_v) and L: (..., T), as :func:`attention_forward_lse` returns them.
        dO: (..., T, d_v).
    Returns:
        (dQ, dK, dV) with the shapes of Q, K and V.
    Raises:
        ValueError: ``dO`` or ``out`` does not have the output's shape, or ``L`` is not (..., T).
    """
    Q = require_array("Q", Q)
    K = require_array("K", K)
    V = require_array("V", V)
    out = require_array("out", out)
    dO = require_array("dO", dO)
    L = require_array("L", L)
    check_qkv_shapes(Q.shape, K.shape, V.shape)
    out_shape = _output_shape(Q, K, V)
    if out.shape != out_shape:
        raise ValueError(
            f"out must have the forward output's shape (..., T, d_v) = {shape_str(out_shape)} "
            f"for Q {shape_str(Q.shape)} and V {shape_str(V.shape)}, got shape "
            f"{shape_str(out.shape)}."
        )
    _check_dO(dO, out_shape)
    if L.shape != out_shape[:-1]:
        raise ValueError(
            f"L must have shape (..., T) = {shape_str(out_shape[:-1])} to match out of shape "
            f"{shape_str(out_shape)}, got shape {shape_str(L.shape)}."
        )
    scale = _scale(scale, Q, K, V)
    S = masked_scores(Q, K, mask=mask, causal=causal, scale=scale)  # (..., T, S); checks the mask
    S = np.broadcast_to(S, out_shape[:-1] + (K.shape[-2],))
    # A fully masked row has L = -inf and only -inf scores: shift it by 0, so exp gives 0, not NaN.
    L_safe = np.where(np.isneginf(L), 0.0, L)
    P = np.exp(S - L_safe[..., None])  # (..., T, S), recomputed
    D = np.sum(dO * out, axis=-1, keepdims=True)  # (..., T, 1) = rowsum(dP * P)
    dV = np.matmul(np.swapaxes(P, -1, -2), dO)
    dS = P * (np.matmul(dO, np.swapaxes(V, -1, -2)) - D)
    dQ = scale * np.matmul(dS, K)
    dK = scale * np.matmul(np.swapaxes(dS, -1, -2), Q)
    return _unbroadcast(dQ, Q.shape), _unbroadcast(dK, K.shape), _unbroadcast(dV, V.shape)
