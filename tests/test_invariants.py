"""Invariants (weights are distributions; permutation equivariance and its loss with positions)
and numerics (softmaxes stay finite for float32 logits of 1e4, where a naive softmax overflows)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from _helpers import (
    PROPERTY,
    Case,
    assert_close,
    case_strategy,
    one_thread,  # noqa: F401 (autouse: one thread per module)
)
from hypothesis import given
from hypothesis import strategies as st

from selfattention import data, loops, positional, vectorized
from selfattention.multihead import MultiHeadSelfAttention, scaled_dot_product_attention


def _fully_masked_rows(case: Case) -> np.ndarray:
    """Boolean (..., T) of the query rows that see no key."""
    shape = case.lead + (case.T,)
    if case.mask is None:
        return np.zeros(shape, dtype=bool)
    allowed = case.mask if case.mask.dtype == bool else np.isfinite(case.mask)
    return np.broadcast_to(~allowed.any(-1), shape)


@PROPERTY
@given(case=case_strategy())
def test_weight_rows_sum_to_one(case: Case):
    dead = _fully_masked_rows(case)
    w_np = vectorized.attention(case.Q, case.K, case.V, mask=case.mask, causal=case.causal,
                                scale=case.scale)[1]
    w_t = scaled_dot_product_attention(case.q, case.k, case.v, **case.torch_kw)[1].numpy()
    for w in (w_np, w_t):
        assert np.all(w >= 0)
        sums = w.sum(-1)
        np.testing.assert_allclose(sums[~dead], 1.0, atol=1e-5 if case.dtype == np.float32 else 1e-12)
        assert np.all(sums[dead] == 0)  # fully masked rows aside: exactly zero, not NaN


@PROPERTY
@given(T=st.integers(1, 6), S=st.integers(1, 6), causal=st.booleans(), seed=st.integers(0, 2**31))
def test_loops_weight_rows_sum_to_one(T, S, causal, seed):
    rng = np.random.default_rng(seed)
    Q, K, V = rng.standard_normal((T, 3)), rng.standard_normal((S, 3)), rng.standard_normal((S, 2))
    _, w = loops.attention(Q.tolist(), K.tolist(), V.tolist(), causal=causal)
    for row in w:
        assert math.isclose(sum(row), 1.0, abs_tol=1e-12) and min(row) >= 0


# ---------------------------------------------------------------- permutation equivariance
W = data.example_projections(d_k=4)


@PROPERTY
@given(T=st.integers(2, 7), seed=st.integers(0, 2**31))
def test_permutation_equivariance_without_positions(T, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, data.D_MODEL))
    perm = rng.permutation(T)
    out, w = vectorized.self_attention(X, *W)
    out_p, w_p = vectorized.self_attention(X[perm], *W)
    assert_close(out_p, out[perm], np.float64)  # shuffle in, same shuffle out
    assert_close(w_p, w[perm][:, perm], np.float64)
    mha = MultiHeadSelfAttention(data.D_MODEL, 2).double()
    with torch.no_grad():
        xt = torch.from_numpy(X)[None]
        o = mha(xt)[0][0]
        o_p = mha(xt[:, perm])[0][0]
    assert_close(o_p, o[perm], np.float64)


def test_positions_break_permutation_equivariance():
    X = data.embeddings()
    T = X.shape[0]
    pe = positional.sinusoidal_encoding(T, data.D_MODEL)
    perm = np.array([1, 0, 3, 2, 5, 4])
    out = vectorized.self_attention(X + pe, *W)[0]
    out_p = vectorized.self_attention(X[perm] + pe, *W)[0]
    assert np.abs(out_p - out[perm]).max() > 1e-2  # equivariance is lost
    # Without positions "The" (0) and "the" (4) share an embedding, hence an output; with them not.
    plain = vectorized.self_attention(X, *W)[0]
    np.testing.assert_array_equal(plain[0], plain[4])
    assert np.abs(out[0] - out[4]).max() > 1e-2


def test_equivariance_test_can_fail_under_a_causal_mask():
    X = np.random.default_rng(1).standard_normal((5, data.D_MODEL))
    perm = np.array([4, 3, 2, 1, 0])
    out = vectorized.self_attention(X, *W, causal=True)[0]
    out_p = vectorized.self_attention(X[perm], *W, causal=True)[0]
    assert np.abs(out_p - out[perm]).max() > 1e-2


# ------------------------------------------------------------------------------ numerics
BIG = 1e4


def naive_softmax(x):
    """The textbook formula without the max shift: exp overflows for large logits."""
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def test_naive_softmax_overflows_so_the_test_can_fail():
    logits = np.array([BIG, 0.0, -BIG], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert not np.all(np.isfinite(naive_softmax(logits)))
    with pytest.raises(OverflowError):
        [math.exp(s) for s in logits.tolist()]


def test_softmaxes_stay_finite_for_large_float32_logits():
    logits = np.array([[BIG, 0.0, -BIG], [BIG, BIG, BIG - 1.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # not even an overflow warning
        s = vectorized.softmax(logits)
    assert s.dtype == np.float32 and np.all(np.isfinite(s))
    np.testing.assert_allclose(s[0], [1, 0, 0])
    np.testing.assert_allclose(s.sum(-1), 1.0, atol=1e-6)
    assert loops.softmax(logits[0].tolist()) == [1.0, 0.0, 0.0]
    # torch: q . k = 1e4 with scale 1 puts the same logits through the library's softmax.
    q = torch.tensor([[100.0]])
    k = torch.tensor([[100.0], [0.0], [-100.0]])
    v = torch.eye(3)
    out, w = scaled_dot_product_attention(q, k, v, scale=1.0)
    assert torch.isfinite(w).all() and torch.allclose(w, torch.tensor([[1.0, 0.0, 0.0]]))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_finite_for_huge_scores(dtype):
    rng = np.random.default_rng(3)
    Q, K, V = (rng.standard_normal((2, 4, 3)).astype(dtype) * 100 for _ in range(3))
    out_np, w_np = vectorized.attention(Q, K, V)
    out_t, w_t = scaled_dot_product_attention(*(torch.from_numpy(a) for a in (Q, K, V)))
    for a in (out_np, w_np, out_t.numpy(), w_t.numpy()):
        assert np.all(np.isfinite(a))
    assert_close(out_t, out_np, dtype)
    out_l, _ = loops.attention(Q[0].tolist(), K[0].tolist(), V[0].tolist())
    assert np.all(np.isfinite(out_l))
