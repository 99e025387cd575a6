"""Level 2 (NumPy) against torch's SDPA: batch/head dims, T != S, bool/float/causal masks, fully
masked rows, scale overrides, float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import (
    PROPERTY,
    Case,
    assert_close,
    case_strategy,
    one_thread,  # noqa: F401 (autouse: one thread per module)
    rand_qkv,
    torch_sdpa,
)
from hypothesis import given

from selfattention import vectorized


@PROPERTY
@given(case=case_strategy())
def test_vectorized_equals_torch_sdpa(case: Case):
    out, w = vectorized.attention(
        case.Q, case.K, case.V, mask=case.mask, causal=case.causal, scale=case.scale
    )
    assert out.dtype == case.dtype and w.dtype == case.dtype
    assert out.shape == case.lead + (case.T, case.d_v)
    assert w.shape == case.lead + (case.T, case.S)
    ref = torch_sdpa(case.q, case.k, case.v, **case.torch_kw)
    assert_close(out, ref, case.dtype, repr(case))
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(w))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_and_causal_combine_by_and(dtype):
    rng = np.random.default_rng(1)
    Q, K, V = rand_qkv(rng, (2,), 4, 6, 3, 2, dtype)
    mask = rng.random((4, 6)) < 0.6
    out, _ = vectorized.attention(Q, K, V, mask=mask, causal=True)
    both = torch.from_numpy(mask & np.tri(4, 6, dtype=bool))
    ref = torch_sdpa(*(torch.from_numpy(a) for a in (Q, K, V)), attn_mask=both)
    assert_close(out, ref, dtype)


def test_fully_masked_row_gives_zeros():
    rng = np.random.default_rng(2)
    Q, K, V = rand_qkv(rng, (), 3, 4, 2, 2)
    mask = np.ones((3, 4), dtype=bool)
    mask[1] = False
    out, w = vectorized.attention(Q, K, V, mask=mask)
    assert np.all(w[1] == 0) and np.all(out[1] == 0)
    np.testing.assert_allclose(w[[0, 2]].sum(-1), 1.0, atol=1e-12)


def test_keys_and_values_broadcast_over_heads():
    rng = np.random.default_rng(3)
    Q = rng.standard_normal((2, 4, 5, 3))  # (B, H, T, d_k)
    K = rng.standard_normal((2, 1, 6, 3))  # one key/value head shared by all heads
    V = rng.standard_normal((1, 1, 6, 2))
    out, w = vectorized.attention(Q, K, V)
    assert out.shape == (2, 4, 5, 2) and w.shape == (2, 4, 5, 6)
    Kb, Vb = np.broadcast_to(K, (2, 4, 6, 3)), np.broadcast_to(V, (2, 4, 6, 2))
    ref = torch_sdpa(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (Q, Kb, Vb)))
    assert_close(out, ref, np.float64)


def test_softmax_function():
    x = np.array([[1.0, 2.0, 3.0], [0.0, -np.inf, 0.0]])
    s = vectorized.softmax(x)
    np.testing.assert_allclose(s.sum(-1), 1.0, atol=1e-15)
    assert s[1, 1] == 0 and s[1, 0] == pytest.approx(0.5)
    np.testing.assert_allclose(vectorized.softmax(x[:1], axis=0), 1.0)
    np.testing.assert_array_equal(x[0], [1.0, 2.0, 3.0])  # input untouched (a new array returned)
    np.testing.assert_allclose(vectorized.softmax([1, 2, 3]), s[0])  # lists and ints accepted
    np.testing.assert_array_equal(vectorized.softmax(np.full((2, 3), -np.inf)), 0.0)


def test_int_inputs_are_promoted():
    Q = np.array([[1, 0], [0, 1]])
    out, w = vectorized.attention(Q, Q, Q)
    assert out.dtype == np.float64
    np.testing.assert_allclose(w.sum(-1), 1.0)


def test_self_attention_with_mask_matches_attention():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((2, 5, 8))
    W_q, W_k, W_v = (rng.standard_normal((8, d)) for d in (4, 4, 3))
    mask = rng.random((5, 5)) < 0.8
    out, w = vectorized.self_attention(X, W_q, W_k, W_v, mask=mask, causal=True)
    out2, w2 = vectorized.attention(X @ W_q, X @ W_k, X @ W_v, mask=mask, causal=True)
    np.testing.assert_array_equal(out, out2)
    np.testing.assert_array_equal(w, w2)


def test_causal_mask_helper_is_top_left():
    np.testing.assert_array_equal(vectorized.causal_mask(2, 4), [[1, 0, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(vectorized.causal_mask(3), np.tri(3, dtype=bool))


# ---- the contiguous K^T and the masks kept at their own shapes (issue 15) -------------------------
def _broadcast_cases():
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        # broadcast leading dimensions, T != S
        Q = rng.standard_normal((2, 1, 37, 5)).astype(dtype)
        K = rng.standard_normal((1, 3, 23, 5)).astype(dtype)
        V = rng.standard_normal((2, 3, 23, 4)).astype(dtype)
        bool_mask = rng.random((2, 1, 1, 23)) < 0.7
        bool_mask[0, 0, 0, :] = False  # a batch whose every query sees nothing
        float_mask = np.where(rng.random((37, 23)) < 0.8, 0.0, -np.inf)
        yield dtype, Q, K, V, {}, {}
        yield dtype, Q, K, V, {"causal": True}, {"is_causal": True}
        yield dtype, Q, K, V, {"mask": bool_mask}, {"attn_mask": torch.from_numpy(bool_mask)}
        yield (
            dtype,
            Q,
            K,
            V,
            {"mask": float_mask},
            {
                "attn_mask": torch.from_numpy(float_mask).to(
                    torch.float32 if dtype == np.float32 else torch.float64
                )
            },
        )
        yield (
            dtype,
            Q,
            K,
            V,
            {"mask": bool_mask, "causal": True},
            {"attn_mask": torch.from_numpy(bool_mask & np.tri(37, 23, dtype=bool))},
        )


@pytest.mark.parametrize("case", list(_broadcast_cases()), ids=lambda c: f"{c[0].__name__}-{sorted(c[4])}")
def test_broadcast_batches_and_masks_equal_torch(case):
    """Leading dimensions that broadcast (Q (2, 1, ...), K (1, 3, ...)), masks of their own
    broadcastable shapes, with and without causal: equal to torch's SDPA on the broadcast inputs."""
    dtype, Q, K, V, kw, torch_kw = case
    out, w = vectorized.attention(Q, K, V, **kw)
    q, k, v = (torch.from_numpy(np.array(np.broadcast_to(a, (2, 3) + a.shape[-2:]))) for a in (Q, K, V))
    ref = torch_sdpa(q, k, v, **torch_kw)
    assert out.shape == (2, 3, 37, 4) and w.shape == (2, 3, 37, 23)
    assert out.dtype == dtype and w.dtype == dtype
    assert_close(out, ref, dtype)
    np.testing.assert_allclose(w.sum(-1)[w.sum(-1) > 0], 1.0, rtol=1e-5)


def test_a_transposed_view_of_k_gives_the_same_result():
    """Whatever layout K arrives in (here a Fortran-ordered array), the result is the same."""
    rng = np.random.default_rng(3)
    Q, K, V = rand_qkv(rng, (2,), 9, 11, 4, 3)
    out, w = vectorized.attention(Q, K, V)
    out_f, w_f = vectorized.attention(Q, np.asfortranarray(K), np.asfortranarray(V))
    np.testing.assert_array_equal(out, out_f)
    np.testing.assert_array_equal(w, w_f)


def test_the_scores_product_gets_a_contiguous_k_transpose(monkeypatch):
    """Issue 15's slow path: Q @ swapaxes(K) hands BLAS a transposed view, which OpenBLAS runs
    about 5x slower at T = 2048. The first product must see a C-contiguous (..., d_k, S) array."""
    seen = []
    matmul = np.matmul

    def recording_matmul(a, b, *args, **kwargs):
        seen.append((b.shape, b.flags["C_CONTIGUOUS"]))
        return matmul(a, b, *args, **kwargs)

    rng = np.random.default_rng(7)
    Q, K, V = rand_qkv(rng, (2,), 6, 5, 4, 3, np.float32)
    monkeypatch.setattr(vectorized.np, "matmul", recording_matmul)
    vectorized.attention(Q, K, V)
    assert seen[0] == ((2, 4, 5), True), seen


def test_the_inputs_are_left_untouched():
    rng = np.random.default_rng(4)
    Q, K, V = rand_qkv(rng, (3,), 20, 20, 4, 4, np.float32)
    copies = [a.copy() for a in (Q, K, V)]
    vectorized.attention(Q, K, V, causal=True)
    for a, c in zip((Q, K, V), copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("block_bytes", [1, 200])
def test_softmax_blocks_of_rows_change_nothing(block_bytes, monkeypatch):
    """The softmax runs on blocks of rows (the last one partial for 200 bytes = 5 rows of 10 float32);
    the result equals SDPA and, to the bit, the whole-array softmax."""
    rng = np.random.default_rng(5)
    Q, K, V = rand_qkv(rng, (2, 3), 13, 10, 4, 3, np.float32)
    mask = rng.random((2, 1, 13, 10)) < 0.8
    mask[1, 0, 4] = False  # a fully masked row
    whole_out, whole_w = vectorized.attention(Q, K, V, mask=mask)
    monkeypatch.setattr(vectorized, "SOFTMAX_BLOCK_BYTES", block_bytes)
    out, w = vectorized.attention(Q, K, V, mask=mask)
    np.testing.assert_array_equal(out, whole_out)
    np.testing.assert_array_equal(w, whole_w)
    ref = torch_sdpa(*(torch.from_numpy(a) for a in (Q, K, V)), attn_mask=torch.from_numpy(mask))
    assert_close(out, ref, np.float32)
