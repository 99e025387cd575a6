"""FlashAttention-2 in Triton (``selfattention.flash``) against SDPA and autograd.

Without an NVIDIA GPU the kernels run in Triton's interpreter on CPU tensors, in float32, so the
tolerance is the issue's 5e-4 (the kernels reach about 1e-6). Shapes are chosen to hit every
edge: T and S not multiples of a block, T != S both ways (with T == S, top-left and bottom-right
causal alignment agree and a wrongly aligned kernel would pass), causal, every d, B * H > 1, and
blocks of different sizes for queries and keys.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

try:
    from selfattention import flash, triton_mode
    from selfattention.flash import flash_attention
except ImportError as err:  # pragma: no cover - macOS / Windows: no triton
    pytest.skip(f"selfattention.flash is unavailable: {err}", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
TOL = 5e-4
DEVICE = "cpu" if flash.INTERPRETED else "cuda"

# (B, H, T, S, d, is_causal, block_m, block_n)
SHAPES = [
    (1, 2, 100, 77, 32, False, None, None),  # ragged T and S, T > S
    (1, 2, 70, 130, 64, True, 32, 16),  # causal, T < S, BLOCK_M != BLOCK_N
    (1, 2, 130, 50, 128, True, 64, 32),  # causal, T > S: late rows see every key
    (2, 1, 33, 33, 16, True, 16, 16),  # causal T == S, one row past a block edge
    (1, 1, 1, 1, 16, False, None, None),  # one query, one key
    (1, 1, 1, 7, 32, True, None, None),  # one query, causal: sees key 0 only
    (1, 2, 64, 128, 64, False, 64, 64),  # exact multiples: the unmasked loop only
]
IDS = [f"B{b}H{h}T{t}S{s}d{d}{'c' if c else ''}-{bm}x{bn}" for b, h, t, s, d, c, bm, bn in SHAPES]


def _qkv(B, H, T, S, d, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, n, d, generator=g) for n in (T, S, S))
    return [x.to(DEVICE).requires_grad_(requires_grad) for x in (q, k, v)]


def _top_left_causal(T, S):
    return torch.ones(T, S, dtype=torch.bool, device=DEVICE).tril()


@pytest.mark.parametrize("B, H, T, S, d, is_causal, bm, bn", SHAPES, ids=IDS)
def test_forward_and_gradients_match_sdpa(B, H, T, S, d, is_causal, bm, bn):
    q, k, v = _qkv(B, H, T, S, d, requires_grad=True)
    out, lse = flash_attention(q, k, v, is_causal=is_causal, return_lse=True, block_m=bm, block_n=bn)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    assert out.shape == (B, H, T, d) and out.dtype == q.dtype
    torch.testing.assert_close(out, ref, atol=TOL, rtol=0)

    scores = q.detach() @ k.detach().transpose(-2, -1) / d**0.5
    if is_causal:
        scores = scores.masked_fill(~_top_left_causal(T, S), float("-inf"))
    assert lse.shape == (B, H, T) and lse.dtype == torch.float32
    torch.testing.assert_close(lse, torch.logsumexp(scores, dim=-1), atol=TOL, rtol=0)

    do = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    grads = torch.autograd.grad(out, (q, k, v), do)
    expected = torch.autograd.grad(ref, (q, k, v), do)
    for name, g, e in zip(("dq", "dk", "dv"), grads, expected):
        torch.testing.assert_close(g, e, atol=TOL, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("d", flash.HEAD_DIMS)
def test_every_head_dim_with_the_default_blocks(d):
    q, k, v = _qkv(2, 2, 45, 70, d, seed=d)
    torch.testing.assert_close(
        flash_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=TOL, rtol=0
    )


def test_scale_and_non_contiguous_inputs():
    # (B, T, H, d) transposed to (B, H, T, d): strided views, as a model's head split makes them
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, n, 3, 32, generator=g).to(DEVICE).transpose(1, 2) for n in (40, 50, 50))
    assert not q.is_contiguous()
    out = flash_attention(q, k, v, is_causal=True, scale=0.3)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)
    torch.testing.assert_close(out, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("T, S", [(50, 50), (20, 45), (45, 20)])
def test_future_keys_do_not_change_earlier_outputs(T, S):
    """Under top-left causal masking query i sees keys j <= i: change keys from `cut` on."""
    q, k, v = _qkv(1, 2, T, S, 32, seed=5)
    cut = min(T, S) * 3 // 5
    k2, v2 = k.clone(), v.clone()
    k2[..., cut:, :] += 10.0
    v2[..., cut:, :] -= 10.0
    a = flash_attention(q, k, v, is_causal=True, block_m=16, block_n=16)
    b = flash_attention(q, k2, v2, is_causal=True, block_m=16, block_n=16)
    assert torch.equal(a[..., :cut, :], b[..., :cut, :])
    assert not torch.allclose(a[..., cut:, :], b[..., cut:, :])  # later rows do see them


def test_gradients_of_future_keys_are_zero_for_past_queries():
    q, k, v = _qkv(1, 1, 30, 30, 16, seed=6, requires_grad=True)
    out = flash_attention(q, k, v, is_causal=True, block_m=16, block_n=16)
    dk, dv = torch.autograd.grad(out[..., :10, :].sum(), (k, v))
    assert torch.count_nonzero(dk[..., 10:, :]) == 0 and torch.count_nonzero(dv[..., 10:, :]) == 0
    assert torch.count_nonzero(dv[..., :10, :]) > 0


# ---------------------------------------------------------------------------------------------
# Bad input: errors that name what they got and what was expected
# ---------------------------------------------------------------------------------------------


def test_wrong_rank():
    q = torch.randn(2, 10, 16)
    with pytest.raises(ValueError, match=r"q must have shape \(B, H, T, d\).*got shape \(2, 10, 16\)"):
        flash_attention(q, q, q)


def test_unsupported_head_dim():
    q = torch.randn(1, 1, 8, 48)
    with pytest.raises(ValueError, match=r"head dimension d of q \(1, 1, 8, 48\) is 48.*\(16, 32, 64, 128\)"):
        flash_attention(q, q, q)


def test_mixed_dtypes():
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(TypeError, match=r"one dtype, got q torch.float32, k torch.float64"):
        flash_attention(q, q.double(), q)


def test_mismatched_batch_or_heads():
    q, k = torch.randn(2, 4, 8, 16), torch.randn(2, 2, 8, 16)
    with pytest.raises(ValueError, match=r"batch B and heads H.*k \(2, 2, 8, 16\).*\(B, H\) = \(2, 4\)"):
        flash_attention(q, k, k)


def test_mismatched_key_lengths_and_widths():
    q, k = torch.randn(1, 1, 8, 16), torch.randn(1, 1, 9, 16)
    with pytest.raises(ValueError, match=r"same number of keys S: k \(1, 1, 9, 16\), v \(1, 1, 8, 16\)"):
        flash_attention(q, k, q)
    with pytest.raises(ValueError, match=r"same head dimension d"):
        flash_attention(q, torch.randn(1, 1, 8, 32), q)


def test_empty_sequence():
    q = torch.randn(1, 1, 0, 16)
    with pytest.raises(ValueError, match=r"q \(1, 1, 0, 16\) and k \(1, 1, 3, 16\) must be non-empty"):
        flash_attention(q, torch.randn(1, 1, 3, 16), torch.randn(1, 1, 3, 16))


def test_mixed_devices():
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(ValueError, match=r"one device, got q on cpu, k on meta"):
        flash_attention(q, q.to("meta"), q)


def test_not_a_tensor():
    import numpy as np

    with pytest.raises(TypeError, match=r"q must be a torch.Tensor, got ndarray"):
        flash_attention(np.zeros((1, 1, 8, 16)), torch.randn(1, 1, 8, 16), torch.randn(1, 1, 8, 16))


def test_block_size_must_be_a_power_of_two():
    q = torch.randn(1, 1, 8, 16).to(DEVICE)
    with pytest.raises(ValueError, match=r"block_m must be a power of two >= 16 .*, got 24"):
        flash_attention(q, q, q, block_m=24)
    with pytest.raises(ValueError, match=r"block_n must be a power of two >= 16 .*, got 8"):
        flash_attention(q, q, q, block_n=8)


@pytest.mark.skipif(not flash.INTERPRETED, reason="the interpreter's dtype rule (CPU only)")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_refused_on_the_cpu(dtype):
    q = torch.randn(1, 1, 8, 16, dtype=dtype)
    with pytest.raises(TypeError, match=rf"takes float32, got {dtype}.*bfloat16 wrongly"):
        flash_attention(q, q, q)


# ---------------------------------------------------------------------------------------------
# Choosing the interpreter: automatic, with a note; a clear error when it is too late
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not flash.INTERPRETED, reason="checks the CPU interpreter path")
def test_the_interpreter_is_announced_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(triton_mode, "_NOTE_PRINTED", False)
    assert triton_mode.import_triton()[2] is True
    assert capsys.readouterr().out.startswith("Note: no NVIDIA GPU, so Triton kernels run in its interpreter")
    assert os.environ["TRITON_INTERPRET"] == "1"


@pytest.mark.skipif(not flash.INTERPRETED, reason="checks the CPU interpreter path")
def test_triton_imported_too_early_gives_a_clear_error():
    """A fresh process that imports triton first, as torch.compile would."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("TRITON_INTERPRET", None)
    code = "import triton\nimport selfattention.flash"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0
    assert "RuntimeError: triton was imported before selfattention.flash" in r.stderr
    assert "import selfattention.flash first" in r.stderr


def test_no_triton_gives_an_import_error_naming_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # what `import triton` meets without the package
    with pytest.raises(ImportError, match=r"needs the `triton` package.*Linux.*Colab"):
        triton_mode.import_triton()
