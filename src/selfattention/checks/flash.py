"""Checks for chapter 9: the online-softmax update and one tile of FlashAttention, as Triton code.

The learner's code is a ``@triton.jit`` function; the check launches it (in Triton's interpreter
on a CPU) on small cases and compares with NumPy. Triton is imported only when a check runs, so
``from selfattention import checks`` works where Triton is not installed.

* :func:`triton_online_softmax` launches a kernel of its own that calls the learner's
  ``update(m_i, l_i, acc, s, v) -> (m_new, l_new, acc_new)`` once per block of scores.
* :func:`flash_tile` launches the learner's whole kernel
  ``kernel(Q, K, V, O, T, S, scale, IS_CAUSAL, BLOCK_M, BLOCK_N, HEAD_DIM)``, one program per
  block of BLOCK_M queries, on contiguous (T, d) / (S, d) tensors. Past the end of K and V lies
  memory filled with NaN, as a GPU's memory may hold anything there, so an unmasked load reads
  NaN, and a zero weight does not cancel it (0 * NaN = NaN).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

import numpy as np

from ._core import Case, CheckResult, Mistake, run_check

ROWS, BLOCK, D_SMALL = 16, 16, 16  # tl.dot on a GPU needs at least 16 per dimension
POISON_V = 100.0  # the finite filler past the last value row in the second run (past K: zeros)


class ReadPastTheEnd(RuntimeError):
    """The kernel's output is NaN only when the memory past the end of K and V holds NaN."""


def _triton():
    from ..triton_mode import import_triton

    return import_triton()


def _device() -> str:
    """Where the check's tensors live: CPU tensors for the interpreter, else the GPU."""
    return "cpu" if _triton()[2] else "cuda"


def _launch(kernel: Any, grid: tuple, *args: Any, **kwargs: Any) -> None:
    """Launch a kernel; an exercise stub's NotImplementedError comes out as itself.

    Triton's interpreter wraps whatever a kernel raises in an InterpreterError; the checks stop
    at an unwritten exercise only on a NotImplementedError (see ``_core.run_check``).
    """
    try:
        kernel[grid](*args, **kwargs)
    except Exception as exc:
        cause = exc
        while cause is not None:
            if isinstance(cause, NotImplementedError):
                raise cause from None
            cause = cause.__cause__ or cause.__context__
        raise


def _softmax_rows(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# The online-softmax update inside a kernel
# ---------------------------------------------------------------------------------------------

_ONLINE_KERNEL = None


def _online_kernel():
    """The check's kernel: one program, blocks of BLOCK scores folded in by the learner's update."""
    global _ONLINE_KERNEL
    if _ONLINE_KERNEL is None:
        triton, tl, _ = _triton()

        @triton.jit
        def online_softmax_kernel(
            Sc, V, O, N, UPDATE: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr, D: tl.constexpr
        ):
            rows = tl.arange(0, ROWS)
            offs_d = tl.arange(0, D)
            m_i = tl.full([ROWS], float("-inf"), dtype=tl.float32)
            l_i = tl.zeros([ROWS], dtype=tl.float32)
            acc = tl.zeros([ROWS, D], dtype=tl.float32)
            for start in range(0, N, BLOCK):
                cols = start + tl.arange(0, BLOCK)
                s = tl.load(Sc + rows[:, None] * N + cols[None, :])
                v = tl.load(V + cols[:, None] * D + offs_d[None, :])
                m_i, l_i, acc = UPDATE(m_i, l_i, acc, s, v)
            tl.store(O + rows[:, None] * D + offs_d[None, :], acc / l_i[:, None])

        _ONLINE_KERNEL = online_softmax_kernel
    return _ONLINE_KERNEL


def _online_numpy(s, v, rescale_l=True, rescale_acc=True, running_max=True):
    """What the kernel returns with a given update rule, block by block in float32 (as the kernel:
    a wrong rule that overflows there must overflow here too)."""
    s, v = s.astype(np.float32), v.astype(np.float32)
    m = np.full(s.shape[0], -np.inf, dtype=np.float32)
    l, acc = np.zeros(s.shape[0], np.float32), np.zeros((s.shape[0], v.shape[1]), np.float32)
    for start in range(0, s.shape[1], BLOCK):
        sb, vb = s[:, start : start + BLOCK], v[start : start + BLOCK]
        m_new = np.maximum(m, sb.max(-1)) if running_max else sb.max(-1)
        alpha = np.exp(m - m_new)
        p = np.exp(sb - m_new[:, None])
        l = (l * alpha if rescale_l else l) + p.sum(-1)
        acc = (acc * alpha[:, None] if rescale_acc else acc) + p @ vb
        m = m_new
    return acc / l[:, None]


def triton_online_softmax(update: Any, raise_on_fail: bool = False) -> CheckResult:
    """Check a ``@triton.jit`` ``update(m_i, l_i, acc, s, v) -> (m_new, l_new, acc_new)``.

    m_i, l_i: (ROWS,) running max and sum; acc: (ROWS, D) running weighted sum of values;
    s: (ROWS, BLOCK) this block's scores; v: (BLOCK, D) its values. All float32. The check folds
    4 blocks and compares ``acc / l`` with softmax(scores) @ V, for scores that grow from block to
    block (the maximum changes), that fall far below the first block (the maximum stays), and that
    go up and down.
    """
    r = np.random.default_rng(909)
    n = 4 * BLOCK
    layouts = [
        ((0.0, 1.5, 3.0, 4.5), "scores grow from block to block"),
        ((50.0, -50.0, -40.0, -45.0), "scores fall 90-100 below the first block"),
        ((1.5, 4.5, 0.0, 3.0), "scores go up and down"),
    ]
    cases = []
    for offsets, what in layouts:
        s = (r.normal(size=(ROWS, n)) + np.repeat(offsets, BLOCK)[None, :]).astype(np.float32)
        v = r.normal(size=(n, D_SMALL)).astype(np.float32)
        cases.append(Case((s, v), _softmax_rows(s.astype(np.float64)) @ v, f"16 rows, 4 blocks: {what}"))

    def run(scores, values):
        import torch

        dev = _device()
        out = torch.empty(ROWS, D_SMALL, device=dev)
        _launch(
            _online_kernel(),
            (1,),
            torch.from_numpy(scores.copy()).to(dev),
            torch.from_numpy(values.copy()).to(dev),
            out,
            scores.shape[1],
            UPDATE=update,
            ROWS=ROWS,
            BLOCK=BLOCK,
            D=D_SMALL,
        )
        return out.cpu().numpy()

    mistakes = [
        Mistake(
            "acc not rescaled when the maximum changes",
            "acc holds sums of exp(s - m) * v computed under the old maximum m; when it grows to "
            "m_new, multiply acc by alpha = exp(m - m_new) before adding the new block, as l is.",
            lambda s_, v_: _online_numpy(s_, v_, rescale_acc=False),
        ),
        Mistake(
            "l not rescaled when the maximum changes",
            "l is a sum of exp(s - m) under the old maximum: multiply it by alpha = "
            "exp(m - m_new) before adding the new block's sum, as acc is.",
            lambda s_, v_: _online_numpy(s_, v_, rescale_l=False),
        ),
        Mistake(
            "neither l nor acc rescaled when the maximum changes",
            "both running sums were computed under the old maximum m: multiply both by "
            "alpha = exp(m - m_new) before adding the new block.",
            lambda s_, v_: _online_numpy(s_, v_, rescale_l=False, rescale_acc=False),
        ),
        Mistake(
            "the maximum of this block alone, not the running maximum",
            "m_new = tl.maximum(m_i, tl.max(s, 1)): the running maximum never goes down. With "
            "this block's maximum alone, a block far below the earlier ones makes alpha = "
            "exp(m_i - m_new) huge (exp(100) overflows float32, whose limit is about exp(88.7)), "
            "and acc / l becomes inf / inf = NaN.",
            lambda s_, v_: _online_numpy(s_, v_, running_max=False),
        ),
    ]
    fn = run if callable(update) else update
    return run_check(
        "triton_online_softmax",
        fn,
        cases,
        "(m_i, l_i, acc, s, v)",
        mistakes,
        rtol=1e-4,
        atol=1e-5,
        raise_on_fail=raise_on_fail,
    )


# ---------------------------------------------------------------------------------------------
# One tile of the FlashAttention forward
# ---------------------------------------------------------------------------------------------


def _source_tree(fn: Any) -> ast.AST | None:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(getattr(fn, "fn", fn))))
    except (OSError, TypeError, SyntaxError):
        return None


def dots_left_at_tf32(kernel: Any) -> bool:
    """Whether a Triton kernel has a ``tl.dot`` without ``input_precision="ieee"``.

    A call of any function with a constant ``input_precision`` other than ``"ieee"`` counts too.

    On a GPU float32 ``tl.dot`` defaults to TF32 (a 10-bit mantissa, errors near 1e-3); the
    interpreter ignores the argument, so the check reads the kernel's source (or, when the source
    cannot be found, its code object).
    """
    tree = _source_tree(kernel)
    if tree is None:
        code = getattr(getattr(kernel, "fn", kernel), "__code__", None)
        return code is not None and "dot" in code.co_names and "ieee" not in code.co_consts
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        value = {k.arg: k.value for k in node.keywords}.get("input_precision")
        is_dot = getattr(node.func, "attr", getattr(node.func, "id", "")) == "dot"
        if is_dot and value is None:
            return True  # the default: TF32 on a GPU
        # a constant precision other than "ieee", given to tl.dot or to a helper that passes it on
        if isinstance(value, ast.Constant) and value.value != "ieee":
            return True
    return False


def _to_tf32(x: np.ndarray) -> np.ndarray:
    """Round float32 to TF32 (10 mantissa bits, round to nearest), as a GPU's tensor cores read it."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def _attention(q, k, v, is_causal, keys_seen=None, pad_keys=0, pad_value=0.0):
    """Reference attention in float64; ``keys_seen(i, j)`` replaces the causal rule when given.

    ``pad_keys`` extra keys of zeros (values ``pad_value``) stand for what an unmasked tile sees
    past the end of K and V. Rows that see no key give 0.
    """
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    T, S = q.shape[0], k.shape[0]
    k = np.concatenate([k, np.zeros((pad_keys, k.shape[1]))])
    v = np.concatenate([v, np.full((pad_keys, v.shape[1]), pad_value)])
    s = q @ k.T / np.sqrt(q.shape[1])
    i, j = np.arange(T)[:, None], np.arange(S + pad_keys)[None, :]
    seen = keys_seen(i, j) if keys_seen else ((j <= i) if is_causal else (j >= 0))
    seen = np.broadcast_to(seen, s.shape)
    s = np.where(seen, s, -np.inf)
    out = np.zeros((T, v.shape[1]))
    ok = seen.any(-1)
    out[ok] = _softmax_rows(s[ok]) @ v
    return out


def _past_the_end(S: int) -> str:
    return (
        f"your output has NaN where the memory past the last of the S = {S} keys and values held "
        "NaN, and none when it held numbers"
    )


def _tile_mistakes(T: int, S: int, is_causal: bool) -> list[Mistake]:
    pad = BLOCK * -(-S // BLOCK) - S  # keys a block-wide load reads past the end

    def reads_past_the_end(q, k, v, c):
        if pad:
            raise ReadPastTheEnd(_past_the_end(S))
        return _attention(q, k, v, c)  # nothing lies past the end of a whole block

    return [
        Mistake(
            "loads not masked at a ragged edge",
            f"S = {S} is not a multiple of BLOCK_N = {BLOCK}: the last block of K and V reaches "
            "past the end of the tensors and reads whatever lies there (the check put NaN there; "
            "on a GPU it may be anything, or a fault). Masking those scores is not enough: their "
            "weight 0 times a NaN value is still NaN. Load with mask=offs_n[:, None] < S, "
            "other=0.0, and set those scores to -inf.",
            reads_past_the_end,
        ),
        Mistake(
            "scores not masked at a ragged edge",
            f"the loads are masked (other=0.0), but the {pad} keys past S = {S} still get the score "
            "0 and take part in the softmax: set scores where offs_n >= S to -inf.",
            lambda q, k, v, c: _attention(q, k, v, c, pad_keys=pad, pad_value=0.0),
        ),
        Mistake(
            "a causal off-by-one at block edges (the diagonal block skipped)",
            "the key loop stops before the block that holds the diagonal, so each query misses "
            "the keys of its own block: loop to min(S, start_m + BLOCK_M), and mask that block "
            "with offs_n <= offs_m.",
            lambda q, k, v, c: _attention(q, k, v, c, keys_seen=lambda i, j: j < (i // BLOCK) * BLOCK),
        ),
        Mistake(
            "a causal off-by-one (a query cannot see its own key)",
            "query i must see keys j <= i, the diagonal included: mask with offs_n[None, :] <= "
            "offs_m[:, None], not <.",
            lambda q, k, v, c: _attention(q, k, v, c, keys_seen=lambda i, j: j < i),
        ),
        Mistake(
            "float32 tl.dot left at TF32 on a GPU",
            "on a GPU a float32 tl.dot rounds its inputs to TF32 (10 mantissa bits) unless told "
            "otherwise, so results differ from float32 by about 1e-3. Pass "
            'input_precision="ieee" to every tl.dot. (The interpreter ignores the argument: '
            "the check read your kernel's source and computed what a GPU would return.)",
            lambda q, k, v, c: _attention(_to_tf32(q), _to_tf32(k), _to_tf32(v), c),
        ),
    ]


def flash_tile(kernel: Any, raise_on_fail: bool = False) -> CheckResult:
    """Check a ``@triton.jit`` kernel computing one block of FlashAttention's forward.

    ``kernel(Q, K, V, O, T, S, scale, IS_CAUSAL, BLOCK_M, BLOCK_N, HEAD_DIM)``: Q, O (T, d) and
    K, V (S, d), contiguous float32; program ``tl.program_id(0)`` writes rows
    [pid * BLOCK_M, (pid + 1) * BLOCK_M) of O = softmax(scale * Q K^T) V, top-left causal when
    IS_CAUSAL. The check uses BLOCK_M = BLOCK_N = 16 and d = 16.
    """
    import torch

    def launch(q, k, v, is_causal, past_k, past_v):
        T, S = q.shape[0], k.shape[0]
        extra = 2 * BLOCK  # memory past each tensor's end, filled as a GPU's neighbours might be
        qb = torch.zeros(T + extra, D_SMALL)
        kb = torch.full((S + extra, D_SMALL), past_k)
        vb = torch.full((S + extra, D_SMALL), past_v)
        ob = torch.zeros(T + extra, D_SMALL)
        qb[:T], kb[:S], vb[:S] = (torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in (q, k, v))
        if dots_left_at_tf32(kernel):  # what a GPU would read
            qb, kb, vb = (torch.from_numpy(_to_tf32(x.numpy())) for x in (qb, kb, vb))
        qb, kb, vb, ob = (x.to(_device()) for x in (qb, kb, vb, ob))
        grid = (-(-T // BLOCK),)
        _launch(
            kernel,
            grid,
            qb[:T],
            kb[:S],
            vb[:S],
            ob[:T],
            T,
            S,
            1.0 / np.sqrt(D_SMALL),
            IS_CAUSAL=is_causal,
            BLOCK_M=BLOCK,
            BLOCK_N=BLOCK,
            HEAD_DIM=D_SMALL,
        )
        return ob[:T].cpu().numpy()

    def run(q, k, v, is_causal):
        out = launch(q, k, v, is_causal, float("nan"), float("nan"))
        if np.isnan(out).any() and not np.isnan(launch(q, k, v, is_causal, 0.0, POISON_V)).any():
            raise ReadPastTheEnd(_past_the_end(k.shape[0]))
        # A row that sees no key (a causal off-by-one) divides 0 by 0; the reference gives 0 there.
        return np.nan_to_num(out, nan=0.0)

    r = np.random.default_rng(1234)
    shapes = [
        (20, 27, False, "T=20, S=27: ragged"),
        (32, 32, True, "T=S=32, causal: block edges"),
        (40, 23, True, "T=40, S=23, causal, ragged"),
    ]
    cases = []
    for T, S, c, label in shapes:
        q, k, v = (r.normal(size=(n, D_SMALL)).astype(np.float32) for n in (T, S, S))
        cases.append(Case((q, k, v, c), _attention(q, k, v, c), label, _tile_mistakes(T, S, c)))
    _triton()
    fn = run if callable(kernel) else kernel
    return run_check(
        "flash_tile",
        fn,
        cases,
        "(Q, K, V, O, T, S, scale, IS_CAUSAL, BLOCK_M, BLOCK_N, HEAD_DIM)",
        rtol=1e-4,
        atol=2e-5,
        raise_on_fail=raise_on_fail,
    )
