"""Checks for Part III: FLOP counts and the online softmax."""

from __future__ import annotations

import numpy as np

from ._core import Case, CheckResult, Mistake, run_check


def _rng() -> np.random.Generator:
    """A fresh generator per check, so its cases do not depend on which checks ran before."""
    return np.random.default_rng(777)


def _flops(B, H, T, S, d, causal):
    f = 4 * B * H * T * S * d
    return f // 2 if causal else f


def attention_flops(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(B, H, T, S, d, causal) -> int``: FLOPs of attention's two matmuls (forward)."""
    args = [(1, 8, 2048, 2048, 64, False), (2, 4, 128, 256, 32, False), (1, 8, 1024, 1024, 64, True)]
    cases = [
        Case(a, _flops(*a), f"B={a[0]}, H={a[1]}, T={a[2]}, S={a[3]}, d={a[4]}, causal={a[5]}") for a in args
    ]
    mistakes = [
        Mistake(
            "half the FLOPs (multiply-adds counted once, or one matmul forgotten)",
            "attention has two matmuls of the same size (Q K^T and weights @ V), and each "
            "multiply-add is two floating-point operations: 2 * 2 * B * H * T * S * d.",
            lambda B, H, T, S, d, c: _flops(B, H, T, S, d, c) // 2,
        ),
        Mistake(
            "the causal mask not halving the work",
            "under a causal mask only (about) half of the score matrix is needed.",
            lambda B, H, T, S, d, c: _flops(B, H, T, S, d, False),
        ),
        Mistake(
            "batch or heads forgotten",
            "every (batch, head) pair does its own attention.",
            lambda B, H, T, S, d, c: _flops(1, 1, T, S, d, c),
        ),
    ]
    return run_check(
        "attention_flops",
        fn,
        cases,
        "(B, H, T, S, d, causal)",
        mistakes,
        rtol=0,
        atol=0.5,
        raise_on_fail=raise_on_fail,
    )


def _update(m, l, acc, s, v, rescale=True, keep_max=True):
    m_new = np.maximum(m, s.max(axis=-1)) if keep_max else s.max(axis=-1)
    corr = np.exp(m - m_new) if rescale else np.ones_like(m)
    p = np.exp(s - m_new[:, None])
    return m_new, l * corr + p.sum(-1), acc * corr[:, None] + p @ v


def online_softmax_update(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(m, l, acc, s, v) -> (m_new, l_new, acc_new)``: one block of the online softmax.

    m, l: (T,) running max and running sum; acc: (T, d) running weighted sum of values;
    s: (T, Bk) the new block's scores; v: (Bk, d) the new block's values.
    """
    r = _rng()
    T, Bk, d = 3, 4, 2

    def after_first_block(s0, v0):
        """(m, l, acc) after one block of scores s0 (T, Bk) and values v0 (Bk, d)."""
        m0 = s0.max(-1)
        p0 = np.exp(s0 - m0[:, None])
        return m0, p0.sum(-1), p0 @ v0

    s0, v0 = r.normal(size=(T, Bk)), r.normal(size=(Bk, d))
    m0, l0, acc0 = after_first_block(s0, v0)
    s1 = r.normal(size=(T, Bk)) + 2.0  # a larger maximum, so rescaling matters
    v1 = r.normal(size=(Bk, d))
    s_low = m0[:, None] - 1.0 - r.random(size=(T, Bk))  # every score below m: the max stays
    s_mixed = np.stack([s1[0], s_low[1], s1[2]])  # rows 0 and 2 raise their max, row 1 does not
    m_empty, l_empty, acc_empty = np.full(T, -np.inf), np.zeros(T), np.zeros((T, d))

    cases = [
        Case(args, _update(*args), label)
        for args, label in (
            ((m0, l0, acc0, s1, v1), "T=3 rows, a block of 4 that raises every maximum"),
            ((m0, l0, acc0, s_low, v1), "a block below the running maximum (m stays the same)"),
            ((m0, l0, acc0, s_mixed, v1), "a block that raises the maximum of rows 0 and 2 only"),
            (
                (m_empty, l_empty, acc_empty, s0, v0),
                "the first block: m = -inf, l = 0, acc = 0 (nothing seen yet)",
            ),
        )
    ]
    mistakes = [
        Mistake(
            "the old sums not rescaled",
            "when the maximum grows from m to m_new, earlier terms were computed as "
            "exp(s - m); multiply l and acc by exp(m - m_new) before adding the new block.",
            lambda m, l, a, s, v: _update(m, l, a, s, v, rescale=False),
        ),
        Mistake(
            "the running maximum replaced by the block's maximum",
            "m_new = max(m, the block's largest score): a block whose scores all lie below m "
            "leaves m as it is. Taking the block's maximum alone lowers m, and exp(m - m_new) "
            "> 1 then inflates the old sums until they overflow.",
            lambda m, l, a, s, v: _update(m, l, a, s, v, keep_max=False),
        ),
    ]
    return run_check(
        "online_softmax_update",
        fn,
        cases,
        "(m, l, acc, s, v)",
        mistakes,
        parts=("m_new", "l_new", "acc_new"),
        raise_on_fail=raise_on_fail,
    )
