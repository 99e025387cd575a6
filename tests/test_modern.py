"""Attention as current models use it: RoPE, grouped-query attention, the sliding-window cache,
attention dropout and sampling, each against an independent reference (torch where torch has the
operation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import one_thread  # noqa: F401 (autouse: one thread per module)
from torch import nn

from selfattention import masks
from selfattention.kvcache import KVCache, SlidingWindowCache, decode_step
from selfattention.model import ModelConfig, TinyTransformer, generate
from selfattention.multihead import MultiHeadSelfAttention, scaled_dot_product_attention
from selfattention.positional import apply_rope, rope_halves
from selfattention.sampling import filter_logits, sample_next, top_k_filter, top_p_filter

F64 = torch.float64


def rand(*shape, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


# --------------------------------------------------------------------------------------- RoPE


def rope_by_matrices(x, positions, base=10000.0):
    """RoPE written as block-diagonal 2x2 rotation matrices, one per position (the reference)."""
    T, d = x.shape[-2], x.shape[-1]
    out = torch.empty_like(x)
    for t in range(T):
        R = torch.zeros(d, d, dtype=x.dtype)
        for i in range(d // 2):
            a = float(positions[t]) * base ** (-2 * i / d)
            R[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor(
                [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=x.dtype
            )
        out[..., t, :] = x[..., t, :] @ R.T
    return out


def test_rope_equals_rotation_matrices_and_keeps_norms():
    x = rand(2, 3, 5, 8)
    pos = torch.tensor([0, 1, 4, 9, 100])
    got = apply_rope(x, pos)
    torch.testing.assert_close(got, rope_by_matrices(x, pos), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(apply_rope(x), apply_rope(x, torch.arange(5)))
    torch.testing.assert_close(apply_rope(x, torch.zeros(5, dtype=torch.long)), x)


@pytest.mark.parametrize("rope", [apply_rope, rope_halves])
def test_rope_scores_depend_only_on_the_offset(rope):
    q, k = rand(1, 16, seed=1), rand(1, 16, seed=2)
    scores = {}
    for m in range(0, 40, 3):
        for n in range(0, 40, 5):
            s = rope(q, torch.tensor([m])) @ rope(k, torch.tensor([n])).T
            scores.setdefault(m - n, []).append(float(s))
    assert len([o for o, v in scores.items() if len(v) > 1]) > 10
    for offset, values in scores.items():
        assert max(values) - min(values) < 1e-10, offset
    # and it does depend on the offset (the test could fail)
    assert abs(scores[0][0] - scores[5][0]) > 1e-3


def test_rope_halves_is_interleaved_on_permuted_features():
    x = rand(2, 6, 8)
    perm = torch.tensor([0, 4, 1, 5, 2, 6, 3, 7])
    torch.testing.assert_close(rope_halves(x)[..., perm], apply_rope(x[..., perm]))


def test_rope_batched_positions_rotate_each_sequence_by_its_own():
    x = rand(2, 3, 4, 6)  # (B, H, T, d)
    pos = torch.tensor([[0, 1, 2, 3], [5, 6, 7, 8]])
    got = apply_rope(x, pos)
    for b in range(2):
        torch.testing.assert_close(got[b], apply_rope(x[b], pos[b]))
    assert not torch.allclose(got[1], apply_rope(x[1], pos[0]))


def test_rope_float32_matches_float64():
    x = rand(3, 50, 64)
    got = apply_rope(x.float(), torch.arange(1000, 1050))
    torch.testing.assert_close(got.double(), apply_rope(x, torch.arange(1000, 1050)), rtol=1e-5, atol=1e-5)
    assert got.dtype == torch.float32


ROPE_ERRORS = [
    (lambda: apply_rope(rand(2, 5, 7)), ValueError, r"d must be even.*d=7.*\(2, 5, 7\)"),
    (
        lambda: apply_rope(rand(5, 8), torch.arange(4)),
        ValueError,
        r"positions must have shape \(T,\) with T = 5.*got shape \(4\)",
    ),
    (
        lambda: apply_rope(rand(2, 5, 8), torch.zeros(3, 5, dtype=torch.long)),
        ValueError,
        r"\(B, T\) = \(2, 5\).*got shape \(3, 5\)",
    ),
    (  # a 2-D x has no batch: the message must not offer the (B, T) shape it just refused
        lambda: apply_rope(rand(5, 8), torch.zeros(5, 5, dtype=torch.long)),
        ValueError,
        r"positions must have shape \(T,\) with T = 5, for x of shape \(5, 8\), got shape \(5, 5\)",
    ),
    (lambda: apply_rope(rand(5, 8), torch.arange(5.0)), TypeError, r"integers.*torch.float32"),
    (lambda: apply_rope(rand(5, 8), torch.ones(5, dtype=torch.bool)), TypeError, r"torch.bool"),
    (lambda: apply_rope(rand(5, 8), [0, 1, 2, 3, 4]), TypeError, r"positions must be a torch.Tensor.*list"),
    (lambda: apply_rope(torch.arange(8).view(1, 8)), TypeError, r"floating.*torch.int64"),
    (lambda: apply_rope(rand(8)), ValueError, r"\(\.\.\., T, d\).*\(8\)"),
]


@pytest.mark.parametrize("call,exc,match", ROPE_ERRORS)
def test_rope_rejects_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------- grouped-query


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("is_causal", [False, True])
def test_gqa_layer_equals_torch_sdpa_and_repeated_heads(num_kv_heads, is_causal):
    torch.manual_seed(0)
    mha = MultiHeadSelfAttention(16, 4, num_kv_heads=num_kv_heads).double()
    assert mha.W_k.weight.shape == (num_kv_heads * 4, 16) == mha.W_v.weight.shape
    x = rand(3, 7, 16)
    out, w = mha(x, is_causal=is_causal)
    fast, none = mha(x, is_causal=is_causal, need_weights=False)
    assert none is None and w.shape == (3, 4, 7, 7)
    q, k, v = mha.project(x)
    assert k.shape == (3, num_kv_heads, 7, 4)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=True)
    ref_rep = F.scaled_dot_product_attention(
        q,
        k.repeat_interleave(4 // num_kv_heads, 1),
        v.repeat_interleave(4 // num_kv_heads, 1),
        is_causal=is_causal,
    )
    B, H, T, d = ref.shape
    for r in (ref, ref_rep):
        torch.testing.assert_close(out, mha.W_o(r.transpose(1, 2).reshape(B, T, H * d)))
    torch.testing.assert_close(fast, out)


def test_gqa_heads_are_grouped_consecutively():
    """Query heads 0, 1 share kv head 0; 2, 3 share kv head 1 (torch's order)."""
    q, k, v = rand(1, 4, 5, 3), rand(1, 2, 5, 3, seed=1), rand(1, 2, 5, 3, seed=2)
    out, _ = scaled_dot_product_attention(q, k, v, enable_gqa=True)
    for h in range(4):
        one, _ = scaled_dot_product_attention(q[:, h], k[:, h // 2], v[:, h // 2])
        torch.testing.assert_close(out[:, h], one)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, enable_gqa=True))


def test_from_torch_still_matches_nn_multihead_attention():
    torch.manual_seed(1)
    ref = nn.MultiheadAttention(8, 2, batch_first=True).double()
    ours = MultiHeadSelfAttention.from_torch(ref)
    assert ours.num_kv_heads == 2
    x = rand(2, 5, 8)
    torch.testing.assert_close(ours(x)[0], ref(x, x, x)[0])


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_gqa_cache_stores_kv_heads_and_decoding_equals_recomputation(num_kv_heads):
    torch.manual_seed(2)
    mha = MultiHeadSelfAttention(16, 4, num_kv_heads=num_kv_heads).double()
    x = rand(2, 9, 16)
    full, _ = mha(x, is_causal=True)
    cache = KVCache.for_module(mha, 2, 9)
    assert cache.nbytes == 2 * 2 * num_kv_heads * 9 * 4 * 8  # K and V, (B, H_kv, max_len, d_head)
    prompt, _ = mha.step(x[:, :4], cache)
    steps = [decode_step(mha, x[:, t : t + 1], cache)[0] for t in range(4, 9)]
    torch.testing.assert_close(torch.cat([prompt, *steps], 1), full)
    assert cache.keys.shape == (2, num_kv_heads, 9, 4)


def test_cache_memory_shrinks_by_the_group_size():
    sizes = {
        kv: KVCache.for_module(MultiHeadSelfAttention(64, 8, num_kv_heads=kv), 1, 128).nbytes
        for kv in (8, 2, 1)
    }
    assert sizes[8] == 4 * sizes[2] == 8 * sizes[1]


@pytest.mark.parametrize("bad", [3, 0, -2, 16])
def test_num_kv_heads_that_cannot_work(bad):
    with pytest.raises(ValueError, match=rf"num_heads=8, num_kv_heads={bad}"):
        MultiHeadSelfAttention(16, 8, num_kv_heads=bad)


def test_num_kv_heads_type_and_sdpa_gqa_errors():
    with pytest.raises(TypeError, match="num_kv_heads must be an int, got 2.0 \\(a float\\)"):
        MultiHeadSelfAttention(16, 8, num_kv_heads=2.0)
    with pytest.raises(ValueError, match=r"H=4 .*H_kv=3"):
        scaled_dot_product_attention(rand(1, 4, 5, 3), rand(1, 3, 5, 3), rand(1, 3, 5, 3), enable_gqa=True)


# ---------------------------------------------------------------------------- sliding window


@pytest.mark.parametrize("window", [1, 3, 4, 20])
@pytest.mark.parametrize("num_kv_heads", [4, 1])
def test_sliding_window_cache_equals_masked_recomputation(window, num_kv_heads):
    torch.manual_seed(3)
    mha = MultiHeadSelfAttention(16, 4, num_kv_heads=num_kv_heads).double()
    x = rand(2, 12, 16, seed=4)
    q, k, v = mha.project(x)
    ref, _ = scaled_dot_product_attention(
        q, k, v, attn_mask=masks.sliding_window_mask(12, window), enable_gqa=True
    )
    ref = mha.W_o(ref.transpose(1, 2).reshape(2, 12, 16))
    cache = SlidingWindowCache.for_module(mha, 2, window)
    before = cache.nbytes
    prompt, _ = mha.step(x[:, :5], cache)  # a prompt longer than some windows
    steps = [mha.step(x[:, t : t + 1], cache)[0] for t in range(5, 9)]
    tail, _ = mha.step(x[:, 9:], cache)  # several tokens again, after the ring wrapped
    torch.testing.assert_close(torch.cat([prompt, *steps, tail], 1), ref)
    assert cache.nbytes == before and cache.length == 12
    assert sorted(cache.positions.tolist())[-min(window, 12) :] == list(range(12 - min(window, 12), 12))
    # without the window the answer differs (the test can fail)
    full, _ = mha(x, is_causal=True)
    if window < 12:
        assert not torch.allclose(full[:, -1], ref[:, -1])


def test_sliding_window_cache_memory_is_constant_and_kv_cache_grows():
    mha = MultiHeadSelfAttention(16, 4)
    ring = SlidingWindowCache.for_module(mha, 1, 8)
    sizes = []
    with torch.no_grad():
        for _ in range(50):
            mha.step(torch.randn(1, 1, 16), ring)
            sizes.append(ring.nbytes)
    assert len(set(sizes)) == 1 and ring.length == 50
    assert KVCache.for_module(mha, 1, 50).nbytes > KVCache.for_module(mha, 1, 8).nbytes


def test_sliding_window_cache_rejects_wrong_shapes():
    ring = SlidingWindowCache(1, 2, 4, 3)
    with pytest.raises(ValueError, match=r"\(B, H, T_new, d_head\) = \(1, 2, T_new, 3\).*\(1, 3, 1, 3\)"):
        ring.update(rand(1, 3, 1, 3), rand(1, 3, 1, 3))
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        SlidingWindowCache(1, 2, 0, 3)


def test_step_with_padding_and_rope_equals_forward():
    torch.manual_seed(5)
    mha = MultiHeadSelfAttention(8, 2, num_kv_heads=1, rope=True).double()
    x = rand(2, 6, 8)
    pad = masks.padding_mask(torch.tensor([6, 4]), 6)
    full, _ = mha(x, padding_mask=pad, is_causal=True)
    cache = KVCache.for_module(mha, 2, 6)
    a, _ = mha.step(x[:, :3], cache, padding_mask=pad[:, :3])
    b = [mha.step(x[:, t : t + 1], cache, padding_mask=pad[:, : t + 1])[0] for t in range(3, 6)]
    got = torch.cat([a, *b], 1)
    torch.testing.assert_close(got[0], full[0])
    torch.testing.assert_close(got[1, :4], full[1, :4])


# --------------------------------------------------------------------------------- dropout


def test_dropout_is_inverted_and_unbiased():
    q, k, v = rand(2, 2, 5, 4, seed=6), rand(2, 2, 5, 4, seed=7), rand(2, 2, 5, 4, seed=8)
    plain, w0 = scaled_dot_product_attention(q, k, v)
    g = torch.Generator().manual_seed(0)
    draws = [scaled_dot_product_attention(q, k, v, dropout_p=0.3, generator=g) for _ in range(4000)]
    out_mean = torch.stack([o for o, _ in draws]).mean(0)
    torch.testing.assert_close(out_mean, plain, rtol=0, atol=0.03)
    w = draws[0][1]
    kept = w != 0
    torch.testing.assert_close(w[kept], w0[kept] / 0.7)  # survivors scaled by 1 / (1 - p)
    assert 0.55 < kept.double().mean() < 0.85
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, dropout_p=0.5, generator=g1)[0],
        scaled_dot_product_attention(q, k, v, dropout_p=0.5, generator=g2)[0],
    )


def test_layer_dropout_only_in_training():
    torch.manual_seed(9)
    drop = MultiHeadSelfAttention(8, 2, dropout_p=0.5).double()
    plain = MultiHeadSelfAttention(8, 2).double()
    plain.load_state_dict(drop.state_dict())
    x = rand(2, 5, 8)
    drop.eval()
    torch.testing.assert_close(drop(x)[0], plain(x)[0])
    torch.testing.assert_close(drop(x, need_weights=False)[0], plain(x)[0])
    drop.train()
    g = torch.Generator().manual_seed(1)
    a = drop(x, generator=g)[0]
    assert not torch.allclose(a, plain(x)[0])
    assert not torch.allclose(drop(x, need_weights=False)[0], plain(x)[0])  # torch's fused path
    assert "dropout_p=0.5" in repr(drop)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_p_outside_the_interval(p):
    with pytest.raises(ValueError, match=rf"dropout_p must lie in \[0, 1\), got dropout_p={p}"):
        MultiHeadSelfAttention(8, 2, dropout_p=p)
    with pytest.raises(ValueError, match=rf"got dropout_p={p}"):
        scaled_dot_product_attention(rand(3, 2), rand(3, 2), rand(3, 2), dropout_p=p)
    with pytest.raises(TypeError, match="dropout_p must be a float in \\[0, 1\\), got str"):
        MultiHeadSelfAttention(8, 2, dropout_p="0.1")


# -------------------------------------------------------------------------------- sampling


def test_top_k_and_top_p_filters():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0, 2.5]])
    assert torch.isinf(top_k_filter(logits, 2)).tolist() == [[True, False, True, True, False]]
    assert torch.equal(top_k_filter(logits, 99), logits)
    probs = logits.softmax(-1)  # [0.05, 0.44, 0.16, 0.02, 0.27] (sorted: 3.0, 2.5, 2.0, 1.0, 0.0)
    kept = ~torch.isinf(top_p_filter(logits, 0.5))
    assert kept.tolist() == [[False, True, False, False, True]]  # 0.44 < 0.5, 0.44 + 0.27 >= 0.5
    assert (~torch.isinf(top_p_filter(logits, 0.3))).sum() == 1  # the top token alone
    assert torch.equal(top_p_filter(logits, 1.0), logits)
    assert float(probs[kept].sum()) >= 0.5


def test_filters_keep_ties_whatever_the_sort_does():
    """Top-k and top-p keep every token tied with the last one kept (a sort may order ties either
    way: the result must not depend on it)."""
    logits = torch.tensor([[2.0, 2.0, 0.0], [0.0, 2.0, 2.0]])
    for filtered in (top_k_filter(logits, 1), top_p_filter(logits, 0.4)):
        assert (~torch.isinf(filtered)).tolist() == [[True, True, False], [False, True, True]]


def test_a_tiny_temperature_is_greedy_without_overflow():
    """Dividing raw logits by 1e-39 overflows to inf, and the softmax of inf - inf is NaN; the
    largest logit is subtracted first, so the argmax gets all the probability."""
    logits = torch.tensor([[1.0, 3.0, 2.0], [-5.0, -7.0, 40.0]])
    probs = filter_logits(logits, temperature=1e-39).softmax(-1)
    assert torch.equal(probs, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    assert torch.equal(sample_next(logits, temperature=1e-39), torch.tensor([1, 2]))


def test_sampling_frequencies_follow_the_filtered_softmax():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0, 2.5]]).expand(20000, 5)
    g = torch.Generator().manual_seed(0)
    ids = sample_next(logits, temperature=0.7, top_k=3, generator=g)
    freq = torch.bincount(ids, minlength=5).double() / len(ids)
    want = top_k_filter(logits[0] / 0.7, 3).softmax(-1).double()
    torch.testing.assert_close(freq, want, rtol=0, atol=0.015)
    assert freq[0] == freq[3] == 0


def test_greedy_is_the_limit_of_temperature_to_zero():
    logits = rand(50, 11, seed=3).float()
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next(logits, temperature=1e-3, generator=g), logits.argmax(-1))
    assert torch.equal(sample_next(logits), logits.argmax(-1))
    top = [
        float(filter_logits(logits, temperature=T).softmax(-1).max(-1).values.min())
        for T in (1.0, 0.1, 0.01, 1e-4)
    ]
    assert top == sorted(top) and top[0] < 0.9 and top[-1] > 0.999  # all mass moves to the argmax


def _top_p_reference(logits, top_p):
    """The documented rule in float64 (exact enough): drop a token when the tokens strictly
    before it, by decreasing probability, already reach top_p; keep ties with the last kept."""
    z = logits.double()
    zs = z.sort(-1, descending=True).values
    p = zs.softmax(-1)
    before = torch.cat([torch.zeros_like(p[..., :1]), p.cumsum(-1)[..., :-1]], -1)
    last_kept = zs.masked_fill(before >= top_p, float("inf")).amin(-1, keepdim=True)
    return z >= last_kept  # (..., V), True = kept


def test_top_p_one_keeps_every_token_of_a_large_vocabulary():
    """A float32 running sum of 50,000 probabilities reaches 1 early: top_p=1 used to drop
    ~11,000 tokens of these logits, and ~150,000 of 200,000 at a larger scale."""
    for scale in (3.0, 10.0):
        logits = rand(4, 50_000, dtype=torch.float32, seed=7) * scale
        assert torch.equal(top_p_filter(logits, 1.0), logits)
        assert torch.equal(filter_logits(logits, temperature=0.5, top_p=1), filter_logits(logits, 0.5))


@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.99, 0.999])
def test_top_p_keeps_what_the_exact_rule_keeps_on_a_large_vocabulary(top_p):
    logits = rand(4, 50_000, dtype=torch.float32, seed=8) * 3
    kept = ~torch.isinf(top_p_filter(logits, top_p))
    assert torch.equal(kept, _top_p_reference(logits, top_p))
    assert kept[torch.arange(4), logits.argmax(-1)].all()  # the top token, always


SAMPLING_ERRORS = [
    (dict(temperature=0.0), ValueError, r"temperature must be a finite number > 0, got temperature=0.0"),
    (dict(temperature=-1.0), ValueError, r"got temperature=-1.0"),
    (dict(top_k=0), ValueError, r"top_k must be >= 1.*got top_k=0"),
    (dict(top_k=2.0), TypeError, r"top_k must be an int, got 2.0 \(a float\)"),
    (dict(top_p=0.0), ValueError, r"top_p must lie in \(0, 1\].*got top_p=0.0"),
    (dict(top_p=1.5), ValueError, r"got top_p=1.5"),
    (dict(temperature="hot"), TypeError, r"temperature must be a real number or None, got 'hot' \(a str\)"),
    (dict(temperature=float("nan")), ValueError, r"a finite number > 0, got temperature=nan"),
    (dict(top_p=float("nan")), ValueError, r"top_p must lie in \(0, 1\].*got top_p=nan"),
    # inf used to pass, then (-inf) / inf = NaN made torch.multinomial fail on a masked logit.
    (dict(temperature=float("inf")), ValueError, r"temperature must be a finite number > 0.*=inf"),
    (dict(temperature=np.float32("inf")), ValueError, r"finite number > 0, got temperature=inf"),
    (dict(temperature=True), TypeError, r"temperature must be a real number or None, got True \(a bool\)"),
    (dict(top_p=np.bool_(True)), TypeError, r"top_p must be a real number or None, got .*\(a bool_?\)"),
    (dict(top_p="0.9"), TypeError, r"top_p must be a real number or None, got '0.9' \(a str\)"),
    (dict(top_p=np.float64(1.5)), ValueError, r"top_p must lie in \(0, 1\].*got top_p=1.5"),
]


@pytest.mark.parametrize("kw,exc,match", SAMPLING_ERRORS)
def test_sampling_rejects_bad_settings(kw, exc, match):
    with pytest.raises(exc, match=match):
        sample_next(torch.zeros(1, 4), **kw)
    model = TinyTransformer(ModelConfig(vocab_size=5, max_len=8, d_model=8, num_heads=2))
    with pytest.raises(exc, match=match):
        generate(model, torch.zeros(1, 2, dtype=torch.long), 3, **kw)


def test_sampling_accepts_any_real_number():
    """NumPy floats (np.float32(0.5)) used to be rejected as "not a float" while NumPy integers
    were accepted for top_k; any real number but a bool is accepted now."""
    logits = torch.tensor([[1.0, float("-inf"), 2.0, 0.5]])
    want = filter_logits(logits, temperature=0.5, top_k=2, top_p=0.9)
    for t, k, p in ((np.float32(0.5), np.int64(2), np.float32(0.9)), (np.float64(0.5), 2, np.float64(0.9))):
        got = filter_logits(logits, temperature=t, top_k=k, top_p=p)
        assert torch.equal(got, want) and got.dtype == torch.float32
        g = torch.Generator().manual_seed(0)
        assert sample_next(logits, t, k, p, generator=g).item() in (0, 2)
    assert torch.equal(filter_logits(logits, temperature=1), logits - 2.0)  # an int temperature


def test_a_huge_finite_temperature_samples_without_nan():
    logits = torch.tensor([[1.0, float("-inf"), 2.0]])
    probs = filter_logits(logits, temperature=1e30).softmax(-1)
    assert torch.equal(probs, torch.tensor([[0.5, 0.0, 0.5]]))
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, temperature=1e30, generator=g).item() in (0, 2)


# ------------------------------------------------------------------------- the tiny model


def test_generate_samples_reproducibly_and_greedy_by_default():
    torch.manual_seed(0)
    model = TinyTransformer(ModelConfig(vocab_size=7, max_len=12, d_model=16, num_heads=2)).eval()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    greedy = generate(model, prompt, 6)
    kw = dict(temperature=1.5, top_k=5, top_p=0.9)
    a = generate(model, prompt, 6, generator=torch.Generator().manual_seed(3), **kw)
    b = generate(model, prompt, 6, use_cache=False, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(a, b) and not torch.equal(a, greedy)
    cold = generate(model, prompt, 6, temperature=1e-4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(cold, greedy)


def test_rope_model_is_causal_and_cache_equals_recomputation():
    torch.manual_seed(1)
    model = TinyTransformer(ModelConfig(vocab_size=7, max_len=12, d_model=16, num_heads=2, pos="rope")).eval()
    assert not hasattr(model, "pos_emb") and all(b.attn.rope for b in model.blocks)
    idx = torch.randint(0, 7, (2, 10))
    logits, _ = model(idx)
    other = idx.clone()
    other[:, 6:] = (other[:, 6:] + 1) % 7
    torch.testing.assert_close(model(other)[0][:, :6], logits[:, :6])
    caches = model.new_caches(2)
    first, _ = model.forward_cached(idx[:, :4], caches)
    rest = [model.forward_cached(idx[:, t : t + 1], caches)[0] for t in range(4, 10)]
    torch.testing.assert_close(torch.cat([first, *rest], 1), logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(generate(model, idx[:, :3], 5), generate(model, idx[:, :3], 5, use_cache=False))


def test_rope_model_max_len_error_says_what_max_len_bounds():
    """A RoPE model has no position table: the error must not say it "knows max_len positions"."""
    cfg = dict(vocab_size=5, d_model=8, num_heads=2, pos="rope")
    torch.manual_seed(0)
    model = TinyTransformer(ModelConfig(max_len=4, **cfg)).eval()
    idx = torch.zeros(1, 6, dtype=torch.long)
    with pytest.raises(ValueError, match=r"idx has shape \(1, 6\): positions 0 \.\. 5 are needed") as err:
        model(idx)
    msg = str(err.value)
    assert "knows" not in msg and 'pos="rope" there is no position table' in msg
    assert "length of the KV caches new_caches makes" in msg and "larger max_len" in msg
    caches = model.new_caches(1)
    model.forward_cached(torch.zeros(1, 4, dtype=torch.long), caches)
    with pytest.raises(ValueError, match=r"idx_new has shape \(1, 1\): positions 4 \.\. 4.*no position"):
        model.forward_cached(torch.zeros(1, 1, dtype=torch.long), caches)
    # What the message promises: the same weights, in a model with a larger max_len, read it.
    longer = TinyTransformer(ModelConfig(max_len=8, **cfg)).eval()
    longer.load_state_dict(model.state_dict())
    torch.testing.assert_close(longer(idx[:, :4])[0], model(idx[:, :4])[0])
    assert longer(idx)[0].shape == (1, 6, 5)
    learned = TinyTransformer(ModelConfig(max_len=4, vocab_size=5, d_model=8, num_heads=2))
    with pytest.raises(ValueError, match=r"the model knows max_len=4 positions"):
        learned(idx)


def test_model_pos_must_be_known():
    with pytest.raises(ValueError, match=r'pos must be "learned" or "rope", got pos=\'sinusoidal\''):
        ModelConfig(vocab_size=5, max_len=8, pos="sinusoidal")
