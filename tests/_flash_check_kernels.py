"""Right and wrong Triton kernels for the chapter 9 checks (imported by test_checks_flash.py).

The kernels are written as a learner would write them, in Triton, and run in its interpreter on a
CPU. Each wrong kernel makes one mistake, so it differs from the right answer in one place.
This module imports triton: test_checks_flash.py imports it only where Triton exists.
"""

from __future__ import annotations

from selfattention.triton_mode import import_triton

triton, tl, _ = import_triton()

# ---------------------------------------------------------------------------------------------
# The online-softmax update
# ---------------------------------------------------------------------------------------------


@triton.jit
def _update_body(m_i, l_i, acc, s, v, RESCALE_L: tl.constexpr, RESCALE_ACC: tl.constexpr):
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp(m_i - m_new)
    p = tl.exp(s - m_new[:, None])
    if RESCALE_L:
        l_i = l_i * alpha
    if RESCALE_ACC:
        acc = acc * alpha[:, None]
    l_new = l_i + tl.sum(p, 1)
    acc = acc + tl.dot(p, v, input_precision="ieee")
    return m_new, l_new, acc


@triton.jit
def update_right(m_i, l_i, acc, s, v):
    return _update_body(m_i, l_i, acc, s, v, True, True)


@triton.jit
def update_exp2(m_i, l_i, acc, s, v):
    """The same update in base 2, as fast kernels write it."""
    LOG2E: tl.constexpr = 1.4426950408889634
    m_new = tl.maximum(m_i, tl.max(s, 1) * LOG2E)
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s * LOG2E - m_new[:, None])
    return m_new, l_i * alpha + tl.sum(p, 1), acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")


@triton.jit
def update_acc_not_rescaled(m_i, l_i, acc, s, v):
    return _update_body(m_i, l_i, acc, s, v, True, False)


@triton.jit
def update_l_not_rescaled(m_i, l_i, acc, s, v):
    return _update_body(m_i, l_i, acc, s, v, False, True)


@triton.jit
def update_nothing_rescaled(m_i, l_i, acc, s, v):
    return _update_body(m_i, l_i, acc, s, v, False, False)


@triton.jit
def update_no_max(m_i, l_i, acc, s, v):
    """Exact in real arithmetic too, but exp(s) overflows float32 for scores above about 88.7."""
    p = tl.exp(s)  # no maximum subtracted, so nothing to rescale
    return m_i, l_i + tl.sum(p, 1), acc + tl.dot(p, v, input_precision="ieee")


@triton.jit
def update_block_max(m_i, l_i, acc, s, v):
    """Exact in real arithmetic (any reference point cancels), but alpha overflows when a block
    falls far below the earlier ones."""
    m_new = tl.max(s, 1)  # this block's maximum, not the running one
    alpha = tl.exp(m_i - m_new)
    p = tl.exp(s - m_new[:, None])
    return m_new, l_i * alpha + tl.sum(p, 1), acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")


# ---------------------------------------------------------------------------------------------
# One tile of the forward
# ---------------------------------------------------------------------------------------------


@triton.jit
def tile_right(
    Q,
    K,
    V,
    O,
    T,
    S,
    scale,
    IS_CAUSAL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    MASK_LOADS: tl.constexpr = True,
    MASK_SCORES: tl.constexpr = True,
    SKIP_DIAGONAL: tl.constexpr = False,
    STRICT: tl.constexpr = False,
    MASK_Q: tl.constexpr = True,
    MASK_STORE: tl.constexpr = True,
    SCALE_BY: tl.constexpr = "scale",
    input_precision: tl.constexpr = "ieee",
):
    start_m = tl.program_id(0) * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    if MASK_Q:
        q = tl.load(Q + offs_m[:, None] * HEAD_DIM + offs_d[None, :], mask=offs_m[:, None] < T, other=0.0)
    else:
        q = tl.load(Q + offs_m[:, None] * HEAD_DIM + offs_d[None, :])
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = S
    if IS_CAUSAL:
        hi = tl.minimum(S, start_m + BLOCK_M)
        if SKIP_DIAGONAL:
            hi = tl.minimum(S, start_m)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        if MASK_LOADS:
            k = tl.load(K + offs_n[:, None] * HEAD_DIM + offs_d[None, :], mask=offs_n[:, None] < S, other=0.0)
            v = tl.load(V + offs_n[:, None] * HEAD_DIM + offs_d[None, :], mask=offs_n[:, None] < S, other=0.0)
        else:
            k = tl.load(K + offs_n[:, None] * HEAD_DIM + offs_d[None, :])
            v = tl.load(V + offs_n[:, None] * HEAD_DIM + offs_d[None, :])
        if SCALE_BY == "scale":
            s = tl.dot(q, tl.trans(k), input_precision=input_precision) * scale
        elif SCALE_BY == "1/sqrt(d)":
            s = tl.dot(q, tl.trans(k), input_precision=input_precision) * (1.0 / HEAD_DIM**0.5)
        else:  # the scale forgotten
            s = tl.dot(q, tl.trans(k), input_precision=input_precision)
        if MASK_SCORES:
            s = tl.where(offs_n[None, :] < S, s, float("-inf"))
        if IS_CAUSAL:
            if STRICT:
                s = tl.where(offs_n[None, :] < offs_m[:, None], s, float("-inf"))
            else:
                s = tl.where(offs_n[None, :] <= offs_m[:, None], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p, v, input_precision=input_precision)
        m_i = m_new
    out = acc / l_i[:, None]
    if MASK_STORE:
        tl.store(O + offs_m[:, None] * HEAD_DIM + offs_d[None, :], out, mask=offs_m[:, None] < T)
    else:
        tl.store(O + offs_m[:, None] * HEAD_DIM + offs_d[None, :], out)


class _WithMistake:
    """``tile_right`` launched with one of its mistake flags switched on, as the check launches a kernel."""

    def __init__(self, **flags):
        self.flags = flags

    def __getitem__(self, grid):
        return lambda *args, **kwargs: tile_right[grid](*args, **kwargs, **self.flags)

    def __call__(self, *args, **kwargs):  # callable like a @triton.jit kernel, and as unusable
        raise RuntimeError("a kernel is launched with kernel[grid](...)")


tile_loads_unmasked = _WithMistake(MASK_LOADS=False, MASK_SCORES=False)
tile_scores_unmasked = _WithMistake(MASK_SCORES=False)
# Scores masked, loads not: the weights past S are 0, but 0 * NaN read past the end is NaN.
tile_only_scores_masked = _WithMistake(MASK_LOADS=False)
tile_diagonal_block_skipped = _WithMistake(SKIP_DIAGONAL=True)
tile_strict_causal = _WithMistake(STRICT=True)
tile_store_unmasked = _WithMistake(MASK_STORE=False)
# Rows past T read from past the end of Q feed only output rows that the masked store drops.
tile_q_unmasked = _WithMistake(MASK_Q=False)
tile_hard_coded_scale = _WithMistake(SCALE_BY="1/sqrt(d)")
tile_scale_forgotten = _WithMistake(SCALE_BY="nothing")


@triton.jit
def tile_tf32(
    Q,
    K,
    V,
    O,
    T,
    S,
    scale,
    IS_CAUSAL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
):
    # the mistake is in the source: a precision other than "ieee" (the check reads it)
    tile_right(Q, K, V, O, T, S, scale, IS_CAUSAL, BLOCK_M, BLOCK_N, HEAD_DIM, input_precision="tf32")


@triton.jit
def tile_allow_tf32_false(
    Q,
    K,
    V,
    O,
    T,
    S,
    scale,
    IS_CAUSAL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
):
    """A right answer with the older spelling of float32 dots, allow_tf32=False (Triton: "ieee")."""
    start_m = tl.program_id(0) * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + offs_m[:, None] * HEAD_DIM + offs_d[None, :], mask=offs_m[:, None] < T, other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = S
    if IS_CAUSAL:
        hi = tl.minimum(S, start_m + BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kv_ok = offs_n[:, None] < S
        k = tl.load(K + offs_n[:, None] * HEAD_DIM + offs_d[None, :], mask=kv_ok, other=0.0)
        v = tl.load(V + offs_n[:, None] * HEAD_DIM + offs_d[None, :], mask=kv_ok, other=0.0)
        s = tl.dot(q, tl.trans(k), allow_tf32=False) * scale
        visible = offs_n[None, :] < S
        if IS_CAUSAL:
            visible = visible & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p, v, allow_tf32=False)
        m_i = m_new
    tl.store(O + offs_m[:, None] * HEAD_DIM + offs_d[None, :], acc / l_i[:, None], mask=offs_m[:, None] < T)


CORRECT = {"triton_online_softmax": update_right, "flash_tile": tile_right}
MORE_CORRECT = [("triton_online_softmax", update_exp2), ("flash_tile", tile_allow_tf32_false)]
MISTAKES = [
    ("triton_online_softmax", "acc not rescaled when the maximum changes", update_acc_not_rescaled),
    ("triton_online_softmax", "l not rescaled when the maximum changes", update_l_not_rescaled),
    ("triton_online_softmax", "neither l nor acc rescaled when the maximum changes", update_nothing_rescaled),
    ("triton_online_softmax", "the maximum of this block alone, not the running maximum", update_block_max),
    ("triton_online_softmax", "no running maximum (exp overflows)", update_no_max),
    ("flash_tile", "loads not masked at a ragged edge", tile_loads_unmasked),
    ("flash_tile", "loads not masked at a ragged edge", tile_only_scores_masked),
    ("flash_tile", "scores not masked at a ragged edge", tile_scores_unmasked),
    ("flash_tile", "a store past the last row (unmasked tl.store)", tile_store_unmasked),
    ("flash_tile", "Q loaded without a mask at the ragged edge", tile_q_unmasked),
    ("flash_tile", "a hard-coded scale instead of the scale argument", tile_hard_coded_scale),
    ("flash_tile", "the scores not multiplied by scale", tile_scale_forgotten),
    (
        "flash_tile",
        "a causal off-by-one at block edges (the diagonal block skipped)",
        tile_diagonal_block_skipped,
    ),
    ("flash_tile", "a causal off-by-one (a query cannot see its own key)", tile_strict_causal),
    ("flash_tile", "float32 tl.dot left at TF32 on a GPU", tile_tf32),
]
