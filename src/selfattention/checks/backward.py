"""Checks for chapter 8, the backward pass: softmax's backward and one block of attention's."""

from __future__ import annotations

import numpy as np

from ._core import Case, CheckResult, Mistake, run_check


def _rng() -> np.random.Generator:
    """A fresh generator per check, so its cases do not depend on which checks ran before."""
    return np.random.default_rng(808)


def _softmax_rows(S: np.ndarray) -> np.ndarray:
    m = S.max(axis=-1, keepdims=True)
    m = np.where(np.isneginf(m), 0.0, m)
    e = np.exp(S - m)
    total = e.sum(axis=-1, keepdims=True)
    return e / np.where(total == 0, 1.0, total)


def _dS(P, dP, axis=-1):
    return P * (dP - np.sum(dP * P, axis=axis, keepdims=True))


def softmax_backward(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(P, dP) -> dS``: the gradient of the logits of a row-wise softmax (last axis).

    P: (T, S) softmax probabilities (a fully masked row is all zeros); dP: (T, S) the gradient
    with respect to P. Expected: dS = P * (dP - rowsum(dP * P)).
    """
    r = _rng()
    P1 = _softmax_rows(r.normal(size=(3, 5)))
    dP1 = r.normal(size=(3, 5))
    S2 = r.normal(size=(4, 3))
    S2[1] = -np.inf  # a fully masked row: P is all zeros there, and so is dS
    P2, dP2 = _softmax_rows(S2), r.normal(size=(4, 3))
    cases = [
        Case((P1, dP1), _dS(P1, dP1), "T=3 rows of S=5"),
        Case((P2, dP2), _dS(P2, dP2), "T=4 rows of S=3, row 1 fully masked"),
    ]
    mistakes = [
        Mistake(
            "rowsum over the wrong axis",
            "each query row has its own softmax, so the sum runs along that row, over the keys: "
            "np.sum(dP * P, axis=-1, keepdims=True), not over the queries (axis=0).",
            lambda P, dP: _dS(P, dP, axis=0),
        ),
        Mistake(
            "the -p p^T part of the Jacobian forgotten",
            "the Jacobian of softmax is diag(p) - p p^T, not just diag(p): every logit moves every "
            "probability of its row. dS = P * (dP - rowsum(dP * P)), not P * dP.",
            lambda P, dP: P * dP,
        ),
        Mistake(
            "rowsum(dP) instead of rowsum(dP * P)",
            "p p^T dP gives each row p times (p . dP), a sum weighted by P: rowsum(dP * P).",
            lambda P, dP: P * (dP - dP.sum(axis=-1, keepdims=True)),
        ),
    ]
    return run_check(
        "softmax_backward", fn, cases, "(P, dP)", mistakes, rtol=1e-6, atol=1e-9, raise_on_fail=raise_on_fail
    )


def _block(Q, K, V, dO, L, mask, scale_dq=True, scale_dk=True, transpose=True, axis=-1, safe=True):
    """dQ, dK, dV of one block, flattened into one vector; the keywords model the mistakes."""
    scale = 1.0 / np.sqrt(Q.shape[-1])
    S = np.where(mask, Q @ K.T * scale, -np.inf)  # (T, S)
    L_used = np.where(np.isneginf(L), 0.0, L) if safe else L
    with np.errstate(invalid="ignore"):
        P = np.exp(S - L_used[:, None])  # (T, S); NaN on a fully masked row when not safe
    dV = (P.T if transpose else P) @ dO
    dS = _dS(P, dO @ V.T, axis=axis)
    dQ = dS @ K * (scale if scale_dq else 1.0)
    dK = dS.T @ Q * (scale if scale_dk else 1.0)
    return np.concatenate([dQ.ravel(), dK.ravel(), dV.ravel()])


def _lse(Q, K, mask):
    S = np.where(mask, Q @ K.T / np.sqrt(Q.shape[-1]), -np.inf)
    m = S.max(axis=-1)
    m_safe = np.where(np.isneginf(m), 0.0, m)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(S - m_safe[:, None]).sum(axis=-1)) + m_safe


def attention_block_backward(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(Q, K, V, dO, L, mask) -> (dQ, dK, dV)``: one block's gradients, P recomputed.

    Q (T, d_k), K (S, d_k), V (S, d_v), dO (T, d_v); L (T,) the row logsumexp of the masked scores
    Q K^T / sqrt(d_k) (-inf for a row that sees no key); mask (T, S) bool, True = attend.
    Expected: P = exp(S - L) (0 where masked), dV = P^T dO, dP = dO V^T,
    dS = P * (dP - rowsum(dP * P)), dQ = scale dS K, dK = scale dS^T Q, scale = 1/sqrt(d_k).
    """
    r = _rng()
    cases = []
    for T, S, d_k, d_v, empty_row in ((4, 4, 3, 2, 2), (3, 5, 4, 2, None)):
        Q, K, V, dO = (r.normal(size=s) for s in ((T, d_k), (S, d_k), (S, d_v), (T, d_v)))
        mask = np.tri(T, S, dtype=bool) | (r.random((T, S)) > 0.5)
        label = f"T={T}, S={S}, d_k={d_k}"
        if empty_row is not None:
            mask[empty_row] = False
            label += f", row {empty_row} fully masked"
        L = _lse(Q, K, mask)
        cases.append(Case((Q, K, V, dO, L, mask), _block(Q, K, V, dO, L, mask), label))

    def flat(out):
        if isinstance(out, (tuple, list)) and len(out) == 3:
            return np.concatenate([np.ravel(np.asarray(o, dtype=float)) for o in out])
        return out

    mistakes = [
        Mistake(
            "the scale forgotten in dQ",
            "the scores are scale * Q K^T, so by the chain rule dQ = scale * dS K.",
            lambda *a: _block(*a, scale_dq=False),
        ),
        Mistake(
            "the scale forgotten in dK",
            "the scores are scale * Q K^T, so by the chain rule dK = scale * dS^T Q.",
            lambda *a: _block(*a, scale_dk=False),
        ),
        Mistake(
            "P where P^T belongs in dV",
            "O = P V, so dV = P^T dO: value j collects dO_i weighted by P_ij over the queries i. "
            "P dO only has the right shape when T = S.",
            lambda *a: _block(*a, transpose=False),
        ),
        Mistake(
            "rowsum over the wrong axis",
            "each query row has its own softmax: D_i = sum over the keys j of dP_ij P_ij "
            "(axis=-1, keepdims=True).",
            lambda *a: _block(*a, axis=0),
        ),
        Mistake(
            "a fully masked row that yields NaN",
            "a row that sees no key has L = -inf and scores -inf, and exp(-inf - (-inf)) is NaN. "
            "Replace L = -inf by 0 first (np.where(np.isneginf(L), 0.0, L)), so that P = 0 there.",
            lambda *a: _block(*a, safe=False),
        ),
    ]
    return run_check(
        "attention_block_backward",
        fn,
        cases,
        "(Q, K, V, dO, L, mask)",
        mistakes,
        rtol=1e-6,
        atol=1e-9,
        postprocess=flat,
        raise_on_fail=raise_on_fail,
    )
