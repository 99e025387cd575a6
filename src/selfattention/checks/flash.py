"""Checks for chapter 9: the online-softmax update and one tile of FlashAttention, as Triton code.

The learner's code is a ``@triton.jit`` function; the check launches it (in Triton's interpreter
on a CPU) on small cases and compares with NumPy. Triton is imported only when a check runs, so
``from selfattention import checks`` works where Triton is not installed.

* :func:`triton_online_softmax` launches a kernel of its own that calls the learner's
  ``update(m_i, l_i, acc, s, v) -> (m_new, l_new, acc_new)`` once per block of scores.
* :func:`flash_tile` launches the learner's whole kernel
  ``kernel(Q, K, V, O, T, S, scale, IS_CAUSAL, BLOCK_M, BLOCK_N, HEAD_DIM)``, one program per
  block of BLOCK_M queries, on contiguous (T, d) / (S, d) tensors. Past the end of Q, K and V
  lies memory filled with NaN, as a GPU's memory may hold anything there, so an unmasked load
  reads NaN, and a zero weight does not cancel it (0 * NaN = NaN); past the end of O lies a
  marker that an unmasked store overwrites.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._core import Case, CheckResult, Mistake, run_check

ROWS, BLOCK, D_SMALL = 16, 16, 16  # tl.dot on a GPU needs at least 16 per dimension
POISON_V = 100.0  # the finite filler past the last value row in the second run (past K: zeros)
PAST_O = -12345.0  # the marker past the last row of O, which a kernel must leave as it is


class ReadPastTheEnd(RuntimeError):
    """The kernel's output is NaN only when the memory past the end of K and V holds NaN."""


class StoredPastTheEnd(RuntimeError):
    """The kernel wrote past the last row of O."""


class ReadQPastTheEnd(RuntimeError):
    """The kernel loaded rows past the last row of Q (seen in the interpreter only)."""


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


def _online_numpy(s, v, rescale_l=True, rescale_acc=True, running_max=True, any_max=True):
    """What the kernel returns with a given update rule, block by block in float32 (as the kernel:
    a wrong rule that overflows there must overflow here too). ``any_max=False``: p = exp(s), no
    maximum subtracted and nothing rescaled."""
    s, v = s.astype(np.float32), v.astype(np.float32)
    m = np.full(s.shape[0], -np.inf, dtype=np.float32)
    l, acc = np.zeros(s.shape[0], np.float32), np.zeros((s.shape[0], v.shape[1]), np.float32)
    for start in range(0, s.shape[1], BLOCK):
        sb, vb = s[:, start : start + BLOCK], v[start : start + BLOCK]
        if not any_max:
            p = np.exp(sb)  # inf for scores above about 88.7
            l, acc = l + p.sum(-1), acc + p @ vb
            continue
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
    block (the maximum changes) from about 100, where exp overflows float32 unless the maximum is
    subtracted, that fall far below the first block (the maximum stays), and that go up and down.
    """
    r = np.random.default_rng(909)
    n = 4 * BLOCK
    no_max = Mistake(
        "no running maximum (exp overflows)",
        "p = tl.exp(s) with no maximum subtracted is exact in real arithmetic, but float32 holds "
        "exp(x) only up to x = 88.7: these scores are about 100, exp gives inf, and acc / l "
        "becomes inf / inf = NaN. Keep the running maximum m_new = tl.maximum(m_i, tl.max(s, 1)), "
        "compute p = tl.exp(s - m_new[:, None]) (every exponent <= 0), and rescale l and acc by "
        "alpha = tl.exp(m_i - m_new).",
        lambda s_, v_: _online_numpy(s_, v_, any_max=False),
    )
    layouts = [
        # The online update depends only on s - m, so the offset of 100 changes nothing for a right
        # update and for the rescaling mistakes; it makes exp(s) overflow for an update with no maximum.
        ((100.0, 101.5, 103.0, 104.5), "scores grow from block to block, from about 100", [no_max]),
        ((50.0, -50.0, -40.0, -45.0), "scores fall 90-100 below the first block", []),
        ((1.5, 4.5, 0.0, 3.0), "scores go up and down", []),
    ]
    cases = []
    for offsets, what, only_here in layouts:
        s = (r.normal(size=(ROWS, n)) + np.repeat(offsets, BLOCK)[None, :]).astype(np.float32)
        v = r.normal(size=(n, D_SMALL)).astype(np.float32)
        expected = _softmax_rows(s.astype(np.float64)) @ v
        cases.append(Case((s, v), expected, f"16 rows, 4 blocks: {what}", only_here))

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


def _tf32_keywords(call: ast.Call) -> tuple[ast.AST | None, ast.AST | None]:
    """The ``input_precision`` and ``allow_tf32`` a call gives (None where not given, or None)."""
    given = {k.arg: k.value for k in call.keywords}
    precision, allow = given.get("input_precision"), given.get("allow_tf32")
    if getattr(call.func, "attr", getattr(call.func, "id", "")) == "dot":
        # tl.dot(input, other, acc, input_precision, allow_tf32, ...) may get them by position
        precision = precision if precision is not None or len(call.args) < 4 else call.args[3]
        allow = allow if allow is not None or len(call.args) < 5 else call.args[4]

    def unset(node: ast.AST | None) -> ast.AST | None:
        return None if isinstance(node, ast.Constant) and node.value is None else node

    return unset(precision), unset(allow)


def dots_left_at_tf32(kernel: Any) -> bool:
    """Whether a Triton kernel has a ``tl.dot`` left at TF32: neither ``input_precision="ieee"``
    nor ``allow_tf32=False`` (the older spelling, which Triton maps to ``"ieee"``).

    A call of any function with a constant ``input_precision`` other than ``"ieee"``, or with
    ``allow_tf32=True``, counts too. A precision passed on in a variable is taken as right.

    On a GPU float32 ``tl.dot`` defaults to TF32 (a 10-bit mantissa, errors near 1e-3); the
    interpreter ignores the argument, so the check reads the kernel's source (or, when the source
    cannot be found, its code object).
    """
    tree = _source_tree(kernel)
    if tree is None:
        code = getattr(getattr(kernel, "fn", kernel), "__code__", None)
        if code is None or "dot" not in code.co_names or "ieee" in code.co_consts:
            return False
        consts = code.co_consts  # allow_tf32=False: the keyword's name and a False among them
        allow_false = any(c is False for c in consts) and any(
            isinstance(c, tuple) and "allow_tf32" in c for c in consts
        )
        return not allow_false
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        precision, allow = _tf32_keywords(node)
        is_dot = getattr(node.func, "attr", getattr(node.func, "id", "")) == "dot"
        if is_dot and precision is None and allow is None:
            return True  # the default: TF32 on a GPU
        # a constant precision other than "ieee", given to tl.dot or to a helper that passes it on
        if isinstance(precision, ast.Constant) and precision.value != "ieee":
            return True
        if isinstance(allow, ast.Constant) and allow.value:
            return True  # allow_tf32=True: "tf32"
    return False


def _to_tf32(x: np.ndarray) -> np.ndarray:
    """Round float32 to TF32 (10 mantissa bits, round to nearest), as a GPU's tensor cores read it."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def _attention(q, k, v, is_causal, scale, keys_seen=None, pad_keys=0, pad_value=0.0):
    """Reference attention in float64; ``keys_seen(i, j)`` replaces the causal rule when given.

    ``pad_keys`` extra keys of zeros (values ``pad_value``) stand for what an unmasked tile sees
    past the end of K and V. Rows that see no key give 0.
    """
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    T, S = q.shape[0], k.shape[0]
    k = np.concatenate([k, np.zeros((pad_keys, k.shape[1]))])
    v = np.concatenate([v, np.full((pad_keys, v.shape[1]), pad_value)])
    s = q @ k.T * scale
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


def _stored_past_the_end(T: int) -> str:
    return (
        f"your kernel wrote to the memory past the last of the T = {T} rows of O (the check left a "
        "marker value there, and it changed)"
    )


def _read_q_past_the_end(T: int) -> str:
    return f"your kernel read the memory past the last of the T = {T} rows of Q"


@contextlib.contextmanager
def _reads_watched(lo: int, hi: int) -> Iterator[list[bool] | None]:
    """In Triton's interpreter, note in the yielded list whether a load reads an address in [lo, hi).

    An unmasked load of Q at a ragged edge reads rows that only feed output rows a masked store
    drops, so no output shows it: the check watches the addresses the interpreter's loads read.
    Yields None (nothing watched) on a GPU, or where this Triton's interpreter is built otherwise.
    """
    builder = original = None
    if _triton()[2]:  # interpreted: watch its loads (compiled for a GPU there is nothing to patch)
        try:
            from triton.runtime import interpreter

            builder = interpreter.interpreter_builder
            original = builder.create_masked_load
        except (ImportError, AttributeError):
            builder = None
    if builder is None:
        yield None
        return
    hits: list[bool] = []

    def watched(ptrs, mask, *args, **kwargs):
        try:
            addresses, read = np.broadcast_arrays(np.asarray(ptrs.data), np.asarray(mask.data, dtype=bool))
            if np.any(read & (addresses >= lo) & (addresses < hi)):
                hits.append(True)
        except Exception:  # an interpreter built otherwise: watch nothing, never break the load
            pass
        return original(ptrs, mask, *args, **kwargs)

    was_own = "create_masked_load" in vars(builder)
    builder.create_masked_load = watched
    try:
        yield hits
    finally:
        if was_own:
            builder.create_masked_load = original
        else:
            del builder.create_masked_load


def _tile_mistakes(T: int, S: int, is_causal: bool, scale: float) -> list[Mistake]:
    pad = BLOCK * -(-S // BLOCK) - S  # keys a block-wide load reads past the end
    ragged_t = T % BLOCK != 0
    usual = 1.0 / np.sqrt(D_SMALL)

    def reads_past_the_end(q, k, v, c, sc):
        if pad:
            raise ReadPastTheEnd(_past_the_end(S))
        return _attention(q, k, v, c, sc)  # nothing lies past the end of a whole block

    def stores_past_the_end(q, k, v, c, sc):
        if ragged_t:
            raise StoredPastTheEnd(_stored_past_the_end(T))
        return _attention(q, k, v, c, sc)

    def reads_q_past_the_end(q, k, v, c, sc):
        if ragged_t:
            raise ReadQPastTheEnd(_read_q_past_the_end(T))
        return _attention(q, k, v, c, sc)

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
            lambda q, k, v, c, sc: _attention(q, k, v, c, sc, pad_keys=pad, pad_value=0.0),
        ),
        Mistake(
            "a store past the last row (unmasked tl.store)",
            f"T = {T} is not a multiple of BLOCK_M = {BLOCK}: the last program's block of rows "
            "reaches past the end of O, and an unmasked tl.store writes those rows into whatever "
            "lies after O (on a GPU another tensor's data, or a fault). Store with "
            "mask=offs_m[:, None] < T.",
            stores_past_the_end,
        ),
        Mistake(
            "Q loaded without a mask at the ragged edge",
            f"T = {T} is not a multiple of BLOCK_M = {BLOCK}: the last block of queries reaches past "
            "the end of Q, and your load read the rows past it (the check watched the addresses "
            "your loads read in the interpreter). Those rows feed only output rows that a masked "
            "store drops, so the output looks right here, but on a GPU the read may touch memory "
            "that is not yours (a fault). Load Q with mask=offs_m[:, None] < T, other=0.0.",
            reads_q_past_the_end,
        ),
        Mistake(
            "a hard-coded scale instead of the scale argument",
            f"the check passed scale = {scale:g}, but your scores were multiplied by "
            f"1/sqrt(HEAD_DIM) = {usual:g}: use the scale argument, s = tl.dot(q, tl.trans(k)) * "
            "scale. 1/sqrt(d) is only the usual choice; the caller decides (a model may fold its "
            "own scale in, or pass log2(e) / sqrt(d) for exp2).",
            lambda q, k, v, c, sc: _attention(q, k, v, c, usual),
        ),
        Mistake(
            "the scores not multiplied by scale",
            f"softmax(scale * Q K^T) needs the scores multiplied by scale (here {scale:g}) before "
            "the maximum and the exponentials: s = tl.dot(q, tl.trans(k)) * scale.",
            lambda q, k, v, c, sc: _attention(q, k, v, c, 1.0),
        ),
        Mistake(
            "a causal off-by-one at block edges (the diagonal block skipped)",
            "the key loop stops before the block that holds the diagonal, so each query misses "
            "the keys of its own block: loop to min(S, start_m + BLOCK_M), and mask that block "
            "with offs_n <= offs_m.",
            lambda q, k, v, c, sc: _attention(
                q, k, v, c, sc, keys_seen=lambda i, j: j < (i // BLOCK) * BLOCK
            ),
        ),
        Mistake(
            "a causal off-by-one (a query cannot see its own key)",
            "query i must see keys j <= i, the diagonal included: mask with offs_n[None, :] <= "
            "offs_m[:, None], not <.",
            lambda q, k, v, c, sc: _attention(q, k, v, c, sc, keys_seen=lambda i, j: j < i),
        ),
        Mistake(
            "float32 tl.dot left at TF32 on a GPU",
            "on a GPU a float32 tl.dot rounds its inputs to TF32 (10 mantissa bits) unless told "
            "otherwise, so results differ from float32 by about 1e-3. Pass "
            'input_precision="ieee" to every tl.dot. (The interpreter ignores the argument: '
            "the check read your kernel's source and computed what a GPU would return.)",
            lambda q, k, v, c, sc: _attention(_to_tf32(q), _to_tf32(k), _to_tf32(v), c, sc),
        ),
    ]


def flash_tile(kernel: Any, raise_on_fail: bool = False) -> CheckResult:
    """Check a ``@triton.jit`` kernel computing one block of FlashAttention's forward.

    ``kernel(Q, K, V, O, T, S, scale, IS_CAUSAL, BLOCK_M, BLOCK_N, HEAD_DIM)``: Q, O (T, d) and
    K, V (S, d), contiguous float32; program ``tl.program_id(0)`` writes rows
    [pid * BLOCK_M, (pid + 1) * BLOCK_M) of O = softmax(scale * Q K^T) V, top-left causal when
    IS_CAUSAL. The check uses BLOCK_M = BLOCK_N = 16 and d = 16, and a scale other than
    1/sqrt(d) in two of its three cases.

    Each tensor lies at the start of a longer buffer. Past Q, K and V the buffer holds NaN, so an
    unmasked load of K or V poisons the output; past O it holds a marker that must be left as it
    is, so an unmasked store is seen. An unmasked load of Q poisons only rows that a masked store
    drops: in the interpreter the check watches the addresses the loads read instead.
    """
    import torch

    def launch(q, k, v, is_causal, scale, past_k, past_v):
        """O's first T rows, whether the rows past them changed, and whether Q was read past T
        (None where that cannot be watched)."""
        T, S = q.shape[0], k.shape[0]
        extra = 2 * BLOCK  # memory past each tensor's end, filled as a GPU's neighbours might be
        qb = torch.full((T + extra, D_SMALL), float("nan"))
        kb = torch.full((S + extra, D_SMALL), past_k)
        vb = torch.full((S + extra, D_SMALL), past_v)
        ob = torch.zeros(T + extra, D_SMALL)
        ob[T:] = PAST_O
        qb[:T], kb[:S], vb[:S] = (torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in (q, k, v))
        if dots_left_at_tf32(kernel):  # what a GPU would read
            qb, kb, vb = (torch.from_numpy(_to_tf32(x.numpy())) for x in (qb, kb, vb))
        qb, kb, vb, ob = (x.to(_device()) for x in (qb, kb, vb, ob))
        grid = (-(-T // BLOCK),)
        q_end = qb.data_ptr() + T * D_SMALL * qb.element_size()
        with _reads_watched(q_end, qb.data_ptr() + qb.numel() * qb.element_size()) as q_reads:
            _launch(
                kernel,
                grid,
                qb[:T],
                kb[:S],
                vb[:S],
                ob[:T],
                T,
                S,
                scale,
                IS_CAUSAL=is_causal,
                BLOCK_M=BLOCK,
                BLOCK_N=BLOCK,
                HEAD_DIM=D_SMALL,
            )
        stored_past = not bool(torch.all(ob[T:] == PAST_O))  # NaN written there counts too
        return ob[:T].cpu().numpy(), stored_past, (None if q_reads is None else bool(q_reads))

    def run(q, k, v, is_causal, scale):
        T, S = q.shape[0], k.shape[0]
        out, stored_past, read_q_past = launch(q, k, v, is_causal, scale, float("nan"), float("nan"))
        if np.isnan(out).any() and not np.isnan(launch(q, k, v, is_causal, scale, 0.0, POISON_V)[0]).any():
            raise ReadPastTheEnd(_past_the_end(S))
        if stored_past:
            raise StoredPastTheEnd(_stored_past_the_end(T))
        if read_q_past:
            raise ReadQPastTheEnd(_read_q_past_the_end(T))
        # A row that sees no key (a causal off-by-one) divides 0 by 0; the reference gives 0 there.
        return np.nan_to_num(out, nan=0.0)

    r = np.random.default_rng(1234)
    usual = 1.0 / np.sqrt(D_SMALL)
    shapes = [
        (20, 27, False, 0.3, "T=20, S=27: ragged, scale 0.3"),
        (32, 32, True, usual, "T=S=32, causal: block edges, scale 1/sqrt(16)"),
        (40, 23, True, 0.45, "T=40, S=23, causal, ragged, scale 0.45"),
    ]
    cases = []
    for T, S, c, scale, label in shapes:
        q, k, v = (r.normal(size=(n, D_SMALL)).astype(np.float32) for n in (T, S, S))
        expected = _attention(q, k, v, c, scale)
        cases.append(Case((q, k, v, c, scale), expected, label, _tile_mistakes(T, S, c, scale)))
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
