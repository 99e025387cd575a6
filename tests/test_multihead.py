"""Level 3 (PyTorch) against torch's SDPA and nn.MultiheadAttention, and against level 2."""

from __future__ import annotations

import pytest
import torch
from _helpers import (
    PROPERTY,
    Case,
    assert_close,
    case_strategy,
    one_thread,  # noqa: F401 (autouse: one thread per module)
    reference_weights,
    torch_sdpa,
)
from hypothesis import given
from torch import nn

from selfattention import masks, vectorized
from selfattention.multihead import (
    MultiHeadSelfAttention,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)

DT = [torch.float32, torch.float64]


@PROPERTY
@given(case=case_strategy())
def test_sdpa_equals_torch_sdpa_and_numpy(case: Case):
    out, w = scaled_dot_product_attention(case.q, case.k, case.v, **case.torch_kw)
    assert out.dtype == case.q.dtype and w.dtype == case.q.dtype
    ref = torch_sdpa(case.q, case.k, case.v, **case.torch_kw)
    assert_close(out, ref, case.dtype, "multihead vs torch SDPA " + repr(case))
    assert_close(w, reference_weights(case.q, case.k, **case.torch_kw), case.dtype, "weights")
    out_np, w_np = vectorized.attention(case.Q, case.K, case.V, mask=case.mask, causal=case.causal,
                                        scale=case.scale)
    assert_close(out, out_np, case.dtype, "multihead vs vectorized")
    assert_close(w, w_np, case.dtype, "weights multihead vs vectorized")


@pytest.mark.parametrize("dtype", DT)
def test_sdpa_is_causal_aligned_top_left_like_torch(dtype):
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 4, dtype=dtype), torch.randn(5, 4, dtype=dtype), torch.randn(5, 3, dtype=dtype)
    out, w = scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(w[0, 1:], torch.zeros(4, dtype=dtype))  # the single query sees key 0 only
    assert_close(out, torch_sdpa(q, k, v, is_causal=True), dtype)
    assert_close(out, v[:1], dtype)


def test_sdpa_gradients_match_torch():
    torch.manual_seed(1)
    args = [torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    mask = masks.causal_mask(4, 4)
    out, _ = scaled_dot_product_attention(*args, attn_mask=mask)
    grads = torch.autograd.grad(out.square().sum(), args)
    ref = torch_sdpa(*args, attn_mask=mask)
    grads_ref = torch.autograd.grad(ref.square().sum(), args)
    for g, r in zip(grads, grads_ref):
        assert_close(g, r, torch.float64)


def test_split_merge_heads_roundtrip_and_layout():
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).view(2, 3, 8)
    h = split_heads(x, 4)
    assert h.shape == (2, 4, 3, 2)
    assert torch.equal(h[1, 2, 0], x[1, 0, 4:6])  # head 2 owns features [4, 6)
    assert torch.equal(merge_heads(h), x)


# ---------------------------------------------------------------- nn.MultiheadAttention
def _pair(E, H, bias, batch_first, dtype, seed=0):
    torch.manual_seed(seed)
    mha = nn.MultiheadAttention(E, H, bias=bias, batch_first=batch_first, dtype=dtype).eval()
    if bias:  # torch initialises the biases to zero; make them matter
        with torch.no_grad():
            mha.in_proj_bias.normal_()
            mha.out_proj.bias.normal_()
    return mha, MultiHeadSelfAttention.from_torch(mha)


def _torch_mha(mha, x, key_padding_mask=None, attn_mask=None):
    xt = x if mha.batch_first else x.transpose(0, 1)  # (T, B, E) when batch_first=False
    out, w = mha(xt, xt, xt, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                 need_weights=True, average_attn_weights=False)
    return (out if mha.batch_first else out.transpose(0, 1)), w


@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_from_torch_equals_nn_multiheadattention(dtype, batch_first, bias, padded, causal):
    B, T, E, H = 3, 6, 12, 3
    mha, mine = _pair(E, H, bias, batch_first, dtype)
    x = torch.randn(B, T, E, dtype=dtype)
    pm = masks.padding_mask([6, 4, 1], T) if padded else None  # True = real token
    kpm = None if pm is None else ~pm  # torch: True = ignore
    am = ~masks.causal_mask(T) if causal else None  # torch's MHA bool attn_mask: True = hide
    with torch.no_grad():
        out, w = mine(x, padding_mask=pm, is_causal=causal)
        ref, w_ref = _torch_mha(mha, x, kpm, am)
        out_fast, none = mine(x, padding_mask=pm, is_causal=causal, need_weights=False)
    assert w.shape == (B, H, T, T) and none is None
    assert_close(out, ref, dtype, "MHSA vs nn.MultiheadAttention")
    assert_close(w, w_ref, dtype, "per-head weights vs average_attn_weights=False")
    assert_close(out_fast, out, dtype, "need_weights=False path vs need_weights=True path")


def test_from_torch_copies_dropout_and_mode():
    """nn.MultiheadAttention(8, 2, dropout=0.3) used to give a copy with dropout_p=0.0."""
    ref = nn.MultiheadAttention(8, 2, dropout=0.3, batch_first=True).double()
    ours = MultiHeadSelfAttention.from_torch(ref)
    assert ours.dropout_p == 0.3 and ours.training
    assert "dropout_p=0.3" in repr(ours)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    with torch.no_grad():
        out, w = ours(x, generator=torch.Generator().manual_seed(0))  # training: some weights dropped
    assert (w == 0).any() and not torch.allclose(w.sum(-1), torch.ones(2, 2, 5, dtype=torch.float64))
    ref.eval()
    ours = MultiHeadSelfAttention.from_torch(ref)
    assert not ours.training and ours.dropout_p == 0.3
    with torch.no_grad():
        assert_close(ours(x)[0], ref(x, x, x)[0], torch.float64, "eval mode: no dropout on either side")
    assert MultiHeadSelfAttention.from_torch(nn.MultiheadAttention(8, 2)).dropout_p == 0.0


def test_from_torch_is_causal_flag_matches_torch():
    mha, mine = _pair(8, 2, True, True, torch.float64)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    cm = nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    with torch.no_grad():
        ref, _ = mha(x, x, x, attn_mask=cm, is_causal=True, need_weights=False)
        out, _ = mine(x, is_causal=True)
    assert_close(out, ref, torch.float64)


def test_need_weights_false_with_fully_padded_sentence():
    _, mine = _pair(8, 2, True, True, torch.float64)
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    pm = masks.padding_mask([0, 3], 4)  # sentence 0 is all padding: every row fully masked
    with torch.no_grad():
        out, w = mine(x, padding_mask=pm)
        out2, _ = mine(x, padding_mask=pm, need_weights=False)
    assert torch.all(w[0] == 0)
    assert torch.allclose(out[0], mine.W_o.bias.expand(4, 8))  # zero attention -> only the bias
    assert_close(out2, out, torch.float64)


def test_module_trains_and_matches_torch_gradients():
    mha, mine = _pair(8, 2, True, True, torch.float64)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    out, _ = mine(x, is_causal=True)
    out.square().sum().backward()
    ref, _ = _torch_mha(mha, x, attn_mask=~masks.causal_mask(5))
    ref.square().sum().backward()
    assert_close(mine.W_o.weight.grad, mha.out_proj.weight.grad, torch.float64)
    g_in = torch.cat([mine.W_q.weight.grad, mine.W_k.weight.grad, mine.W_v.weight.grad])
    assert_close(g_in, mha.in_proj_weight.grad, torch.float64)


def test_module_dtype_device_and_repr():
    mha = nn.MultiheadAttention(8, 4, dtype=torch.float64)
    mine = MultiHeadSelfAttention.from_torch(mha)
    assert mine.W_q.weight.dtype == torch.float64
    assert "num_heads=4" in repr(mine) and "d_head=2" in repr(mine)


@pytest.mark.parametrize("block_bytes", [40, 200])
def test_softmax_blocks_of_rows_change_nothing(block_bytes, monkeypatch):
    """The in-place softmax runs on blocks of rows (1 row of 10 float32, or 5 rows with a partial
    last block): the weights and output equal, to the bit, those of one block, and torch's."""
    import selfattention.multihead as mh
    import selfattention.vectorized as vz  # the block size both levels read

    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(2, 3, n, 4, generator=g) for n in (13, 10, 10))
    mask = torch.rand(2, 1, 13, 10, generator=g) < 0.8
    mask[1, 0, 4] = False  # a fully masked row: zeros, not NaN
    monkeypatch.setattr(vz, "SOFTMAX_BLOCK_BYTES", 1 << 40)
    whole_out, whole_w = mh.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    monkeypatch.setattr(vz, "SOFTMAX_BLOCK_BYTES", block_bytes)
    out, w = mh.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(out, whole_out) and torch.equal(w, whole_w)
    assert torch.equal(w[1, :, 4], torch.zeros(3, 10))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_inference_softmax_is_torchs_fused_softmax_with_zero_dead_rows():
    """Without autograd the layer's softmax is ``torch.softmax`` itself (one fused kernel, about
    twice as fast on a CPU as five separate steps), bit for bit on every live row; a row of only
    -inf gives zeros, and a row holding NaN stays NaN, as in torch's SDPA."""
    import selfattention.multihead as mh

    g = torch.Generator().manual_seed(7)
    scores = 4 * torch.randn(3, 2, 300, 257, generator=g)
    scores[0, 1, 5] = float("-inf")  # fully masked row
    scores[2, 0, 7, 3] = float("nan")  # a NaN that must propagate to its row
    expected = torch.softmax(scores, dim=-1)
    got = mh._softmax_(scores.clone())
    live = torch.ones(3, 2, 300, dtype=torch.bool)
    live[0, 1, 5] = live[2, 0, 7] = False
    assert torch.equal(got[live], expected[live])
    assert torch.equal(got[0, 1, 5], torch.zeros(257))
    assert torch.isnan(got[2, 0, 7]).all()
    # The autograd branch spells out the same steps; it agrees to float32 rounding.
    traced = mh._softmax_(scores.clone().requires_grad_()).detach()
    torch.testing.assert_close(traced[live], expected[live], rtol=1e-5, atol=1e-7)
    assert torch.equal(traced[0, 1, 5], torch.zeros(257))


def test_softmax_on_non_contiguous_scores_uses_the_in_place_steps():
    """The branch a GPU takes (here reached with non-contiguous scores on the CPU): the steps in
    place, zeros for a row of only -inf, and torch.softmax's values to float32 rounding."""
    import selfattention.multihead as mh

    g = torch.Generator().manual_seed(8)
    scores = 4 * torch.randn(2, 40, 33, generator=g).transpose(-2, -1)  # (2, 33, 40), a view
    scores[1, 3] = float("-inf")
    expected = torch.softmax(scores, dim=-1)
    got = mh._softmax_(scores)
    assert got.data_ptr() == scores.data_ptr()  # written in place: no second (T, S) array
    live = torch.ones(2, 33, dtype=torch.bool)
    live[1, 3] = False
    torch.testing.assert_close(got[live], expected[live], rtol=1e-5, atol=1e-7)
    assert torch.equal(got[1, 3], torch.zeros(40))
