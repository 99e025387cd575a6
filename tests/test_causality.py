"""The future-token test: changing tokens after position t never changes an output at or before t.

Run on every causal code path. The same test run on an *inverted* mask (and on no mask) must find a
leak, which proves the test is able to fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import (
    PROPERTY_SMALL,
    one_thread,  # noqa: F401 (autouse: one thread per module)
    prefix_change,
)
from hypothesis import given
from hypothesis import strategies as st

from selfattention import loops, masks, vectorized
from selfattention.kvcache import KVCache, decode_step
from selfattention.multihead import MultiHeadSelfAttention, scaled_dot_product_attention
from selfattention.tiled import tiled_attention

D = 8
RNG = np.random.default_rng(1234)
W_q, W_k, W_v = (RNG.standard_normal((D, D)) / np.sqrt(D) for _ in range(3))
torch.manual_seed(0)
MHA = MultiHeadSelfAttention(D, 2).double().eval()

# Outputs at or before t must be *unchanged*: with exp(-inf) = 0 exactly, the hidden tokens add
# exactly 0, so anything above float64 round-off is a leak. A leak moves outputs by ~1e-1.
UNCHANGED = 1e-12
LEAKED = 1e-4


def _proj(x):
    t = torch.from_numpy(x)
    return [t @ torch.from_numpy(W)[None] for W in (W_q, W_k, W_v)]


def _numpy(x):
    return vectorized.self_attention(x, W_q, W_k, W_v, causal=True)[0]


def _numpy_mask(x):
    T = x.shape[-2]
    return vectorized.attention(x @ W_q, x @ W_k, x @ W_v, mask=np.tri(T, dtype=bool))[0]


def _loops(x):
    return np.array([loops.self_attention(s.tolist(), W_q.tolist(), W_k.tolist(), W_v.tolist(),
                                          causal=True)[0] for s in x])


def _sdpa(x):
    return scaled_dot_product_attention(*_proj(x), is_causal=True)[0]


def _sdpa_mask(x):
    return scaled_dot_product_attention(*_proj(x), attn_mask=masks.causal_mask(x.shape[-2]))[0]


def _module(need_weights):
    def f(x):
        with torch.no_grad():
            return MHA(torch.from_numpy(x), is_causal=True, need_weights=need_weights)[0]
    return f


def _module_padded(x):
    # The last sequence really is padded (its last two positions, or one when T = 2), so the
    # causal mask is tested together with a padding mask that hides keys.
    B, T = x.shape[:2]
    pm = masks.padding_mask([T] * (B - 1) + [max(1, T - 2)], T)
    with torch.no_grad():
        return MHA(torch.from_numpy(x), padding_mask=pm, is_causal=True)[0]


def _tiled(block):
    return lambda x: tiled_attention(*_proj(x), block_size=block, is_causal=True)


def _kv_cache(x):
    xt = torch.from_numpy(x)
    cache = KVCache.for_module(MHA, batch=xt.shape[0], max_len=xt.shape[1])
    # A prefill of several tokens first (the causal mask inside a chunk is what is tested), then
    # one token per step.
    T = xt.shape[1]
    starts = [0, *range(max(1, T - 2), T)]
    chunks = [xt[:, a:b] for a, b in zip(starts, starts[1:] + [T])]
    with torch.no_grad():
        return torch.cat([decode_step(MHA, chunk, cache)[0] for chunk in chunks], 1)


CAUSAL_PATHS = {
    "vectorized causal=True": _numpy,
    "vectorized causal bool mask": _numpy_mask,
    "loops": _loops,
    "multihead sdpa is_causal": _sdpa,
    "multihead sdpa causal_mask": _sdpa_mask,
    "MultiHeadSelfAttention": _module(True),
    "MultiHeadSelfAttention need_weights=False": _module(False),
    "MultiHeadSelfAttention + padding": _module_padded,
    "tiled block 1": _tiled(1),
    "tiled block 3": _tiled(3),
    "tiled block 128": _tiled(128),
    "KV-cache decoding": _kv_cache,
}


@pytest.mark.parametrize("path", list(CAUSAL_PATHS))
@PROPERTY_SMALL
@given(T=st.integers(2, 9), B=st.integers(1, 2), data=st.data())
def test_future_tokens_do_not_change_the_past(path, T, B, data):
    t = data.draw(st.integers(0, T - 2), label="t")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31), label="seed"))
    x = rng.standard_normal((B, T, D))
    assert prefix_change(CAUSAL_PATHS[path], x, t, rng) <= UNCHANGED


def _inverted(x):
    T = x.shape[-2]
    return vectorized.attention(x @ W_q, x @ W_k, x @ W_v, mask=~np.tri(T, dtype=bool))[0]


def _inverted_torch(x):
    return scaled_dot_product_attention(*_proj(x), attn_mask=~masks.causal_mask(x.shape[-2]))[0]


def _no_mask(x):
    return vectorized.self_attention(x, W_q, W_k, W_v)[0]


@pytest.mark.parametrize("f", [_inverted, _inverted_torch, _no_mask], ids=["inverted numpy",
                                                                          "inverted torch", "no mask"])
@pytest.mark.parametrize("t", [0, 3, 6])
def test_the_test_can_fail(f, t):
    rng = np.random.default_rng(t)
    x = rng.standard_normal((2, 8, D))
    assert prefix_change(f, x, t, rng) > LEAKED
