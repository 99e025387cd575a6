"""KV-cache decoding equals full causal recomputation at every step."""

from __future__ import annotations

import pytest
import torch
from _helpers import (
    assert_close,
    one_thread,  # noqa: F401 (autouse: one thread per module)
)

from selfattention import masks
from selfattention.kvcache import KVCache, decode_step
from selfattention.multihead import MultiHeadSelfAttention

DT = [torch.float32, torch.float64]


def _model(dtype, seed=0, d_model=12, heads=3):
    torch.manual_seed(seed)
    return MultiHeadSelfAttention(d_model, heads).to(dtype).eval()


def _decode(mha, x, chunks, padding_mask=None):
    """Feed x (B, T, d) through decode_step in chunks; return outputs and weights per chunk."""
    cache = KVCache.for_module(mha, batch=x.shape[0], max_len=x.shape[1])
    pos, results = 0, []
    with torch.no_grad():
        for n in chunks:
            pm = None if padding_mask is None else padding_mask[:, : pos + n]
            out, w = decode_step(mha, x[:, pos : pos + n], cache, padding_mask=pm)
            results.append((pos, n, out, w))
            pos += n
    assert cache.length == x.shape[1]
    return results


@pytest.mark.parametrize("dtype", DT)
@pytest.mark.parametrize("chunks", [[1] * 7, [3, 1, 2, 1], [7], [2, 5]])
@pytest.mark.parametrize("padding", [None, "right", "left"])
def test_decoding_equals_full_recomputation(dtype, chunks, padding):
    mha = _model(dtype)
    B, T = 3, 7
    x = torch.randn(B, T, 12, dtype=dtype)
    pm = None
    if padding == "right":
        pm = masks.padding_mask([7, 4, 1], T)
    elif padding == "left":  # pads first: the first rows of sentence 1 see no real key at all
        pm = masks.padding_mask([7, 4, 2], T).flip(-1)
    with torch.no_grad():
        full, w_full = mha(x, padding_mask=pm, is_causal=True)
    for pos, n, out, w in _decode(mha, x, chunks, pm):
        assert out.shape == (B, n, 12) and w.shape == (B, 3, n, pos + n)
        assert_close(out, full[:, pos : pos + n], dtype, f"step at {pos}, chunk {n}")
        assert_close(w, w_full[:, :, pos : pos + n, : pos + n], dtype, "weights")
        assert torch.all(w_full[:, :, pos : pos + n, pos + n :] == 0)  # future keys never seen


@pytest.mark.parametrize("chunks", [[1] * 7, [3, 1, 2, 1]])
@pytest.mark.parametrize("padding", [None, "left"])
def test_decode_step_without_weights_gives_the_same_output(chunks, padding):
    """need_weights=False runs torch's fused SDPA (what a timing of the cache should use) and
    returns None for the weights; the outputs equal those of the library's SDPA."""
    mha = _model(torch.float64, seed=3)
    x = torch.randn(3, 7, 12, dtype=torch.float64)
    pm = None if padding is None else masks.padding_mask([7, 4, 2], 7).flip(-1)
    fast = KVCache.for_module(mha, batch=3, max_len=7)
    pos = 0
    with torch.no_grad():
        for _, n, out, w in _decode(mha, x, chunks, pm):
            step_pm = None if pm is None else pm[:, : pos + n]
            out_fast, none = decode_step(
                mha, x[:, pos : pos + n], fast, padding_mask=step_pm, need_weights=False
            )
            assert none is None and w is not None
            torch.testing.assert_close(out_fast, out, rtol=1e-12, atol=1e-12)
            pos += n
    assert fast.length == 7


def test_top_left_alignment_would_be_wrong_when_decoding():
    """The bug the bottom-right alignment avoids: with is_causal the new query sees key 0 only."""
    mha = _model(torch.float64)
    x = torch.randn(1, 5, 12, dtype=torch.float64)
    with torch.no_grad():
        full, _ = mha(x, is_causal=True)
        q, k, v = mha.project(x)
        from selfattention.multihead import merge_heads, scaled_dot_product_attention

        wrong, _ = scaled_dot_product_attention(q[:, :, -1:], k, v, is_causal=True)
        wrong = mha.W_o(merge_heads(wrong))
    assert (wrong[:, 0] - full[:, -1]).abs().max() > 1e-3
    last = _decode(mha, x, [4, 1])[-1][2]
    assert_close(last[:, 0], full[:, -1], torch.float64)


def test_cache_properties_append_reset_and_overflow():
    cache = KVCache(2, 3, 5, 4, dtype=torch.float64)
    assert cache.max_len == 5 and cache.length == 0
    assert cache.nbytes == 2 * (2 * 3 * 5 * 4) * 8
    k, v = torch.randn(2, 3, 2, 4, dtype=torch.float64), torch.randn(2, 3, 2, 4, dtype=torch.float64)
    ks, vs = cache.append(k, v)
    assert torch.equal(ks, k) and torch.equal(vs, v) and cache.keys.shape == (2, 3, 2, 4)
    cache.append(k, v)
    with pytest.raises(ValueError, match=r"holds 4 of max_len=5 positions and cannot take 2 more"):
        cache.append(k, v)
    assert cache.length == 4  # a failed append changes nothing
    cache.reset()
    assert cache.length == 0 and cache.values.shape == (2, 3, 0, 4)


def test_decode_step_overflow_raises():
    mha = _model(torch.float32)
    cache = KVCache.for_module(mha, batch=1, max_len=3)
    x = torch.randn(1, 2, 12)
    decode_step(mha, x, cache)
    with pytest.raises(ValueError, match=r"max_len=3"):
        decode_step(mha, x, cache)


def test_for_module_matches_module():
    mha = _model(torch.float64)
    cache = KVCache.for_module(mha, batch=2, max_len=9)
    assert cache.keys.dtype == torch.float64 and cache._k.shape == (2, 3, 9, 4)
