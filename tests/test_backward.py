"""Attention's backward pass: the NumPy gradients (``selfattention.backward``) and the recomputing
tiled backward (``tiled.tiled_attention``), against torch.autograd, SDPA's gradients and finite
differences (``torch.autograd.gradcheck``), on odd shapes: T != S, causal (top-left), masks with
fully masked rows, B * H > 1, broadcast leading dimensions.

Tolerances (see _helpers): float64 NumPy vs autograd 1e-12; tiled vs SDPA 1e-10 (float64) and
1e-5 (float32). The gradients are O(1) sums of O(S) products of O(1) numbers, so float64 rounding
leaves ~1e-15; a wrong scale, a transposed P or a misaligned mask moves them by ~1e-1.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import one_thread  # noqa: F401 (autouse: one thread per module)
from test_tiled import _peak_cpu_bytes

from selfattention import backward as bw
from selfattention import backward_memory, vectorized
from selfattention.multihead import scaled_dot_product_attention
from selfattention.tiled import tiled_attention

F = torch.nn.functional


def _rand(shape, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _mask_with_empty_rows(lead, T, S, seed):
    """A random bool mask (True = attend) with rows 1 and T - 1 fully masked."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(*lead, T, S, generator=g) > 0.4
    mask[..., 1, :] = False
    mask[..., T - 1, :] = False
    return mask


def _autograd_grads(q, k, v, dO, **kw):
    """Reference: torch.autograd through torch's own SDPA, float64."""
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    return torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, **kw), (q, k, v), dO)


CASES = {
    # name: (lead of q, lead of k and v, T, S, causal, mask kind)
    "T=S": ((2, 3), (2, 3), 6, 6, False, None),
    "T<S": ((2, 3), (2, 3), 4, 9, False, None),
    "T>S": ((1, 4), (1, 4), 9, 5, False, None),
    "causal T=S": ((2, 2), (2, 2), 7, 7, True, None),
    "causal T<S": ((2, 2), (2, 2), 5, 8, True, None),
    "causal T>S": ((3,), (3,), 8, 5, True, None),
    "bool mask, fully masked rows": ((2, 3), (2, 3), 6, 7, False, "bool"),
    "float mask": ((2, 2), (2, 2), 5, 6, False, "float"),
    "K, V broadcast over batch": ((2, 3), (1, 3), 5, 4, False, None),
    "no leading dims": ((), (), 6, 3, False, None),
}


def _case(name, seed=0):
    lead_q, lead_kv, T, S, causal, mask_kind = CASES[name]
    q, k, v = (
        _rand((*lead_q, T, 4), seed),
        _rand((*lead_kv, S, 4), seed + 1),
        _rand((*lead_kv, S, 3), seed + 2),
    )
    dO = _rand((*lead_q, T, 3), seed + 3)
    mask = None
    if mask_kind == "bool":
        mask = _mask_with_empty_rows(lead_q, T, S, seed)
    elif mask_kind == "float":
        mask = _rand((T, S), seed + 4)
    return q, k, v, dO, mask, causal


@pytest.mark.parametrize("name", list(CASES))
def test_numpy_backward_equals_autograd(name):
    q, k, v, dO, mask, causal = _case(name)
    want = _autograd_grads(q, k, v, dO, attn_mask=mask, is_causal=causal)
    got = bw.attention_backward(
        q.numpy(),
        k.numpy(),
        v.numpy(),
        dO.numpy(),
        mask=None if mask is None else mask.numpy(),
        causal=causal,
    )
    for label, g, w in zip("QKV", got, want):
        assert g.shape == tuple(w.shape), label
        np.testing.assert_allclose(g, w.numpy(), atol=1e-12, rtol=1e-12, err_msg=f"d{label}, {name}")


@pytest.mark.parametrize("name", list(CASES))
def test_recompute_from_logsumexp_equals_storing_P(name):
    q, k, v, dO, mask, causal = _case(name, seed=10)
    Q, K, V, dO = q.numpy(), k.numpy(), v.numpy(), dO.numpy()
    mask = None if mask is None else mask.numpy()
    out, L = bw.attention_forward_lse(Q, K, V, mask=mask, causal=causal)
    np.testing.assert_allclose(out, vectorized.attention(Q, K, V, mask=mask, causal=causal)[0], atol=1e-12)
    # L against torch.logsumexp of the masked scores, built here without the library
    s = torch.from_numpy(Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1]))  # (..., T, S)
    if mask is not None and mask.dtype == bool:
        s = s.masked_fill(~torch.from_numpy(mask), float("-inf"))  # broadcasts over (..., T, S)
    elif mask is not None:
        s = s + torch.from_numpy(mask)  # a floating mask is added
    if causal:
        s = s.masked_fill(~torch.ones(s.shape[-2:], dtype=torch.bool).tril(), float("-inf"))
    np.testing.assert_allclose(L, torch.logsumexp(s, dim=-1).numpy(), atol=1e-12, rtol=1e-12)
    got = bw.attention_backward_from_lse(Q, K, V, out, dO, L, mask=mask, causal=causal)
    want = bw.attention_backward(Q, K, V, dO, mask=mask, causal=causal)
    for label, g, w in zip("QKV", got, want):
        np.testing.assert_allclose(g, w, atol=1e-12, rtol=1e-12, err_msg=f"d{label}, {name}")


def test_V_alone_with_extra_leading_dims_broadcasts():
    # Q (T, d) and K (S, d) with V (3, S, d_v): P has no batch dimension, out and dO have one.
    q, k, v, dO = _rand((5, 4), 20), _rand((6, 4), 21), _rand((3, 6, 2), 22), _rand((3, 5, 2), 23)
    want = _autograd_grads(q, k, v, dO, is_causal=True)
    Q, K, V, dO = q.numpy(), k.numpy(), v.numpy(), dO.numpy()
    out, L = bw.attention_forward_lse(Q, K, V, causal=True)
    assert L.shape == (3, 5)
    for got in (
        bw.attention_backward(Q, K, V, dO, causal=True),
        bw.attention_backward_from_lse(Q, K, V, out, dO, L, causal=True),
    ):
        for label, g, w in zip("QKV", got, want):
            assert g.shape == tuple(w.shape), label
            np.testing.assert_allclose(g, w.numpy(), atol=1e-12, rtol=1e-12, err_msg=f"d{label}")


def test_float32_in_float32_out():
    # The default scale 1/sqrt(d_k) must not promote float32 gradients to float64.
    Q, K, V = (np.ones((5, 4), np.float32), np.ones((6, 4), np.float32), np.ones((6, 3), np.float32))
    dO = np.ones((5, 3), np.float32)
    assert [g.dtype for g in bw.attention_backward(Q, K, V, dO)] == [np.float32] * 3
    out, L = bw.attention_forward_lse(Q, K, V, causal=True)
    assert (out.dtype, L.dtype) == (np.float32, np.float32)
    got = bw.attention_backward_from_lse(Q, K, V, out, dO, L, causal=True)
    assert [g.dtype for g in got] == [np.float32] * 3


def test_D_equals_rowsum_dP_P():
    rng = np.random.default_rng(0)
    Q, K, V = rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 7, 4)), rng.normal(size=(2, 7, 3))
    dO = rng.normal(size=(2, 5, 3))
    out, P = vectorized.attention(Q, K, V)
    dP = dO @ np.swapaxes(V, -1, -2)
    np.testing.assert_allclose((dO * out).sum(-1), (dP * P).sum(-1), atol=1e-12)


def test_fully_masked_rows_get_zero_gradients_not_nan():
    q, k, v, dO, mask, _ = _case("bool mask, fully masked rows")
    dQ, dK, dV = bw.attention_backward(q.numpy(), k.numpy(), v.numpy(), dO.numpy(), mask=mask.numpy())
    assert np.isfinite(dQ).all() and np.isfinite(dK).all() and np.isfinite(dV).all()
    assert np.all(dQ[..., 1, :] == 0) and np.all(dQ[..., -1, :] == 0)
    # Changing dO on a fully masked row changes nothing: it does not reach K or V.
    dO2 = dO.clone()
    dO2[..., 1, :] += 5.0
    _, dK2, dV2 = bw.attention_backward(q.numpy(), k.numpy(), v.numpy(), dO2.numpy(), mask=mask.numpy())
    np.testing.assert_array_equal(dK, dK2)
    np.testing.assert_array_equal(dV, dV2)


def test_softmax_backward_equals_jacobian_and_autograd():
    rng = np.random.default_rng(1)
    S = rng.normal(size=(3, 5))
    dP = rng.normal(size=(3, 5))
    P = vectorized.softmax(S)
    got = bw.softmax_backward(P, dP)
    # The Jacobian diag(p) - p p^T, row by row, is symmetric: dS = J dP.
    jac = [np.diag(p) - np.outer(p, p) for p in P]
    np.testing.assert_allclose(got, np.stack([J @ g for J, g in zip(jac, dP)]), atol=1e-12)
    s = torch.from_numpy(S).requires_grad_()
    (want,) = torch.autograd.grad(torch.softmax(s, dim=-1), s, torch.from_numpy(dP))
    np.testing.assert_allclose(got, want.numpy(), atol=1e-12, rtol=1e-12)
    # along another axis
    got0 = bw.softmax_backward(vectorized.softmax(S, axis=0), dP, axis=0)
    (want0,) = torch.autograd.grad(torch.softmax(s, dim=0), s, torch.from_numpy(dP))
    np.testing.assert_allclose(got0, want0.numpy(), atol=1e-12, rtol=1e-12)


class _NumpyAttention(torch.autograd.Function):
    """vectorized.attention's forward with backward.attention_backward's gradients, for gradcheck."""

    @staticmethod
    def forward(ctx, q, k, v, mask, causal):
        ctx.save_for_backward(q, k, v)
        ctx.mask, ctx.causal = mask, causal
        out, _ = vectorized.attention(q.numpy(), k.numpy(), v.numpy(), mask=mask, causal=causal)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, dO):
        q, k, v = ctx.saved_tensors
        grads = bw.attention_backward(
            q.numpy(), k.numpy(), v.numpy(), dO.numpy(), mask=ctx.mask, causal=ctx.causal
        )
        return (*(torch.from_numpy(g) for g in grads), None, None)


@pytest.mark.parametrize(
    "name", ["T<S", "causal T>S", "bool mask, fully masked rows", "K, V broadcast over batch"]
)
def test_numpy_backward_gradcheck(name):
    q, k, v, _, mask, causal = _case(name, seed=20)
    mask = None if mask is None else mask.numpy()
    inputs = tuple(t.requires_grad_() for t in (q, k, v))
    assert torch.autograd.gradcheck(lambda *x: _NumpyAttention.apply(*x, mask, causal), inputs)


# ---------------------------------------------------------------------------------------------
# The tiled backward
# ---------------------------------------------------------------------------------------------


def _tiled_grads(q, k, v, dO, **kw):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    return torch.autograd.grad(tiled_attention(q, k, v, **kw), (q, k, v), dO)


TILED = [n for n in CASES if n not in ("float mask", "K, V broadcast over batch")]


@pytest.mark.parametrize("block_size", [1, 3, 4, 16])
@pytest.mark.parametrize("name", TILED)
def test_tiled_grads_equal_sdpa_float64(name, block_size):
    q, k, v, dO, mask, causal = _case(name, seed=block_size)
    want = _autograd_grads(q, k, v, dO, attn_mask=mask, is_causal=causal)
    got = _tiled_grads(q, k, v, dO, block_size=block_size, is_causal=causal, attn_mask=mask)
    for label, g, w in zip("qkv", got, want):
        assert torch.isfinite(g).all(), label
        torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-10, msg=f"d{label}, {name}, block {block_size}")


@pytest.mark.parametrize("is_causal", [False, True])
def test_tiled_grads_equal_sdpa_float32(is_causal):
    q, k, v = (
        _rand((2, 4, 37, 16), 1, torch.float32),
        _rand((2, 4, 29, 16), 2, torch.float32),
        _rand((2, 4, 29, 8), 3, torch.float32),
    )
    dO = _rand((2, 4, 37, 8), 4, torch.float32)
    want = _autograd_grads(q, k, v, dO, is_causal=is_causal)
    got = _tiled_grads(q, k, v, dO, block_size=8, is_causal=is_causal)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["T>S", "causal T<S", "causal T>S", "bool mask, fully masked rows"])
def test_tiled_gradcheck(name):
    q, k, v, _, mask, causal = _case(name, seed=30)
    inputs = tuple(t.requires_grad_() for t in (q, k, v))
    assert torch.autograd.gradcheck(
        lambda *x: tiled_attention(*x, block_size=3, is_causal=causal, attn_mask=mask), inputs
    )


@pytest.mark.parametrize("backend", ["numpy", "tiled"])
def test_causal_gradients_never_reach_future_keys(backend):
    """Only dO of row i is nonzero: keys and values j > i get zero gradient (top-left causal)."""
    T, S, i = 6, 9, 2
    q, k, v = _rand((T, 4), 0), _rand((S, 4), 1), _rand((S, 3), 2)
    dO = torch.zeros(T, 3, dtype=torch.float64)
    dO[i] = _rand((3,), 3)
    if backend == "numpy":
        _, dK, dV = bw.attention_backward(q.numpy(), k.numpy(), v.numpy(), dO.numpy(), causal=True)
    else:
        _, dK, dV = (g.numpy() for g in _tiled_grads(q, k, v, dO, block_size=2, is_causal=True))
    assert np.all(dK[i + 1 :] == 0) and np.all(dV[i + 1 :] == 0)
    assert np.all(np.abs(dV[: i + 1]).sum(-1) > 0)  # and the visible ones do get a gradient


def test_tiled_forward_without_grad_is_unchanged_and_trace_still_works():
    q, k, v, *_ = _case("causal T<S")
    plain = tiled_attention(q, k, v, block_size=3, is_causal=True)
    trace = []
    qg = q.clone().requires_grad_()
    with_grad = tiled_attention(qg, k, v, block_size=3, is_causal=True, trace=trace)
    assert with_grad.requires_grad and not plain.requires_grad
    torch.testing.assert_close(with_grad.detach(), plain, atol=0, rtol=0)
    assert len(trace) == 3


def test_tiled_backward_saves_no_T_by_S_matrix():
    """What the forward keeps for backward: q, k, v, out and L (T numbers per row), no (T, S) P."""
    T, S, d = 64, 48, 8
    q, k, v = (_rand(s, i).requires_grad_() for i, s in enumerate([(2, T, d), (2, S, d), (2, S, d)]))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        tiled_attention(q, k, v, block_size=16)
    assert sorted(saved) == sorted([(2, T, d), (2, S, d), (2, S, d), (2, T, d), (2, T)]), saved


def test_tiled_backward_extra_memory_grows_linearly():
    """Forward + backward: tiled grows like T, autograd through the course's version like T^2."""
    tiled, course = {}, {}
    for T in (2048, 4096):
        q, k, v = (_rand((1, 1, T, 64), i, torch.float32).requires_grad_() for i in range(3))
        dO = _rand((1, 1, T, 64), 3, torch.float32)

        def step(f, q=q, k=k, v=v, dO=dO):
            return lambda: torch.autograd.grad(f(q, k, v), (q, k, v), dO)

        tiled[T] = _peak_cpu_bytes(step(lambda q, k, v: tiled_attention(q, k, v, block_size=128)))
        course[T] = _peak_cpu_bytes(step(lambda q, k, v: scaled_dot_product_attention(q, k, v)[0]))
        assert course[T] >= T * T * 4  # the probe does see the stored (T, S) weights
        assert tiled[T] < T * T * 4 / 2  # the tiled backward never holds one (not even half)
    assert tiled[4096] / tiled[2048] < 3, tiled  # linear: doubles
    assert course[4096] / course[2048] > 3.5, course  # quadratic: quadruples


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_dO_of_the_wrong_shape_names_both_shapes():
    Q, K, V = np.ones((2, 5, 4)), np.ones((2, 6, 4)), np.ones((2, 6, 3))
    with pytest.raises(
        ValueError, match=r"dO must have the shape of the output .* = \(2, 5, 3\), got shape \(2, 5, 4\)"
    ):
        bw.attention_backward(Q, K, V, np.ones((2, 5, 4)))
    out, L = bw.attention_forward_lse(Q, K, V)
    with pytest.raises(ValueError, match=r"= \(2, 5, 3\), got shape \(5, 3\)"):
        bw.attention_backward_from_lse(Q, K, V, out, np.ones((5, 3)), L)
    with pytest.raises(ValueError, match=r"L must have shape \(\.\.\., T\) = \(2, 5\) .* got shape \(2, 6\)"):
        bw.attention_backward_from_lse(Q, K, V, out, np.ones((2, 5, 3)), np.ones((2, 6)))


def test_out_of_the_wrong_shape_and_a_list_mask_are_named():
    Q, K, V = np.ones((2, 5, 4)), np.ones((2, 6, 4)), np.ones((2, 6, 3))
    out, L = bw.attention_forward_lse(Q, K, V)
    with pytest.raises(
        ValueError, match=r"out must have the forward output's shape .* \(2, 5, 3\) .* got shape \(2, 4, 3\)"
    ):
        bw.attention_backward_from_lse(Q, K, V, out[:, :4], np.ones((2, 4, 3)), L[:, :4])
    with pytest.raises(ValueError, match=r"= \(2, 5, 3\) .* got shape \(2, 5, 2\)"):
        bw.attention_backward_from_lse(Q, K, V, out[..., :2], np.ones((2, 5, 3)), L)
    with pytest.raises(TypeError, match="mask must be a NumPy array, got list"):
        bw.attention_backward_from_lse(Q, K, V, out, np.ones((2, 5, 3)), L, mask=[[True] * 6] * 5)


def test_mask_of_the_wrong_shape_names_both_shapes():
    Q, K, V = np.ones((5, 4)), np.ones((6, 4)), np.ones((6, 3))
    bad = np.ones((6, 5), dtype=bool)
    with pytest.raises(ValueError, match=r"mask must broadcast to .* = \(5, 6\), got shape \(6, 5\)"):
        bw.attention_backward(Q, K, V, np.ones((5, 3)), mask=bad)
    out, L = bw.attention_forward_lse(Q, K, V)
    with pytest.raises(ValueError, match=r"= \(5, 6\), got shape \(6, 5\)"):
        bw.attention_backward_from_lse(Q, K, V, out, np.ones((5, 3)), L, mask=bad)
    t = torch.ones(5, 4)
    with pytest.raises(ValueError, match=r"attn_mask must broadcast to .* = \(5, 6\), got shape \(6, 5\)"):
        tiled_attention(t, torch.ones(6, 4), torch.ones(6, 3), attn_mask=torch.ones(6, 5, dtype=torch.bool))


def test_softmax_backward_bad_input():
    with pytest.raises(
        ValueError, match=r"dP must have the shape of P: P has shape \(2, 3\), dP has shape \(3, 2\)"
    ):
        bw.softmax_backward(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"axis=2 is out of range for P of shape \(2, 3\)"):
        bw.softmax_backward(np.ones((2, 3)), np.ones((2, 3)), axis=2)
    with pytest.raises(TypeError, match="dP must be a NumPy array"):
        bw.softmax_backward(np.ones((2, 3)), torch.ones(2, 3))


def test_tiled_mask_dtype_and_causal_rejected():
    t = torch.ones(3, 4)
    with pytest.raises(TypeError, match="attn_mask must have dtype torch.bool .* got torch.float32"):
        tiled_attention(t, t, t, attn_mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match="attn_mask and is_causal=True cannot be combined"):
        tiled_attention(t, t, t, attn_mask=torch.ones(3, 3, dtype=torch.bool), is_causal=True)


# ---------------------------------------------------------------------------------------------
# backward_memory: what the forward saves, and the measured peak
# ---------------------------------------------------------------------------------------------


def test_saved_bytes_course_keeps_T_by_S_tiled_keeps_out_and_L():
    T, d = 64, 8
    q, k, v = (_rand((1, 2, T, d), i, torch.float32).requires_grad_() for i in range(3))
    assert backward_memory.saved_bytes("tiled", q, k, v, block_size=16) == 2 * (T * d + T) * 4  # out, L
    assert backward_memory.saved_bytes("course", q, k, v) >= 2 * 2 * T * T * 4  # scores and weights
    with pytest.raises(ValueError, match=r"impl must be one of \['course', 'sdpa', 'tiled'\], got 'naive'"):
        backward_memory.forward_fn("naive")


def test_measure_rows_and_table():
    rows = backward_memory.measure([32, 64], impls=("course", "tiled"), repeats=1, d=8)
    assert [(r["impl"], r["T"]) for r in rows] == [
        ("course", 32),
        ("tiled", 32),
        ("course", 64),
        ("tiled", 64),
    ]
    assert all(r["peak_bytes"] is None or r["peak_bytes"] >= 0 for r in rows)
    text = backward_memory.table(rows)
    names, head, rule, *body, note = text.split("\n")
    assert names.split() == ["|", "course", "|", "tiled"] and head.split().count("saved") == 2
    assert len(body) == 2 and body[0].split()[0] == "32" and "MiB" in note


def _rows(points):
    return [{"impl": impl, "T": T, "peak_bytes": b} for impl, T, b in points]


def test_slopes_of_quadratic_and_linear_memory():
    rows = _rows(
        [("course", T, 3 * T**2) for T in (512, 1024, 2048)]
        + [("tiled", T, 7 * T) for T in (512, 1024, 2048)]
        + [("sdpa", 512, 10), ("sdpa", 1024, None)]
    )  # one measured point: no slope
    got = backward_memory.slopes(rows)
    assert got.keys() == {"course", "tiled"}
    assert got["course"] == pytest.approx(2.0) and got["tiled"] == pytest.approx(1.0)


def test_plot_draws_each_implementation_and_the_two_guides():
    import matplotlib.pyplot as plt

    rows = _rows(
        [(impl, T, T**p) for impl, p in (("course", 2), ("tiled", 1), ("sdpa", 1)) for T in (512, 2048)]
    )
    fig = backward_memory.plot(rows)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == [
        *(backward_memory.IMPLEMENTATIONS[i] for i in ("course", "tiled", "sdpa")),
        "slope 2 (T²)",
        "slope 1 (T)",
    ]
    guide2 = ax.get_lines()[3].get_ydata()  # from course's first point, 4**2 times higher at 4x the T
    assert guide2[1] / guide2[0] == pytest.approx(16.0)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and ax.get_xlabel() and ax.get_title()
    assert len(backward_memory.plot(rows, guides=False).axes[0].get_lines()) == 3
    plt.close("all")


@pytest.mark.parametrize("mask_shape", [(7, 6), (1, 3, 7, 6), (2, 1, 7, 6)])
def test_broadcast_masks_numpy_and_tiled(mask_shape):
    """A mask broadcast over batch or heads gives SDPA's gradients in both backward passes."""
    q, k, v, dO = (
        _rand((2, 3, 7, 4), 0),
        _rand((2, 3, 6, 4), 1),
        _rand((2, 3, 6, 3), 2),
        _rand((2, 3, 7, 3), 3),
    )
    mask = torch.rand(*mask_shape, generator=torch.Generator().manual_seed(5)) > 0.3
    mask[..., 0, :] = False  # and a fully masked row
    want = _autograd_grads(q, k, v, dO, attn_mask=mask)
    got_np = bw.attention_backward(q.numpy(), k.numpy(), v.numpy(), dO.numpy(), mask=mask.numpy())
    got_tiled = _tiled_grads(q, k, v, dO, block_size=4, attn_mask=mask)
    for g_np, g_t, w in zip(got_np, got_tiled, want):
        np.testing.assert_allclose(g_np, w.numpy(), atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(g_t, w, atol=1e-10, rtol=1e-10)
    # The forward too: SDPA's output, and zeros (not an arbitrary value) on the fully masked row,
    # which the backward alone would not reveal (it gives that row P = 0 whatever was returned).
    out = tiled_attention(q, k, v, block_size=4, attn_mask=mask)
    want_out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, want_out, atol=1e-12, rtol=1e-12)
    assert torch.equal(out[..., 0, :], torch.zeros_like(out[..., 0, :]))
