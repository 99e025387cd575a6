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
"""

from __future__ import annotations

import math

import torch

from ._validate import check_qkv_tensors, require_int


def tiled_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_size: int = 128,
    is_causal: bool = False,
    scale: float | None = None,
    trace: list | None = None,
) -> torch.Tensor:
    """Attention computed block by block with an online softmax.

    Args:
        q: (..., T, d_k). k: (..., S, d_k). v: (..., S, d_v). Leading dimensions must match
            exactly (no broadcasting).
        block_size: keys per block (>= 1). It need not divide S.
        is_causal: query i sees keys j <= i (top-left alignment, as torch's ``is_causal``).
        scale: multiply scores by this; default 1/sqrt(d_k).
        trace: if a list is given, one dict per key block is appended with the block's range,
            whether it was skipped and the running ``m`` and ``l`` after it (for teaching).
    Returns:
        out (..., T, d_v), equal to softmax(q k^T * scale + mask) v. A row that sees no key would
        be zeros; under top-left causal alignment every row sees key 0, so that is a safeguard.
    Raises:
        TypeError: an input is not a floating tensor, dtypes differ, or ``block_size`` is not an
            int (NumPy integers are fine).
        ValueError: shapes disagree, an empty sequence, or ``block_size`` < 1.
    """
    check_qkv_tensors(q, k, v, same_leading=True)
    block_size = require_int("block_size", block_size)

    lead = q.shape[:-2]
    T, d_k = q.shape[-2:]
    S, d_v = v.shape[-2:]
    if scale is None:
        scale = 1.0 / math.sqrt(d_k)
    # Flatten the leading dimensions to one batch N so that every product is a bmm/baddbmm.
    q3 = q.reshape(-1, T, d_k)  # (N, T, d_k), a view: no copy of the queries
    k3 = k.reshape(-1, S, d_k)  # (N, S, d_k)
    v3 = v.reshape(-1, S, d_v)  # (N, S, d_v)
    N = q3.shape[0]

    m = torch.full((N, T, 1), float("-inf"), dtype=q.dtype, device=q.device)
    l = torch.zeros((N, T, 1), dtype=q.dtype, device=q.device)  # noqa: E741 (the paper's name)
    acc = torch.zeros((N, T, d_v), dtype=q.dtype, device=q.device)

    for s0 in range(0, S, block_size):
        s1 = min(s0 + block_size, S)
        r0 = s0 if is_causal else 0  # rows < s0 see none of keys s0.. under a causal mask
        if r0 >= T:
            if trace is not None:
                trace.append({"keys": (s0, s1), "rows": (T, T), "skipped": True,
                              "m": m[0, :, 0].clone(), "l": l[0, :, 0].clone()})
            continue
        kb = k3[:, s0:s1] * scale  # (N, Bk, d_k): scaling a key block is cheaper than q or s
        vb = v3[:, s0:s1]  # (N, Bk, d_v)
        s = torch.bmm(q3[:, r0:], kb.transpose(1, 2))  # (N, T - r0, Bk) scores of this block
        if is_causal and s0 < T:
            # Only the block's diagonal part needs a mask: row r0 + i sees key s0 + j iff j <= i.
            n_diag = min(s1 - s0, T - r0)
            tri = torch.ones(n_diag, s1 - s0, dtype=torch.bool, device=q.device).tril()
            s[:, :n_diag].masked_fill_(~tri, float("-inf"))
        m_rows = m[:, r0:]
        m_new = torch.maximum(m_rows, s.amax(dim=-1, keepdim=True))  # (N, T - r0, 1)
        # A row that has seen only -inf so far keeps m = -inf; shift it by 0 to avoid NaN.
        m_safe = m_new.masked_fill(torch.isneginf(m_new), 0.0)
        correction = torch.exp(m_rows - m_safe)  # rescales the old sums to the new maximum
        p = s.sub_(m_safe).exp_()  # (N, T - r0, Bk), in place
        l[:, r0:].mul_(correction).add_(p.sum(dim=-1, keepdim=True))
        acc_rows = acc[:, r0:]
        acc_rows.mul_(correction)
        acc_rows.baddbmm_(p, vb)  # acc += p @ v_block
        m[:, r0:] = m_new
        # Free this block's (N, T, Bk) tile before the next one is allocated: otherwise two tiles
        # are alive at once and the peak memory doubles.
        del s, p
        if trace is not None:
            trace.append({"keys": (s0, s1), "rows": (r0, T), "skipped": False,
                          "m": m[0, :, 0].clone(), "l": l[0, :, 0].clone()})

    l.masked_fill_(l == 0, 1.0)  # rows that saw no key stay zero
    return acc.div_(l).reshape(*lead, T, d_v)
