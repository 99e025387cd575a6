"""Tests of ``selfattention.variants`` (chapter 11): every efficient variant against a reference
that computes the same thing the slow, obvious way, the future-token test for the causal ones, a
check that the efficient ones never build a (T, T) tensor, the structured self-attention and its
penalty, and the error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from selfattention import masks
from selfattention import variants as V

TOL = {torch.float64: dict(atol=1e-12, rtol=1e-12), torch.float32: dict(atol=1e-5, rtol=1e-5)}


def _qkv(shape_q, S=None, d_v=None, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    *lead, T, d = shape_q
    S = T if S is None else S
    d_v = d if d_v is None else d_v
    q = torch.randn(*lead, T, d, generator=g, dtype=dtype)
    k = torch.randn(*lead, S, d, generator=g, dtype=dtype)
    v = torch.randn(*lead, S, d_v, generator=g, dtype=dtype)
    return q, k, v


def _close(a, b, dtype=torch.float64):
    torch.testing.assert_close(a, b, **TOL[dtype])


# ---------------------------------------------------------------------------------------------
# Sliding-window attention
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("T", [1, 2, 7, 16, 33])
@pytest.mark.parametrize("window", [1, 2, 3, 8, 16, 50])
def test_sliding_window_equals_full_attention_with_the_mask(T, window, dtype):
    q, k, v = _qkv((2, 3, T, 5), d_v=4, dtype=dtype, seed=T * 100 + window)
    mask = masks.sliding_window_mask(T, window)  # (T, T), True = attend
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # torch's own, O(T^2)
    got = V.sliding_window_attention(q, k, v, window)
    assert got.shape == (2, 3, T, 4) and got.dtype == dtype
    _close(got, want, dtype)
    out_ref, w_ref = V.sliding_window_reference(q, k, v, window)
    _close(got, out_ref, dtype)
    assert torch.all(w_ref[..., ~mask] == 0)  # nothing outside the window


@pytest.mark.parametrize("T, window", [(1, 1), (9, 1), (9, 2), (16, 4), (17, 5), (6, 20)])
def test_bidirectional_sliding_window_equals_the_symmetric_band(T, window):
    q, k, v = _qkv((2, T, 3), seed=T + window)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    band = (i - j).abs() < window
    assert torch.equal(V.local_mask(T, window, is_causal=False), band)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=band)
    _close(V.sliding_window_attention(q, k, v, window, is_causal=False), want)
    _close(V.sliding_window_reference(q, k, v, window, is_causal=False)[0], want)


def test_sliding_window_as_wide_as_the_sequence_is_causal_attention():
    q, k, v = _qkv((1, 2, 12, 4))
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    _close(V.sliding_window_attention(q, k, v, 12), want)
    _close(V.sliding_window_attention(q, k, v, 100), want)
    _close(V.sliding_window_attention(q, k, v, 12, is_causal=False),
           F.scaled_dot_product_attention(q, k, v))


def test_sliding_window_scale_and_unbatched_inputs():
    q, k, v = _qkv((10, 4))  # no leading dimensions at all
    mask = masks.sliding_window_mask(10, 3)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
    _close(V.sliding_window_attention(q, k, v, 3, scale=0.3), want)


def test_sliding_window_gradients_match_the_reference():
    q, k, v = (t.requires_grad_() for t in _qkv((1, 2, 11, 3)))
    V.sliding_window_attention(q, k, v, 4).square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    V.sliding_window_reference(q, k, v, 4)[0].square().sum().backward()
    for g, t in zip(grads, (q, k, v)):
        _close(g, t.grad)


# ---------------------------------------------------------------------------------------------
# Linear attention
# ---------------------------------------------------------------------------------------------


def _kernel_attention_by_loops(q, k, v, causal):
    """The kernelised attention, one query and one key at a time (2-D inputs)."""
    phi = V.elu_feature_map
    T, S = q.shape[0], k.shape[0]
    out = torch.zeros(T, v.shape[1], dtype=q.dtype)
    for i in range(T):
        sims = [float(phi(q[i]) @ phi(k[j])) for j in range(S) if not causal or j <= i]
        total = sum(sims)
        for j, s in enumerate(sims):
            out[i] += s / total * v[j]
    return out


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_reference_is_the_kernelised_attention(causal):
    q, k, v = _qkv((6, 3), d_v=2)
    want = _kernel_attention_by_loops(q, k, v, causal)
    out, weights = V.linear_attention_reference(q, k, v, is_causal=causal)
    _close(out, want)
    assert torch.all(weights >= 0)
    _close(weights.sum(-1), torch.ones(6, dtype=q.dtype))
    if causal:
        assert torch.all(weights.triu(diagonal=1) == 0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("T", [1, 5, 16, 37])
@pytest.mark.parametrize("chunk_size", [1, 4, 16, 64])
@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_equals_the_quadratic_computation(T, chunk_size, causal, dtype):
    q, k, v = _qkv((2, 3, T, 4), d_v=5, dtype=dtype, seed=T + chunk_size)
    got = V.linear_attention(q, k, v, is_causal=causal, chunk_size=chunk_size)
    want, _ = V.linear_attention_reference(q, k, v, is_causal=causal)
    assert got.shape == (2, 3, T, 5) and got.dtype == dtype
    _close(got, want, dtype)


def test_linear_attention_cross_lengths_and_a_custom_feature_map():
    q, k, v = _qkv((2, 4, 3), S=9, d_v=2)  # T = 4 queries, S = 9 keys
    relu1 = lambda x: torch.relu(x) + 1e-3  # noqa: E731
    got = V.linear_attention(q, k, v, feature_map=relu1)
    w = relu1(q) @ relu1(k).transpose(-1, -2)
    _close(got, (w / w.sum(-1, keepdim=True)) @ v)
    _close(V.linear_attention_reference(q, k, v, feature_map=relu1)[0], got)


def test_linear_attention_is_not_softmax_attention():
    """The kernel is a different attention, not a rounding of softmax: the outputs differ."""
    q, k, v = _qkv((1, 2, 32, 8))
    diff = (V.linear_attention(q, k, v) - F.scaled_dot_product_attention(q, k, v)).abs().max()
    assert diff > 1e-2


def test_elu_feature_map_is_positive_and_continuous():
    x = torch.linspace(-30, 30, 601, dtype=torch.float64)
    y = V.elu_feature_map(x)
    assert torch.all(y > 0)
    _close(y, torch.where(x > 0, x + 1, torch.exp(x)))


# ---------------------------------------------------------------------------------------------
# Causality: the future-token test
# ---------------------------------------------------------------------------------------------

CAUSAL_VARIANTS = {
    "sliding window 3": lambda q, k, v: V.sliding_window_attention(q, k, v, 3),
    "sliding window 8": lambda q, k, v: V.sliding_window_attention(q, k, v, 8),
    "linear, chunk 4": lambda q, k, v: V.linear_attention(q, k, v, is_causal=True, chunk_size=4),
    "linear, chunk 64": lambda q, k, v: V.linear_attention(q, k, v, is_causal=True),
}


@pytest.mark.parametrize("name", sorted(CAUSAL_VARIANTS))
def test_causal_variants_pass_the_future_token_test(name):
    fn = CAUSAL_VARIANTS[name]
    q, k, v = _qkv((2, 2, 13, 4))
    base = fn(q, k, v)
    g = torch.Generator().manual_seed(1)
    for t in range(13):
        q2, k2, v2 = (x.clone() for x in (q, k, v))
        for x in (q2, k2, v2):
            x[..., t + 1 :, :] = 5 * torch.randn(x[..., t + 1 :, :].shape, generator=g, dtype=x.dtype)
        assert torch.equal(fn(q2, k2, v2)[..., : t + 1, :], base[..., : t + 1, :]), (name, t)


@pytest.mark.parametrize("fn", [
    lambda q, k, v: V.sliding_window_attention(q, k, v, 3, is_causal=False),
    lambda q, k, v: V.linear_attention(q, k, v),
])
def test_non_causal_variants_fail_the_future_token_test(fn):
    q, k, v = _qkv((1, 1, 8, 4))
    k2, v2 = k.clone(), v.clone()
    k2[..., 4:, :] += 1.0
    v2[..., 4:, :] += 1.0
    assert (fn(q, k2, v2)[..., :4, :] - fn(q, k, v)[..., :4, :]).abs().max() > 1e-6


# ---------------------------------------------------------------------------------------------
# The efficient variants never build a (T, T) tensor
# ---------------------------------------------------------------------------------------------


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("name, fn", [
    ("sliding window 16", lambda q, k, v: V.sliding_window_attention(q, k, v, 16)),
    ("bidirectional window 16", lambda q, k, v: V.sliding_window_attention(q, k, v, 16, is_causal=False)),
    ("linear", lambda q, k, v: V.linear_attention(q, k, v)),
    ("causal linear, chunk 16", lambda q, k, v: V.linear_attention(q, k, v, is_causal=True, chunk_size=16)),
])
def test_efficient_variants_use_memory_linear_in_T(name, fn):
    T, d = 1024, 4
    q, k, v = _qkv((T, d), dtype=torch.float32)
    with _LargestTensor() as spy:
        fn(q, k, v)
    assert spy.largest <= 4 * 16 * T, f"{name}: a tensor of {spy.largest} elements (T^2 = {T * T})"
    with _LargestTensor() as spy:
        V.sliding_window_reference(q, k, v, 16)
    assert spy.largest >= T * T  # the reference does build the full matrix


# ---------------------------------------------------------------------------------------------
# Structured self-attention and its penalty
# ---------------------------------------------------------------------------------------------


def test_penalty_is_zero_for_orthogonal_one_hot_hops():
    A = torch.zeros(3, 6, dtype=torch.float64)
    A[0, 4] = A[1, 0] = A[2, 2] = 1.0  # three hops, each on its own token
    assert V.penalty(A).item() == 0.0


@pytest.mark.parametrize("A, want", [
    (torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), 2.0),  # two hops on one token: 1 + 1
    (torch.full((2, 4), 0.25), 2 * (0.25 - 1) ** 2 + 2 * 0.25**2),  # two uniform hops
    (torch.tensor([[0.5, 0.5, 0.0]]), 0.25),  # one hop split over two tokens: (0.5 - 1)^2
])
def test_penalty_is_positive_otherwise(A, want):
    assert V.penalty(A).item() == pytest.approx(want)


def test_penalty_matches_the_formula_and_is_batched():
    A = torch.softmax(torch.randn(5, 4, 7, generator=torch.Generator().manual_seed(3)), dim=-1)
    got = V.penalty(A)
    assert got.shape == (5,)
    for b in range(5):
        want = torch.linalg.matrix_norm(A[b] @ A[b].T - torch.eye(4)) ** 2
        torch.testing.assert_close(got[b], want)
    assert torch.all(got > 0)


def test_structured_self_attention_is_the_papers_formula():
    torch.manual_seed(0)
    layer = V.StructuredSelfAttention(d_in=6, d_a=5, r=3).double()
    H = torch.randn(2, 9, 6, dtype=torch.float64)  # (B, T, d_in)
    M, A = layer(H)
    assert M.shape == (2, 3, 6) and A.shape == (2, 3, 9)
    W_s1, W_s2 = layer.W_s1.weight, layer.W_s2.weight  # (d_a, d_in), (r, d_a) as in the paper
    assert W_s1.shape == (5, 6) and W_s2.shape == (3, 5)
    for b in range(2):
        A_b = torch.softmax(W_s2 @ torch.tanh(W_s1 @ H[b].T), dim=-1)  # (r, T)
        _close(A[b], A_b)
        _close(M[b], A_b @ H[b])
    _close(A.sum(-1), torch.ones(2, 3, dtype=torch.float64))


def test_structured_self_attention_ignores_padding():
    torch.manual_seed(0)
    layer = V.StructuredSelfAttention(4, 8, 2)
    H = torch.randn(2, 6, 4)
    pad = masks.padding_mask([6, 4], 6)  # (B, T), True = real token
    M, A = layer(H, padding_mask=pad)
    assert torch.all(A[1, :, 4:] == 0)
    H2 = H.clone()
    H2[1, 4:] = 100.0  # change the padding: nothing moves
    M2, A2 = layer(H2, padding_mask=pad)
    torch.testing.assert_close(M2, M)
    M_short, _ = layer(H[1:, :4])
    torch.testing.assert_close(M[1:], M_short)


def test_the_penalty_trains_the_hops_apart():
    """Gradient descent on the penalty alone spreads collapsed hops onto different tokens."""
    torch.manual_seed(0)
    layer = V.StructuredSelfAttention(5, 8, 3)
    H = torch.randn(1, 7, 5)
    before = V.penalty(layer(H)[1]).item()
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    for _ in range(300):
        loss = V.penalty(layer(H)[1]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    A = layer(H)[1][0]
    assert V.penalty(A).item() < 0.1 < before
    assert len(set(A.argmax(-1).tolist())) == 3  # three hops, three different tokens


# ---------------------------------------------------------------------------------------------
# Bad input: the message names the argument and the shapes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, exc, words", [
    (lambda q, k, v: V.sliding_window_attention(q, k, v, 0), ValueError,
     ["window must be an int >= 1", "got 0"]),
    (lambda q, k, v: V.sliding_window_attention(q, k, v, 2.5), TypeError, ["window", "2.5"]),
    (lambda q, k, v: V.sliding_window_attention(q, k[..., :3, :], v[..., :3, :], 2), ValueError,
     ["T == S", "(2, 5, 4)", "(2, 3, 4)"]),
    (lambda q, k, v: V.sliding_window_attention(q, k[..., :3], v, 2), ValueError,
     ["d_k", "(2, 5, 4)", "(2, 5, 3)"]),
    (lambda q, k, v: V.sliding_window_attention(q, k, v[..., :4, :], 2), ValueError,
     ["S", "(2, 4, 4)"]),
    (lambda q, k, v: V.sliding_window_attention(q, k, v.float(), 2), TypeError,
     ["must share one dtype", "v torch.float32"]),
    (lambda q, k, v: V.sliding_window_attention(q.numpy(), k, v, 2), TypeError,
     ["q", "torch.Tensor"]),
    (lambda q, k, v: V.sliding_window_reference(q, k, v, 0), ValueError,
     ["window must be an int >= 1", "got 0"]),
    (lambda q, k, v: V.linear_attention(q, k, v, chunk_size=0), ValueError,
     ["chunk_size must be an int >= 1", "got 0"]),
    (lambda q, k, v: V.linear_attention(q, k[..., :3, :], v[..., :3, :], is_causal=True), ValueError,
     ["causal", "(2, 5, 4)", "(2, 3, 4)"]),
    (lambda q, k, v: V.linear_attention_reference(q, k[..., :3, :], v[..., :3, :], is_causal=True),
     ValueError, ["T == S"]),
    (lambda q, k, v: V.linear_attention(q, k, v[..., :4, :]), ValueError, ["(2, 4, 4)"]),
    (lambda q, k, v: V.linear_attention(q[..., :0, :], k, v), ValueError,
     ["q has an empty query sequence T", "(2, 0, 4)"]),
    (lambda q, k, v: V.linear_attention(q[None], k, v), ValueError, ["leading", "(1, 2, 5, 4)"]),
])
def test_bad_input_is_named(call, exc, words):
    q, k, v = _qkv((2, 5, 4))
    with pytest.raises(exc) as err:
        call(q, k, v)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_bad_structured_input_is_named():
    with pytest.raises(ValueError, match="r must be an int >= 1, got 0"):
        V.StructuredSelfAttention(4, 3, 0)
    layer = V.StructuredSelfAttention(4, 3, 2)
    with pytest.raises(ValueError, match=r"H must have shape \(..., T, d_in\) = \(..., T, 4\), got "
                                         r"shape \(2, 5, 3\)"):
        layer(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="empty sequence"):
        layer(torch.randn(2, 0, 4))
    with pytest.raises(TypeError, match="H must be a torch.Tensor"):
        layer(np.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match=r"padding_mask must have shape \(..., T\) = \(2, 5\), got "
                                         r"shape \(2, 4\)"):
        layer(torch.randn(2, 5, 4), padding_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="padding_mask must have dtype torch.bool"):
        layer(torch.randn(2, 5, 4), padding_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"A must have shape \(..., r, T\), got shape \(5\)"):
        V.penalty(torch.ones(5))
    with pytest.raises(TypeError, match="A must be a torch.Tensor"):
        V.penalty(np.eye(3))
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        V.local_mask(4, 0)


def test_module_docstring_costs_are_what_the_code_does():
    """A guard for the chapter's cost table: the window variant does 2 * w * T scores per head."""
    T, w = 64, 8
    q, k, v = _qkv((T, 2), dtype=torch.float32)
    seen = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.__name__.startswith(("bmm", "mm", "matmul")) and out.ndim >= 2:
                seen.append(out.numel())
            return out

    with Spy():
        V.sliding_window_attention(q, k, v, w)
    assert max(seen) == 2 * w * T == math.prod((T // w, w, 2 * w))
