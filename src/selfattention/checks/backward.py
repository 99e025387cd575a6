"""Checks for chapter 8, the backward pass: softmax's backward and one key block of attention's."""

from __future__ import annotations

import numpy as np

from ..backward import attention_forward_lse
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
            "only the diagonal of the Jacobian",
            "diag(p) - p p^T has off-diagonal entries -p_i p_j too: P * (1 - P) * dP keeps only "
            "the diagonal, as if each logit moved only its own probability. "
            "dS = P * (dP - rowsum(dP * P)).",
            lambda P, dP: P * (1 - P) * dP,
        ),
        Mistake(
            "a sum over the whole matrix (no axis)",
            "np.sum(dP * P) without axis adds every row together; each row needs its own "
            "sum: np.sum(dP * P, axis=-1, keepdims=True).",
            lambda P, dP: P * (dP - np.sum(dP * P)),
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


def _block(
    Q,
    K,
    V,
    dO,
    O,
    L,
    mask,
    scale_dq=True,
    scale_dk=True,
    transpose=True,
    axis=-1,
    keepdims=True,
    column_L=True,
    safe=True,
    local="",
):
    """(dQ, dK, dV) of one key block; the keywords model the mistakes.

    ``local="softmax"`` normalises P inside the block instead of using L; ``local="rowsum"`` sums
    dP * P over the block instead of using D; ``local="both"`` does both (attention over the block
    alone, which is what autograd through a softmax of this block gives).
    """
    scale = 1.0 / np.sqrt(Q.shape[-1])
    S = np.where(mask, Q @ K.T * scale, -np.inf)  # (T, S_j)
    if local in ("softmax", "both"):
        P = _softmax_rows(S)
    else:
        L_used = np.where(np.isneginf(L), 0.0, L) if safe else L
        with np.errstate(invalid="ignore"):
            # (T, S_j); NaN on a fully masked row when not safe. Without [:, None], L (T,) would
            # broadcast along the keys: silently wrong when T = S_j, an error otherwise.
            P = np.exp(S - (L_used[:, None] if column_L else L_used))
    dV = (P.T if transpose else P) @ dO
    dP = dO @ V.T  # (T, S_j)
    if local in ("rowsum", "both"):
        D = np.sum(dP * P, axis=-1, keepdims=True)  # over this block's keys only
    else:
        D = np.sum(dO * O, axis=axis, keepdims=keepdims)  # (T, 1): the whole row's rowsum(dP * P)
    dS = P * (dP - D)
    dQ = dS @ K * (scale if scale_dq else 1.0)
    dK = dS.T @ Q * (scale if scale_dk else 1.0)
    return dQ, dK, dV


def _block_cases() -> list[Case]:
    """Two blocks: the last 4 of 7 keys (with a row that sees no key), and the first 5 of 8 keys."""
    r = _rng()
    cases = []
    # (T, all keys, this block's keys, d_k, d_v, a row that sees no key at all). In the first,
    # T = S_j = d_v, so that P dO and a rowsum over the queries have shapes that still run.
    shapes = ((4, 7, slice(3, 7), 3, 4, 2), (3, 8, slice(0, 5), 4, 2, None))
    for T, S_all, block, d_k, d_v, empty_row in shapes:
        Q, K, V, dO = (r.normal(size=s) for s in ((T, d_k), (S_all, d_k), (S_all, d_v), (T, d_v)))
        mask = np.tri(T, S_all, dtype=bool) | (r.random((T, S_all)) > 0.5)
        label = f"T={T}, keys {block.start}..{block.stop - 1} of {S_all}, d_k={d_k}, d_v={d_v}"
        if empty_row is not None:
            mask[empty_row] = False
            label += f", row {empty_row} sees no key"
        O, L = attention_forward_lse(Q, K, V, mask=mask)  # over all keys
        args = (Q, K[block], V[block], dO, O, L, mask[:, block])
        cases.append(Case(args, _block(*args), label))
    return cases


def _block_mistakes() -> list[Mistake]:
    """The classic mistakes of one block's backward, each modelled by a keyword of :func:`_block`."""
    whole_row = (
        "L and D belong to the whole row, and this block is one slice of its keys: "
        "P = exp(S - L) (no softmax inside the block) and dS = P * (dP - D) with D = rowsum(dO * O)."
    )
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
            "the scale forgotten in dQ and dK",
            "the scores are scale * Q K^T, so by the chain rule both dQ = scale * dS K and "
            "dK = scale * dS^T Q carry the scale.",
            lambda *a: _block(*a, scale_dq=False, scale_dk=False),
        ),
        Mistake(
            "P where P^T belongs in dV",
            "O = P V, so dV = P^T dO: value j collects dO_i weighted by P_ij over the queries i. "
            "P dO only has the right shape when T equals the block's number of keys.",
            lambda *a: _block(*a, transpose=False),
        ),
        Mistake(
            "rowsum over the wrong axis",
            "D_i = dO_i . O_i is one number per query row: sum dO * O over the features "
            "(axis=-1, keepdims=True), not over the queries.",
            lambda *a: _block(*a, axis=0),
        ),
        Mistake(
            "D without keepdims",
            "np.sum(dO * O, axis=-1) has shape (T,), and (T, S_j) - (T,) lines D up with the "
            "keys, not the queries (silently, when T = S_j). Keep it a column: keepdims=True, "
            "shape (T, 1).",
            lambda *a: _block(*a, keepdims=False),
        ),
        Mistake(
            "L subtracted along the keys (L instead of L[:, None])",
            "L has one number per query row, shape (T,); S - L lines it up with the keys "
            "(silently, when T = S_j). Subtract a column: S - L[:, None].",
            lambda *a: _block(*a, column_L=False),
        ),
        Mistake(
            "rowsum(dP * P) over this block instead of D",
            "a block sees only some of the row's keys, so rowsum(dP * P) over the block is part of "
            "the sum. D = rowsum(dO * O) is the whole row's sum (the two are equal over all keys). "
            + whole_row,
            lambda *a: _block(*a, local="rowsum"),
        ),
        Mistake(
            "a softmax over this block instead of P = exp(S - L)",
            "a softmax inside the block normalises over the block's keys only. " + whole_row,
            lambda *a: _block(*a, local="softmax"),
        ),
        Mistake(
            "this block treated as the whole row",
            "your gradients are those of attention over this block's keys alone (a softmax and "
            "rowsum(dP * P) inside the block). " + whole_row,
            lambda *a: _block(*a, local="both"),
        ),
        Mistake(
            "a fully masked row that yields NaN",
            "a row that sees no key has L = -inf and scores -inf, and exp(-inf - (-inf)) is NaN. "
            "Replace L = -inf by 0 first (np.where(np.isneginf(L), 0.0, L)), so that P = 0 there.",
            lambda *a: _block(*a, safe=False),
        ),
    ]
    return mistakes


def attention_block_backward(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(Q, K, V, dO, O, L, mask) -> (dQ, dK, dV)``: one key block's gradients.

    The keys are split into blocks and ``fn`` sees one: Q (T, d_k), dO (T, d_v), O (T, d_v) the
    forward's output and L (T,) its row logsumexp over **all** keys (-inf for a row that sees no
    key); K (S_j, d_k), V (S_j, d_v) and mask (T, S_j) (bool, True = attend) are this block's.
    Expected: P = exp(S - L) (0 where masked), D = rowsum(dO * O), dV = P^T dO, dP = dO V^T,
    dS = P * (dP - D), dQ = scale dS K (this block's share), dK = scale dS^T Q, scale = 1/sqrt(d_k).
    """
    return run_check(
        "attention_block_backward",
        fn,
        _block_cases(),
        "(Q, K, V, dO, O, L, mask)",
        _block_mistakes(),
        rtol=1e-6,
        atol=1e-9,
        parts=("dQ", "dK", "dV"),
        raise_on_fail=raise_on_fail,
    )
