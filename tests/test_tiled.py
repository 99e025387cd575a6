"""Level 4: tiled online-softmax attention against torch's SDPA, its trace, and its memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import (
    PROPERTY,
    assert_close,
    one_thread,  # noqa: F401 (autouse: one thread per module)
    rand_qkv,
    torch_sdpa,
)
from hypothesis import given
from hypothesis import strategies as st

from selfattention.tiled import tiled_attention

T0 = 20


def _qkv(lead, T, S, d_k=8, d_v=5, dtype=torch.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(a).to(dtype) for a in rand_qkv(rng, lead, T, S, d_k, d_v)]


@pytest.mark.parametrize("block_size", [1, 3, 7, 16, 128, T0 + 9])  # divides T0 or not; > T
@pytest.mark.parametrize("S", [T0, 13, 29])  # S = T, S < T, S > T
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tiled_equals_torch_sdpa(block_size, S, is_causal, dtype):
    q, k, v = _qkv((2, 3), T0, S, dtype=dtype, seed=block_size + S)
    out = tiled_attention(q, k, v, block_size=block_size, is_causal=is_causal)
    assert out.shape == (2, 3, T0, 5) and out.dtype == dtype
    assert_close(out, torch_sdpa(q, k, v, is_causal=is_causal), dtype,
                 f"block {block_size} S {S} causal {is_causal}")


@PROPERTY
@given(lead=st.lists(st.integers(1, 3), max_size=2), T=st.integers(1, 9), S=st.integers(1, 9),
       block=st.integers(1, 10), is_causal=st.booleans(), scale=st.one_of(st.none(), st.floats(0.1, 3)),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**31))
def test_tiled_property(lead, T, S, block, is_causal, scale, dtype, seed):
    q, k, v = _qkv(tuple(lead), T, S, d_k=3, d_v=2, dtype=dtype, seed=seed)
    out = tiled_attention(q, k, v, block_size=block, is_causal=is_causal, scale=scale)
    assert_close(out, torch_sdpa(q, k, v, is_causal=is_causal, scale=scale), dtype)


def test_tiled_T_equals_1():
    q, k, v = _qkv((), 1, 1)
    assert_close(tiled_attention(q, k, v, block_size=4), v, torch.float64)


def test_large_logits_stay_finite():
    q, k, v = _qkv((1,), 6, 6, dtype=torch.float32)
    out = tiled_attention(q * 1e3, k * 1e3, v, block_size=2)
    assert torch.isfinite(out).all()
    assert_close(out, torch_sdpa(q * 1e3, k * 1e3, v), torch.float32)


def test_trace_reports_blocks_and_skips_under_causal():
    q, k, v = _qkv((), 10, 23)
    trace = []
    out = tiled_attention(q, k, v, block_size=4, is_causal=True, trace=trace)
    starts = list(range(0, 23, 4))
    assert [t["keys"] for t in trace] == [(s, min(s + 4, 23)) for s in starts]
    for t in trace:
        s0 = t["keys"][0]
        assert t["skipped"] == (s0 >= 10)  # keys 12.. are after every one of the 10 queries
        assert t["rows"] == ((10, 10) if s0 >= 10 else (s0, 10))  # rows before s0 see nothing
    assert sum(t["skipped"] for t in trace) == 3
    # The running max and normaliser after the last block are those of the full causal softmax.
    scores = (q @ k.T) / 8**0.5
    scores = scores.masked_fill(~torch.ones(10, 23, dtype=torch.bool).tril(), float("-inf"))
    m = scores.amax(-1)
    assert_close(trace[-1]["m"], m, torch.float64)
    assert_close(trace[-1]["l"], (scores - m[:, None]).exp().sum(-1), torch.float64)
    assert_close(out, torch_sdpa(q, k, v, is_causal=True), torch.float64)


def test_trace_non_causal_skips_nothing_and_causal_halves_the_work():
    q, k, v = _qkv((), 64, 64)
    full, causal = [], []
    tiled_attention(q, k, v, block_size=8, trace=full)
    tiled_attention(q, k, v, block_size=8, is_causal=True, trace=causal)
    assert not any(t["skipped"] for t in full) and all(t["rows"] == (0, 64) for t in full)

    def work(trace):
        return sum((t["rows"][1] - t["rows"][0]) * (t["keys"][1] - t["keys"][0]) for t in trace)

    assert work(full) == 64 * 64
    assert work(causal) == sum(64 - s for s in range(0, 64, 8)) * 8  # about half
    assert work(causal) < 0.6 * work(full)


# ------------------------------------------------------------------------- memory
def _peak_cpu_bytes(fn) -> int:
    """Peak of live CPU bytes allocated by torch while ``fn`` runs (deterministic).

    torch's profiler with ``profile_memory=True`` records every CPU allocation and free made by the
    ATen allocator (tracemalloc does not see them, and RSS is noisy). Summing them in time order
    gives the high-water mark of the memory ``fn`` added, whatever the OS or allocator caches.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    results = getattr(getattr(prof, "profiler", None), "kineto_results", None)
    if results is None:  # pragma: no cover - older/newer torch without this profiler attribute
        pytest.skip("this torch's profiler does not expose kineto_results memory events")
    events = results.events()
    mem = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in mem:
        live += nbytes
        peak = max(peak, live)
    return peak


def _naive(q, k, v):
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # the (T, S) matrix
    return torch.softmax(scores, dim=-1) @ v


@pytest.mark.parametrize("is_causal", [False, True])
def test_tiled_extra_memory_grows_linearly(is_causal):
    peaks = {}
    for T in (2048, 4096):
        q, k, v = _qkv((1, 1), T, T, d_k=64, d_v=64, dtype=torch.float32)
        peaks[T] = _peak_cpu_bytes(
            lambda q=q, k=k, v=v: tiled_attention(q, k, v, block_size=128, is_causal=is_causal))
        naive_T = _peak_cpu_bytes(lambda q=q, k=k, v=v: _naive(q, k, v))
        assert naive_T >= T * T * 4  # the probe does see a T x S matrix when one is made
        assert peaks[T] < T * T * 4 / 2  # tiled never holds one (not even half of one)
        if T == 2048:
            naive_2048 = naive_T
    # Linear growth doubles the extra memory from T = 2048 to 4096; quadratic would quadruple it.
    print(f"tiled extra peak {peaks}, naive {naive_2048} -> {naive_T} bytes")
    assert peaks[4096] / peaks[2048] < 3, peaks
    assert naive_T / naive_2048 > 3.5  # the same check fails on the full-matrix version


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_inputs_accumulate_in_float32(dtype):
    # With m, l and acc in the inputs' 16-bit dtype, a sum over 16384 keys lost most of its digits
    # (bfloat16: 0.028 relative error at S = 8192 against SDPA's 0.003). In float32, as
    # FlashAttention keeps them, the error is that of the 16-bit products, close to SDPA's.
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, n, 64, generator=g) for n in (48, 16384, 16384))
    ref = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
    low = [t.to(dtype).requires_grad_() for t in (q, k, v)]
    out = tiled_attention(*low, block_size=512)
    sdpa = torch.nn.functional.scaled_dot_product_attention(*[t.detach() for t in low])
    assert out.dtype == dtype

    def rel(x, want):
        return float((x.detach().double() - want).norm() / want.norm())

    assert rel(out, ref) <= 1.5 * rel(sdpa, ref) + 1e-4
    dO = torch.randn(out.shape, generator=g).to(dtype)
    grads = torch.autograd.grad(out, low, dO)
    exact = [t.double().requires_grad_() for t in (q, k, v)]
    want = torch.autograd.grad(torch.nn.functional.scaled_dot_product_attention(*exact), exact, dO.double())
    half = [t.detach().requires_grad_() for t in low]
    sdpa_grads = torch.autograd.grad(torch.nn.functional.scaled_dot_product_attention(*half), half, dO)
    for label, got, w, s in zip("qkv", grads, want, sdpa_grads):
        assert got.dtype == dtype, label
        assert rel(got, w) <= 1.5 * rel(s, w) + 1e-4, label


def test_second_derivatives_raise_instead_of_being_wrong():
    # The backward treats out and L as constants: differentiating it again would silently give
    # wrong numbers, so the Function is once_differentiable and autograd refuses.
    q, k, v = (torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    (dq,) = torch.autograd.grad(tiled_attention(q, k, v, block_size=2).sum(), q, create_graph=True)
    with pytest.raises(RuntimeError):
        dq.sum().backward()
