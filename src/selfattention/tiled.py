"""Level 4: FlashAttention-style attention with an online softmax over key/value blocks.

The full (T, S) score matrix is never built. Keys and values are read one block of
``block_size`` positions at a time; each query row keeps three running quantities:

* ``m``: the largest score seen so far (for a stable softmax),
* ``l``: the sum of exp(score - m) so far,
* ``acc``: the sum of exp(score - m) * v so far.

When a new block raises the maximum from m to m', the old sums are rescaled by exp(m - m'), so at
the end ``acc / l`` is exactly softmax(scores) @ V (Milakov and Gimelshein 2018; Dao et al. 2022).
Extra memory is O(T * block_size + T * d): linear in T for a fixed block size.

Under a causal mask (top-left, as torch's ``is_causal``), query i sees keys j <= i, so for the key
block starting at s0 the queries before s0 see nothing of it: only rows s0.. take part. That skips
the hidden upper triangle of blocks and halves the work.

The function is differentiable (:class:`TiledAttentionFunction`). Its forward keeps only q, k, v,
the output and the row logsumexp L = m + log(l) (O(T) numbers beyond the inputs and output), not
the (T, S) weights P that autograd would store. Its backward walks the key blocks again, recomputes
each block of P as exp(s - L), and replaces rowsum(dP * P) by D = rowsum(dO * out), which is equal
(Dao 2023), so its extra memory stays O(T * block_size + T * d) too.
"""

from __future__ import annotations

import math

import torch

from ._validate import check_mask_shape, check_qkv_tensors, require_int, require_tensor


def _check_inputs(q, k, v, block_size, is_causal, attn_mask) -> int:
    """Raise a learner-facing error for bad input; return ``block_size`` as a plain int."""
    check_qkv_tensors(q, k, v, same_leading=True)
    block_size = require_int("block_size", block_size)
    if attn_mask is not None:
        require_tensor("attn_mask", attn_mask, floating=False)
        if attn_mask.dtype != torch.bool:
            raise TypeError(f"attn_mask must have dtype torch.bool (True = attend), got {attn_mask.dtype}.")
        check_mask_shape("attn_mask", tuple(attn_mask.shape), (*q.shape[:-1], k.shape[-2]))
        if is_causal:
            raise ValueError(
                "attn_mask and is_causal=True cannot be combined (torch forbids it too): fold the "
                "causal mask into attn_mask with masks.causal_mask(T, S) & attn_mask."
            )
    return block_size


def _block_scores(q3, kb, r0, s0, s1, is_causal, mask3):
    """Scores of rows r0.. against the key block [s0, s1), hidden ones set to -inf: (N, T - r0, Bk).

    ``kb`` is the key block already multiplied by the scale.
    """
    T = q3.shape[1]
    s = torch.bmm(q3[:, r0:], kb.transpose(1, 2))  # (N, T - r0, Bk)
    if is_causal and s0 < T:
        # Only the block's diagonal part needs a mask: row r0 + i sees key s0 + j iff j <= i.
        n_diag = min(s1 - s0, T - r0)
        tri = torch.ones(n_diag, s1 - s0, dtype=torch.bool, device=q3.device).tril()
        s[:, :n_diag].masked_fill_(~tri, float("-inf"))
    if mask3 is not None:
        # (*lead, T, S) broadcast view -> this block only, (N, T - r0, Bk): a block-sized copy
        mb = mask3[..., r0:, s0:s1].reshape(s.shape)
        s.masked_fill_(~mb, float("-inf"))
    return s


def _trace_row(s0, s1, r0, r1, skipped, m, l) -> dict:  # noqa: E741 (the paper's name)
    """One key block's entry of ``tiled_attention``'s trace: batch 0's running m and l after it."""
    return {
        "keys": (s0, s1),
        "rows": (r0, r1),
        "skipped": skipped,
        "m": m[0, :, 0].clone(),
        "l": l[0, :, 0].clone(),
    }


def _flatten(q, k, v, attn_mask):
    """(..., T, d) tensors -> (N, T, d) views, one batch N for every bmm, and the mask as a
    (..., T, S) broadcast view (None stays None)."""
    lead, (T, d_k), (S, d_v) = q.shape[:-2], q.shape[-2:], v.shape[-2:]
    mask3 = None if attn_mask is None else attn_mask.expand(*lead, T, S)
    return q.reshape(-1, T, d_k), k.reshape(-1, S, d_k), v.reshape(-1, S, d_v), mask3


def _accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for 16-bit inputs (as FlashAttention keeps m, l and acc), else the input's dtype.

    In bfloat16 a running sum over thousands of keys loses most of its digits: measured 0.40
    relative error at S = 70000 with bfloat16 accumulators against 0.003 for SDPA.
    """
    return torch.promote_types(dtype, torch.float32)


def _add_product_(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """acc += a @ b in place, for a and b in the inputs' dtype and acc in the accumulator's.

    Same dtype: one fused baddbmm, no temporary. 16-bit inputs: the product in their dtype (as
    FlashAttention does on tensor cores), added to the float32 sum.
    """
    if acc.dtype == a.dtype:
        return acc.baddbmm_(a, b)
    return acc.add_(torch.bmm(a, b))


def _forward(q3, k3, v3, block_size, is_causal, scale, mask3, trace):
    """Online-softmax forward on (N, T, d) tensors: returns out (N, T, d_v) and L (N, T).

    The products run in the inputs' dtype; the softmax statistics and the running output are
    kept in :func:`_accumulator_dtype` (float32 for float16 and bfloat16), as FlashAttention does.
    """
    N, T, _ = q3.shape
    S, d_v = v3.shape[-2:]
    dtype, acc_dtype = q3.dtype, _accumulator_dtype(q3.dtype)
    m = torch.full((N, T, 1), float("-inf"), dtype=acc_dtype, device=q3.device)
    l = torch.zeros((N, T, 1), dtype=acc_dtype, device=q3.device)  # noqa: E741 (the paper's name)
    acc = torch.zeros((N, T, d_v), dtype=acc_dtype, device=q3.device)

    for s0 in range(0, S, block_size):
        s1 = min(s0 + block_size, S)
        r0 = s0 if is_causal else 0  # rows < s0 see none of keys s0.. under a causal mask
        if r0 >= T:
            if trace is not None:
                trace.append(_trace_row(s0, s1, T, T, True, m, l))
            continue
        kb = k3[:, s0:s1] * scale  # (N, Bk, d_k): scaling a key block is cheaper than q or s
        vb = v3[:, s0:s1]  # (N, Bk, d_v)
        s = _block_scores(q3, kb, r0, s0, s1, is_causal, mask3).to(acc_dtype)  # (N, T - r0, Bk)
        m_rows = m[:, r0:]
        m_new = torch.maximum(m_rows, s.amax(dim=-1, keepdim=True))  # (N, T - r0, 1)
        # A row that has seen only -inf so far keeps m = -inf; shift it by 0 to avoid NaN.
        m_safe = m_new.masked_fill(torch.isneginf(m_new), 0.0)
        correction = torch.exp(m_rows - m_safe)  # rescales the old sums to the new maximum
        p = s.sub_(m_safe).exp_()  # (N, T - r0, Bk), in place
        l[:, r0:].mul_(correction).add_(p.sum(dim=-1, keepdim=True))
        acc_rows = acc[:, r0:]
        acc_rows.mul_(correction)
        _add_product_(acc_rows, p.to(dtype), vb)  # acc += p @ v_block
        m[:, r0:] = m_new
        # Free this block's (N, T, Bk) tile before the next one is allocated: otherwise two tiles
        # are alive at once and the peak memory doubles.
        del s, p
        if trace is not None:
            trace.append(_trace_row(s0, s1, r0, T, False, m, l))

    # The row logsumexp: log(sum_j exp(s_ij)) = m + log(l); -inf for a row that saw no key.
    L = (m + torch.log(l)).squeeze(-1)  # (N, T), in the accumulator dtype
    l.masked_fill_(l == 0, 1.0)  # rows that saw no key stay zero
    return acc.div_(l).to(dtype), L


def _backward(q3, k3, v3, out3, dO3, L, block_size, is_causal, scale, mask3):
    """Gradients (dq, dk, dv) on (N, T, d) tensors, recomputing P block by block from L.

    As in the forward, products run in the inputs' dtype and P, dS, D and the dq sum are kept in
    :func:`_accumulator_dtype`; the gradients come back in the inputs' dtype.
    """
    T = q3.shape[1]
    S = k3.shape[1]
    dtype, acc_dtype = q3.dtype, _accumulator_dtype(q3.dtype)
    # A row that saw no key has L = -inf and only -inf scores: shift by 0 so exp gives 0, not NaN.
    L = L.masked_fill(torch.isneginf(L), 0.0).unsqueeze(-1)  # (N, T, 1)
    # (N, T, 1) = rowsum(dP * P), see the module doc
    D = (dO3.to(acc_dtype) * out3.to(acc_dtype)).sum(dim=-1, keepdim=True)
    dq = torch.zeros_like(q3, dtype=acc_dtype)  # summed over every key block
    dk = torch.zeros_like(k3)  # each key block's rows are written once
    dv = torch.zeros_like(v3)
    for s0 in range(0, S, block_size):
        s1 = min(s0 + block_size, S)
        r0 = s0 if is_causal else 0
        if r0 >= T:
            continue  # no query sees these keys: their gradients stay zero
        kb = k3[:, s0:s1] * scale  # (N, Bk, d_k), scaled as in the forward
        vb = v3[:, s0:s1]  # (N, Bk, d_v)
        dO_rows = dO3[:, r0:]  # (N, T - r0, d_v)
        s = _block_scores(q3, kb, r0, s0, s1, is_causal, mask3).to(acc_dtype)
        p = s.sub_(L[:, r0:]).exp_()  # the P block, (N, T - r0, Bk)
        dv[:, s0:s1] = torch.bmm(p.to(dtype).transpose(1, 2), dO_rows)  # dV_j = P_j^T dO
        ds = torch.bmm(dO_rows, vb.transpose(1, 2)).to(acc_dtype)  # dP_j = dO V_j^T
        ds.sub_(D[:, r0:]).mul_(p)  # dS_j = P_j * (dP_j - D), in place
        del s, p
        ds = ds.to(dtype)  # a no-op unless the inputs are 16-bit
        _add_product_(dq[:, r0:], ds, kb)  # dQ += dS_j (scale K_j)
        dk[:, s0:s1] = torch.bmm(ds.transpose(1, 2), q3[:, r0:]).mul_(scale)  # dK_j = scale dS_j^T Q
        del ds
    return dq.to(dtype), dk, dv


class TiledAttentionFunction(torch.autograd.Function):
    """Autograd for :func:`tiled_attention`: saves q, k, v, out and L; recomputes P in backward.

    First derivatives only: the backward treats out and L as constants, so differentiating it
    again (``create_graph=True``, then a second ``backward``) raises instead of giving wrong
    numbers.
    """

    @staticmethod
    def forward(ctx, q, k, v, attn_mask, block_size, is_causal, scale, trace=None):
        """The online-softmax forward; saves q, k, v, out (N, T, d_v) and L (N, T)."""
        q3, k3, v3, mask3 = _flatten(q, k, v, attn_mask)
        out3, L = _forward(q3, k3, v3, block_size, is_causal, scale, mask3, trace)
        ctx.save_for_backward(q, k, v, out3, L, attn_mask)
        ctx.options = (block_size, is_causal, scale)
        return out3.reshape(*q.shape[:-1], v.shape[-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        """dout (..., T, d_v) -> dq, dk, dv of q's, k's and v's shapes (None for the options)."""
        q, k, v, out3, L, attn_mask = ctx.saved_tensors
        block_size, is_causal, scale = ctx.options
        q3, k3, v3, mask3 = _flatten(q, k, v, attn_mask)
        dq, dk, dv = _backward(
            q3, k3, v3, out3, dout.reshape(out3.shape), L, block_size, is_causal, scale, mask3
        )
        return dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape), None, None, None, None, None


def tiled_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_size: int = 128,
    is_causal: bool = False,
    scale: float | None = None,
    trace: list | None = None,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention computed block by block with an online softmax; differentiable.

    Args:
        q: (..., T, d_k). k: (..., S, d_k). v: (..., S, d_v). Leading dimensions must match
            exactly (no broadcasting).
        block_size: keys per block (>= 1). It need not divide S.
        is_causal: query i sees keys j <= i (top-left alignment, as torch's ``is_causal``).
        scale: multiply scores by this; default 1/sqrt(d_k).
        trace: if a list is given, one dict per key block is appended with the block's range,
            whether it was skipped and the running ``m`` and ``l`` after it (for teaching).
        attn_mask: optional bool, broadcastable to (..., T, S), True = attend (as torch's SDPA).
            Not together with ``is_causal``.
    Returns:
        out (..., T, d_v), equal to softmax(q k^T * scale + mask) v. Rows that see no key (a fully
        masked row of ``attn_mask``) are zeros, and so are their gradients. NaN or inf in q, k or
        v is not checked for: it gives NaN in every row that attends to it. Rows that mask it can
        differ from torch's SDPA (keys a causal mask skips are never read here). When an input
        requires a gradient, ``out.backward`` runs the recomputing tiled backward
        (:class:`TiledAttentionFunction`).
    Raises:
        TypeError: an input is not a floating tensor, dtypes differ, the mask is not bool, or
            ``block_size`` is not an int (NumPy integers are fine).
        ValueError: shapes disagree, an empty sequence, ``block_size`` < 1, a mask that does not
            broadcast to (..., T, S), or a mask together with ``is_causal``.
    """
    block_size = _check_inputs(q, k, v, block_size, is_causal, attn_mask)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if needs_grad:
        return TiledAttentionFunction.apply(q, k, v, attn_mask, block_size, is_causal, scale, trace)
    # Flatten the leading dimensions to one batch N so that every product is a bmm/baddbmm.
    q3, k3, v3, mask3 = _flatten(q, k, v, attn_mask)  # (N, T, d_k), (N, S, d_k), (N, S, d_v)
    out, _ = _forward(q3, k3, v3, block_size, is_causal, scale, mask3, trace)
    return out.reshape(*q.shape[:-1], v.shape[-1])  # (..., T, d_v)
