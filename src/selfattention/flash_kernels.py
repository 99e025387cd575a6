"""FlashAttention-2's Triton kernels: the forward, and the three kernels of the backward.

Every kernel works on one (batch, head) pair and one block of rows; the grid's second axis runs
over the B * H pairs. Tensors are (B, H, T, d) (queries, outputs) and (B, H, S, d) (keys, values),
addressed through their strides; ``lse`` and ``D`` are contiguous (B * H, T) float32.

Scores are kept in base 2: ``qk_scale = scale * log2(e)`` folds the 1/sqrt(d) scale and the change
of base into one multiply, so the kernels call ``exp2`` (one instruction on a GPU). The
logsumexp is stored in natural log, as torch reports it.

Causal masking is top-left, as torch's ``is_causal``: query i sees keys j <= i, for any T and S.
"""

from __future__ import annotations

from .triton_mode import import_triton

triton, tl, INTERPRETED = import_triton()

# Kernels may read module-level globals only when they are constexpr (a plain float compiles in the
# interpreter but not for a GPU): tests/test_flash_compile.py compiles every kernel for sm_90.
LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


# The kernels keep their signatures and calls compact (chapter 9 prints this source).
# fmt: off
# ---------------------------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------------------------


@triton.jit
def _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, offs_m, lo, hi, S, qk_scale,
               MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr, BLOCK_N: tl.constexpr,
               HEAD_DIM: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Fold key blocks [lo, hi) into the running (acc, l_i, m_i) of one query block."""
    offs_d = tl.arange(0, HEAD_DIM)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        if MASKED:  # the diagonal block or the ragged last block: mask loads and scores
            kv_ok = offs_n[:, None] < S
            k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :], mask=kv_ok, other=0.0)
            v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :], mask=kv_ok, other=0.0)
        else:  # a block wholly inside the sequence and wholly visible: no mask at all
            k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :])
            v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :])
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        if MASKED:
            visible = offs_n[None, :] < S
            if IS_CAUSAL:
                visible = visible & (offs_n[None, :] <= offs_m[:, None])
            s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row that has seen only masked scores keeps m = -inf; exp2(-inf - -inf) would be NaN.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)  # rescales what was summed under the old maximum
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _fwd_kernel(Q, K, V, O, LSE,
                stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kn,
                stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_ot,
                H, T, S, qk_scale,
                IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, DOT_PRECISION: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program: one block of BLOCK_M queries of one (batch, head), looping over key blocks."""
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1).to(tl.int64)  # int64: bh * T * d can pass 2**31 in a large batch
    b, h = bh // H, bh % H
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < T
    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    q = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :], mask=row_ok[:, None], other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    # Key blocks [0, full_end) are inside the sequence and visible to every query of this block;
    # [full_end, hi) holds the diagonal block(s) and the ragged end; keys from hi on are never seen.
    full_end = (S // BLOCK_N) * BLOCK_N
    hi = S
    if IS_CAUSAL:
        full_end = tl.minimum(full_end, ((start_m + 1) // BLOCK_N) * BLOCK_N)
        hi = tl.minimum(S, start_m + BLOCK_M)
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, offs_m,
                               0, full_end, S, qk_scale, False, IS_CAUSAL, BLOCK_N, HEAD_DIM,
                               DOT_PRECISION)
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, offs_m,
                               full_end, hi, S, qk_scale, True, IS_CAUSAL, BLOCK_N, HEAD_DIM,
                               DOT_PRECISION)

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)  # a row that saw no key: output 0, not NaN
    out = acc / l_safe[:, None]
    lse = (m_i + tl.log2(l_safe)) * LN2  # natural-log logsumexp of the scaled scores
    o_base = O + b * stride_ob + h * stride_oh
    tl.store(o_base + offs_m[:, None] * stride_ot + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=row_ok[:, None])
    tl.store(LSE + bh * T + offs_m, lse, mask=row_ok)


# ---------------------------------------------------------------------------------------------
# Backward: D = rowsum(dO * O), then dK and dV per key block, then dQ per query block
# ---------------------------------------------------------------------------------------------


@triton.jit
def _load_rows(base, offs, stride, ok, HEAD_DIM: tl.constexpr):
    """The (len(offs), HEAD_DIM) block of rows ``offs`` of a row-major matrix; zeros where not ``ok``."""
    ptrs = base + offs[:, None] * stride + tl.arange(0, HEAD_DIM)[None, :]
    return tl.load(ptrs, mask=ok[:, None], other=0.0)


@triton.jit
def _bwd_preprocess_kernel(O, DO, Dvec, stride_ob, stride_oh, stride_ot,
                           stride_dob, stride_doh, stride_dot, H, T,
                           HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr):
    """D[i] = sum_d dO[i, d] * O[i, d]: the term that dS = P * (dP - D) subtracts from every row."""
    bh = tl.program_id(1).to(tl.int64)  # int64: bh * T * d can pass 2**31 in a large batch
    b, h = bh // H, bh % H
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = offs_m < T
    o = _load_rows(O + b * stride_ob + h * stride_oh, offs_m, stride_ot, row_ok, HEAD_DIM).to(tl.float32)
    do = _load_rows(DO + b * stride_dob + h * stride_doh, offs_m, stride_dot, row_ok, HEAD_DIM).to(tl.float32)
    tl.store(Dvec + bh * T + offs_m, tl.sum(o * do, 1), mask=row_ok)


@triton.jit
def _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_row, d_row, stride_qt, stride_dot, offs_n, lo, hi, T, S,
                qk_scale, MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr,
                HEAD_DIM: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """Add the query blocks [lo, hi) into dK and dV of one key block (tiles kept transposed)."""
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        row_ok = offs_m < T
        q = _load_rows(q_base, offs_m, stride_qt, row_ok, HEAD_DIM)  # (BLOCK_M, d)
        do = _load_rows(do_base, offs_m, stride_dot, row_ok, HEAD_DIM)
        lse2 = tl.load(lse_row + offs_m, mask=row_ok, other=0.0) * LOG2E
        delta = tl.load(d_row + offs_m, mask=row_ok, other=0.0)
        # P^T, computed directly as (BLOCK_N, BLOCK_M): keys on rows
        p_t = tl.exp2(tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale - lse2[None, :])
        if MASKED:
            visible = (offs_n[:, None] < S) & row_ok[None, :]
            if IS_CAUSAL:
                visible = visible & (offs_n[:, None] <= offs_m[None, :])
            p_t = tl.where(visible, p_t, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=DOT_PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)  # (BLOCK_N, BLOCK_M)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=DOT_PRECISION)
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, DO, LSE, Dvec, DK, DV,
                     stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kn,
                     stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dot,
                     H, T, S, qk_scale, scale,
                     IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, DOT_PRECISION: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program: one block of BLOCK_N keys; loops over the query blocks that see them.

    dV = P^T dO and dK = scale * dS^T Q, with P recomputed from the stored logsumexp.
    DK and DV are contiguous (B, H, S, d) buffers, written once each (no atomics).
    """
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1).to(tl.int64)  # int64: bh * T * d can pass 2**31 in a large batch
    b, h = bh // H, bh % H
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    key_ok = offs_n < S
    k = _load_rows(K + b * stride_kb + h * stride_kh, offs_n, stride_kn, key_ok, HEAD_DIM)  # (BLOCK_N, d)
    v = _load_rows(V + b * stride_vb + h * stride_vh, offs_n, stride_vn, key_ok, HEAD_DIM)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    q_base = Q + b * stride_qb + h * stride_qh
    do_base = DO + b * stride_dob + h * stride_doh

    # Query blocks [lo, mid) cross the diagonal (causal); [mid, full_hi) are whole and see every key
    # of this block, so they need no mask; [full_hi, T) holds the ragged end. A ragged key block
    # (start_n + BLOCK_N > S) is masked throughout.
    lo = 0
    mid = 0
    if IS_CAUSAL:  # queries before start_n see none of these keys
        lo = (start_n // BLOCK_M) * BLOCK_M
        mid = tl.minimum(T, tl.cdiv(start_n + BLOCK_N - 1, BLOCK_M) * BLOCK_M)
    full_hi = tl.maximum(mid, (T // BLOCK_M) * BLOCK_M)
    if start_n + BLOCK_N > S:
        full_hi = mid
    lse_row, d_row = LSE + bh * T, Dvec + bh * T
    dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_row, d_row, stride_qt, stride_dot, offs_n,
                         lo, mid, T, S, qk_scale, True, IS_CAUSAL, BLOCK_M, HEAD_DIM, DOT_PRECISION)
    dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_row, d_row, stride_qt, stride_dot, offs_n,
                         mid, full_hi, T, S, qk_scale, False, IS_CAUSAL, BLOCK_M, HEAD_DIM, DOT_PRECISION)
    dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_row, d_row, stride_qt, stride_dot, offs_n,
                         full_hi, T, T, S, qk_scale, True, IS_CAUSAL, BLOCK_M, HEAD_DIM, DOT_PRECISION)
    dk_ptrs = DK + bh * S * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    dv_ptrs = DV + bh * S * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(dk_ptrs, (dk * scale).to(DK.dtype.element_ty), mask=key_ok[:, None])
    tl.store(dv_ptrs, dv.to(DV.dtype.element_ty), mask=key_ok[:, None])


@triton.jit
def _dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, offs_m, lo, hi, S, qk_scale,
              MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr,
              DOT_PRECISION: tl.constexpr):
    """Add the key blocks [lo, hi) into dQ of one query block."""
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        key_ok = offs_n < S
        k = _load_rows(k_base, offs_n, stride_kn, key_ok, HEAD_DIM)  # (BLOCK_N, d)
        v = _load_rows(v_base, offs_n, stride_vn, key_ok, HEAD_DIM)
        p = tl.exp2(tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale - lse2[:, None])
        if MASKED:
            visible = key_ok[None, :]
            if IS_CAUSAL:
                visible = visible & (offs_n[None, :] <= offs_m[:, None])
            p = tl.where(visible, p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PRECISION)
    return dq


@triton.jit
def _bwd_dq_kernel(Q, K, V, DO, LSE, Dvec, DQ,
                   stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kn,
                   stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dot,
                   H, T, S, qk_scale, scale,
                   IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, DOT_PRECISION: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program: one block of BLOCK_M queries; dQ = scale * dS K over the keys they see.

    Rows past T load zeros (q, dO, lse and D), so their dS is 0 without a mask. DQ is a
    contiguous (B, H, T, d) buffer, written once (no atomics).
    """
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1).to(tl.int64)  # int64: bh * T * d can pass 2**31 in a large batch
    b, h = bh // H, bh % H
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < T
    q = _load_rows(Q + b * stride_qb + h * stride_qh, offs_m, stride_qt, row_ok, HEAD_DIM)  # (BLOCK_M, d)
    do = _load_rows(DO + b * stride_dob + h * stride_doh, offs_m, stride_dot, row_ok, HEAD_DIM)
    lse2 = tl.load(LSE + bh * T + offs_m, mask=row_ok, other=0.0) * LOG2E
    delta = tl.load(Dvec + bh * T + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh

    # the forward's split: whole visible key blocks without a mask, then the diagonal and ragged end
    full_end = (S // BLOCK_N) * BLOCK_N
    hi = S
    if IS_CAUSAL:
        full_end = tl.minimum(full_end, ((start_m + 1) // BLOCK_N) * BLOCK_N)
        hi = tl.minimum(S, start_m + BLOCK_M)
    dq = _dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, offs_m, 0, full_end, S,
                   qk_scale, False, IS_CAUSAL, BLOCK_N, HEAD_DIM, DOT_PRECISION)
    dq = _dq_inner(dq, q, do, lse2, delta, k_base, v_base, stride_kn, stride_vn, offs_m, full_end, hi, S,
                   qk_scale, True, IS_CAUSAL, BLOCK_N, HEAD_DIM, DOT_PRECISION)
    dq_ptrs = DQ + bh * T * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(dq_ptrs, (dq * scale).to(DQ.dtype.element_ty), mask=row_ok[:, None])


# fmt: on


# ---------------------------------------------------------------------------------------------
# Block sizes: autotuned on a GPU, one fixed large block in the interpreter
# ---------------------------------------------------------------------------------------------

# The interpreter's cost grows with programs x loop steps, not with block size: one large block.
INTERPRETER_BLOCK = 64

GPU_CONFIGS = [
    {"BLOCK_M": bm, "BLOCK_N": bn, "num_warps": w, "num_stages": s}
    for bm, bn, w, s in [
        (128, 64, 4, 3),
        (128, 64, 8, 3),
        (128, 128, 8, 3),
        (64, 64, 4, 3),
        (128, 32, 4, 4),
        (64, 32, 4, 4),
        (128, 64, 4, 2),
        (64, 64, 4, 2),
    ]
]
BWD_GPU_CONFIGS = [
    {"BLOCK_M": bm, "BLOCK_N": bn, "num_warps": w, "num_stages": s}
    for bm, bn, w, s in [(64, 64, 4, 2), (32, 64, 4, 2), (64, 128, 8, 2), (32, 32, 4, 3), (64, 64, 8, 3)]
]
_AUTOTUNE_KEY = ["T", "S", "HEAD_DIM", "IS_CAUSAL", "DOT_PRECISION"]


def _autotuned(kernel, configs):
    cfgs = [
        triton.Config(
            {"BLOCK_M": c["BLOCK_M"], "BLOCK_N": c["BLOCK_N"]},
            num_warps=c["num_warps"],
            num_stages=c["num_stages"],
        )
        for c in configs
    ]
    return triton.autotune(configs=cfgs, key=_AUTOTUNE_KEY)(kernel)


_TUNED = None


def kernels(tuned: bool) -> tuple:
    """The (forward, dK/dV, dQ) kernels: autotuned on a GPU unless block sizes are fixed by hand.

    An autotuned kernel rejects block sizes given at launch, and the interpreter has no timer
    worth tuning with, so both get the plain kernels.
    """
    global _TUNED
    if not tuned or INTERPRETED:
        return _fwd_kernel, _bwd_dkdv_kernel, _bwd_dq_kernel
    if _TUNED is None:  # pragma: no cover - needs an NVIDIA GPU
        _TUNED = (
            _autotuned(_fwd_kernel, GPU_CONFIGS),
            _autotuned(_bwd_dkdv_kernel, BWD_GPU_CONFIGS),
            _autotuned(_bwd_dq_kernel, BWD_GPU_CONFIGS),
        )
    return _TUNED


preprocess_kernel = _bwd_preprocess_kernel
