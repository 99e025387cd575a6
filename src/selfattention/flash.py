"""Level 5: FlashAttention-2 as Triton kernels, forward and backward (chapter 9).

``flash_attention(q, k, v)`` equals ``torch.nn.functional.scaled_dot_product_attention(q, k, v)``
for q (B, H, T, d), k and v (B, H, S, d), d in {16, 32, 64, 128}, any T, S >= 1, without ever
holding a (T, S) matrix. It is differentiable: its backward runs three Triton kernels that recompute
the attention weights from the stored logsumexp (chapter 8).

Where it runs: on an NVIDIA GPU the kernels are compiled for it and take CUDA tensors (float32,
float16, bfloat16). Without one, importing this module switches Triton to its interpreter, and the
same kernels run on CPU tensors (float32 only: the interpreter computes bfloat16 wrongly, and
float16 on the CPU would only be slower and less exact). Importing it where Triton cannot be
installed (macOS, Windows) raises an ImportError that says what to do.
"""

from __future__ import annotations

import math

import torch

from . import flash_kernels as _k
from ._validate import require_same_dtype, require_tensor, shape_str

INTERPRETED: bool = _k.INTERPRETED
HEAD_DIMS = (16, 32, 64, 128)

__all__ = ["HEAD_DIMS", "INTERPRETED", "flash_attention"]


def _check_inputs(q, k, v) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        require_tensor(name, x)
        if x.dim() != 4:
            raise ValueError(
                f"{name} must have shape (B, H, {'T' if name == 'q' else 'S'}, d) (4 dimensions), "
                f"got shape {shape_str(x.shape)} ({x.dim()} dimensions)."
            )
    require_same_dtype(("q", "k", "v"), (q, k, v))
    if not (q.device == k.device == v.device):
        raise ValueError(
            f"q, k and v must be on one device, got q on {q.device}, k on {k.device}, v on {v.device}."
        )
    B, H, T, d = q.shape
    if k.shape[:2] != (B, H) or v.shape[:2] != (B, H):
        raise ValueError(
            f"q, k and v must agree on batch B and heads H: q {shape_str(q.shape)}, "
            f"k {shape_str(k.shape)}, v {shape_str(v.shape)} (expected (B, H) = ({B}, {H}) "
            "for all three; repeat k and v for grouped-query attention)."
        )
    if d not in HEAD_DIMS:
        raise ValueError(
            f"the head dimension d of q {shape_str(q.shape)} is {d}; flash_attention supports "
            f"d in {HEAD_DIMS} (tl.arange needs a power of two, a GPU tile at least 16)."
        )
    if k.shape[-1] != d or v.shape[-1] != d:
        raise ValueError(
            f"q, k and v must have the same head dimension d: q {shape_str(q.shape)}, "
            f"k {shape_str(k.shape)}, v {shape_str(v.shape)}."
        )
    if k.shape[2] != v.shape[2]:
        raise ValueError(
            f"k and v must have the same number of keys S: k {shape_str(k.shape)}, v {shape_str(v.shape)}."
        )
    if T == 0 or k.shape[2] == 0 or B * H == 0:
        raise ValueError(
            f"q {shape_str(q.shape)} and k {shape_str(k.shape)} must be non-empty: attention "
            "needs at least one query and one key."
        )
    if INTERPRETED:
        if q.device.type != "cpu":
            raise ValueError(
                f"Triton runs in its interpreter here, which takes CPU tensors; q is on "
                f"{q.device}. Move the tensors to the CPU with .cpu()."
            )
        if q.dtype != torch.float32:
            raise TypeError(
                f"on the CPU (Triton's interpreter) flash_attention takes float32, got {q.dtype}: "
                "the interpreter computes bfloat16 wrongly. Use q.float(), or a GPU for "
                "float16 / bfloat16."
            )
    else:
        if q.device.type != "cuda":
            raise ValueError(
                f"flash_attention runs its Triton kernels on the GPU; q is on {q.device}. "
                "Move the tensors with .cuda()."
            )
        if q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"flash_attention takes float32, float16 or bfloat16, got {q.dtype}.")


def _strides(x: torch.Tensor) -> tuple[int, int, int]:
    """(batch, head, row) strides; the kernels need the last dimension contiguous."""
    return x.stride(0), x.stride(1), x.stride(2)


def _contiguous_last(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _launch_args(dtype: torch.dtype) -> dict:
    # float32 tl.dot defaults to TF32 on a GPU (10-bit mantissa): ask for full precision.
    return {"DOT_PRECISION": "ieee" if dtype == torch.float32 else "tf32"}


def _fixed_blocks(block_m: int | None, block_n: int | None) -> dict:
    """Fixed block sizes for the interpreter (or when asked); {} lets the autotuner choose.

    With fixed sizes the kernels run untuned: an autotuned kernel rejects block sizes given by hand.
    """
    if block_m is None and block_n is None and not INTERPRETED:
        return {}
    return {"BLOCK_M": block_m or _k.INTERPRETER_BLOCK, "BLOCK_N": block_n or _k.INTERPRETER_BLOCK}


def _forward(q, k, v, is_causal, scale, blocks):
    B, H, T, d = q.shape
    S = k.shape[2]
    o = torch.empty_like(q)
    lse = torch.empty((B, H, T), device=q.device, dtype=torch.float32)

    def grid(meta):
        return (math.ceil(T / meta["BLOCK_M"]), B * H)

    fwd_kernel = _k.kernels(tuned=not blocks)[0]
    fwd_kernel[grid](
        q,
        k,
        v,
        o,
        lse,
        *_strides(q),
        *_strides(k),
        *_strides(v),
        *_strides(o),
        H,
        T,
        S,
        scale * _k.LOG2E,
        IS_CAUSAL=is_causal,
        HEAD_DIM=d,
        **_launch_args(q.dtype),
        **blocks,
    )
    return o, lse


def _backward(q, k, v, o, lse, do, is_causal, scale, blocks):
    B, H, T, d = q.shape
    S = k.shape[2]
    do = _contiguous_last(do)
    delta = torch.empty((B, H, T), device=q.device, dtype=torch.float32)
    pre_block = 64
    _k.preprocess_kernel[(math.ceil(T / pre_block), B * H)](
        o, do, delta, *_strides(o), *_strides(do), H, T, HEAD_DIM=d, BLOCK_M=pre_block
    )
    dq = torch.empty((B, H, T, d), device=q.device, dtype=q.dtype)
    dk = torch.empty((B, H, S, d), device=q.device, dtype=k.dtype)
    dv = torch.empty((B, H, S, d), device=q.device, dtype=v.dtype)
    common = (*_strides(q), *_strides(k), *_strides(v), *_strides(do), H, T, S, scale * _k.LOG2E, scale)
    kw = {"IS_CAUSAL": is_causal, "HEAD_DIM": d, **_launch_args(q.dtype), **blocks}
    _, dkdv_kernel, dq_kernel = _k.kernels(tuned=not blocks)
    dkdv_kernel[lambda meta: (math.ceil(S / meta["BLOCK_N"]), B * H)](
        q, k, v, do, lse, delta, dk, dv, *common, **kw
    )
    dq_kernel[lambda meta: (math.ceil(T / meta["BLOCK_M"]), B * H)](
        q, k, v, do, lse, delta, dq, *common, **kw
    )
    return dq, dk, dv


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, is_causal, scale, blocks):
        o, lse = _forward(q, k, v, is_causal, scale, blocks)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.is_causal, ctx.scale, ctx.blocks = is_causal, scale, blocks
        ctx.mark_non_differentiable(lse)
        return o, lse

    @staticmethod
    def backward(ctx, do, _dlse):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = _backward(q, k, v, o, lse, do, ctx.is_causal, ctx.scale, ctx.blocks)
        return dq, dk, dv, None, None, None


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    is_causal: bool = False,
    scale: float | None = None,
    return_lse: bool = False,
    *,
    block_m: int | None = None,
    block_n: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """FlashAttention-2 forward (and, through autograd, backward) in Triton kernels.

    Args:
        q: (B, H, T, d) queries; k, v: (B, H, S, d) keys and values; d in {16, 32, 64, 128};
            T, S >= 1. One dtype for all three: float32, or float16 / bfloat16 on a GPU. On a CPU
            (Triton's interpreter) float32 only.
        is_causal: query i sees keys j <= i (top-left alignment, as torch's ``is_causal``).
        scale: multiplies the scores; default 1 / sqrt(d).
        return_lse: also return the logsumexp of each row of scaled scores, (B, H, T) float32,
            natural log (what the backward uses to recompute the weights).
        block_m, block_n: fix the query / key block sizes (powers of two, >= 16). By default the
            autotuner chooses them on a GPU, and the interpreter uses 64.

    Returns:
        out (B, H, T, d) in q's dtype; with ``return_lse``, ``(out, lse)``.

    Raises:
        TypeError: a non-tensor, mixed dtypes, or a dtype the device cannot run.
        ValueError: not 4-D, B or H mismatched, d unsupported, d or S mismatched, an empty
            sequence, tensors on several devices or on a device Triton cannot use here.
    """
    _check_inputs(q, k, v)
    for name, b in (("block_m", block_m), ("block_n", block_n)):
        # tl.dot needs blocks of at least 16 on a GPU; the interpreter would accept fewer, so a
        # smaller block tried on a laptop would only fail later, when compiled for a GPU.
        if b is not None and (isinstance(b, bool) or b < 16 or b & (b - 1)):
            raise ValueError(f"{name} must be a power of two >= 16 (tl.dot's smallest tile), got {b}.")
    d = q.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    q, k, v = (_contiguous_last(x) for x in (q, k, v))
    out, lse = _FlashAttention.apply(q, k, v, bool(is_causal), scale, _fixed_blocks(block_m, block_n))
    return (out, lse) if return_lse else out
