"""The machinery behind the exercise checks.

A check runs the learner's function on a few small cases and compares the result with the
library's answer. When they differ it tries the classic mistakes one by one (each is a small
function computing what a specific wrong implementation would return) and, if one matches, names
it. It never shows a traceback from inside the checker: a function that is not callable, has the
wrong signature or raises is reported in one plain paragraph.

Results are returned as :class:`CheckResult` and, when the environment variable
``SELFATTENTION_CHECKS_LOG`` names a file, appended to it as one JSON line each, for scripts that
read the results of a whole notebook::

    {"check": "softmax", "passed": false, "mistake": "softmax over the wrong axis", "message": "..."}

``mistake`` is null when the check passed; an unwritten exercise (a stub raising
``NotImplementedError``) is logged with ``"mistake": "not implemented"`` before it stops the
notebook.

When ``SELFATTENTION_CHECKS_RAISE=1`` is set (the autograder's kernel gets it from
``tools/nbgrader_plugins.py``), a failing check raises :class:`CheckError` with its message, so that the
check cell fails, scores 0 and shows the named mistake in the feedback.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: A call of a check in a notebook cell, ``check.softmax(my_softmax)``; group 1 is the check's
#: name. The student-version and grading tools find the exercises' checks with it.
CHECK_CALL_RE = re.compile(r"\bcheck\.([A-Za-z_]\w*)\s*\(")

# Set to "1" by the autograder: a failing check then raises instead of only printing.
RAISE_VAR = "SELFATTENTION_CHECKS_RAISE"


@dataclass
class Mistake:
    """A classic mistake: ``compute(*args)`` returns what the mistaken code would return."""

    name: str
    explanation: str
    compute: Callable[..., Any]


@dataclass
class Case:
    """One input for the learner's function and the right answer for it."""

    args: tuple
    expected: Any
    label: str = ""
    # Mistakes that can only be seen on this case (e.g. overflow only at large logits).
    mistakes: Sequence[Mistake] = field(default_factory=tuple)


@dataclass
class CheckResult:
    """What a check found. ``passed`` is True when every case matched."""

    check: str
    passed: bool
    mistake: str | None
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"CheckResult(check={self.check!r}, passed={self.passed}, mistake={self.mistake!r})"

    def _ipython_display_(self) -> None:
        # The check already printed its one-line verdict; as a cell's last value the result shows
        # nothing more, with or without a trailing semicolon (which nbval does not honour).
        return None


class CheckError(AssertionError):
    """Raised by a check only when asked to (``raise_on_fail=True``), e.g. in tests."""


def to_array(x: Any) -> np.ndarray | None:
    """The learner's output as a float64 array (from a list, NumPy array or torch tensor)."""
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            if x.dtype == torch.bool:
                return x.numpy()
            return x.double().numpy()
    except ImportError:  # pragma: no cover
        pass
    try:
        arr = np.asarray(x)
    except Exception:  # ragged lists and other oddities
        return None
    if arr.dtype == bool:
        return arr
    if arr.dtype == object:
        return None
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        return None


def _fmt(x: Any, max_items: int = 24) -> str:
    if isinstance(x, tuple) and x and any(hasattr(p, "shape") for p in x):
        return "(" + ", ".join(_fmt(p, max_items) for p in x) + ")"  # e.g. (dQ, dK, dV)
    arr = to_array(x)
    if arr is None:
        return repr(x)[:200]
    if arr.ndim == 0:
        return repr(x) if isinstance(x, (bool, int, float)) else str(arr.item())
    if arr.size > max_items:
        head = np.array2string(arr.ravel()[:6], precision=4, suppress_small=True)
        return f"<array of shape {arr.shape}, starting {head[:-1]} ...]>"
    return np.array2string(arr, precision=4, suppress_small=True, max_line_width=100)


def _matches(got: np.ndarray | None, want: Any, rtol: float, atol: float) -> bool:
    want_arr = to_array(want)
    if got is None or want_arr is None or got.shape != want_arr.shape:
        return False
    if want_arr.dtype == bool:
        # A mask must really be boolean: torch ADDS a float mask to the scores (see _diagnose).
        return got.dtype == bool and bool(np.array_equal(got, want_arr))
    return bool(np.allclose(got.astype(np.float64), want_arr, rtol=rtol, atol=atol, equal_nan=False))


def _signature_problem(name: str, fn: Any, n_args: int, signature: str) -> str | None:
    if not callable(fn):
        return (
            f"expected a function like `def f{signature}: ...`, but got {type(fn).__name__} "
            f"{_fmt(fn)[:60]}. Pass the function itself, without calling it: "
            f"check.{name}(my_f), not check.{name}(my_f())."
        )
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # builtins without a signature: just try them
    try:
        sig.bind(*range(n_args))
    except TypeError:
        return (
            f"your function's signature is {getattr(fn, '__name__', 'f')}{sig}, but the check "
            "calls it with "
            f"{n_args} argument(s): f{signature}."
        )
    return None


def _call_quietly(f: Callable[..., Any], args: tuple) -> Any:
    """Call ``f`` on a private copy of ``args``, without NumPy's floating-point warnings.

    The copy keeps a function that works in place (``x -= x.max()``) from changing the test
    case that the diagnosis and the following comparisons still need; the warnings ("overflow
    encountered in exp") would only repeat, less clearly, what the check's message explains.
    """
    args = copy.deepcopy(args)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return f(*args)


def _shown(case: Case, obtained: str) -> str:
    """The small example every failure message ends with: input, expected, obtained."""
    where = f" ({case.label})" if case.label else ""

    def line(label: str, text: str) -> str:
        # continuation lines of a printed matrix start under its first bracket
        return f"\n  {label}: " + text.replace("\n", "\n" + " " * (len(label) + 4))

    return (
        line(f"input{where}", ", ".join(_fmt(a) for a in case.args))
        + line("expected", _fmt(case.expected))
        + line("obtained", obtained)
    )


def run_check(
    name: str,
    fn: Any,
    cases: Sequence[Case],
    signature: str,
    mistakes: Sequence[Mistake] = (),
    rtol: float = 1e-5,
    atol: float = 1e-7,
    postprocess: Callable[[Any], Any] | None = None,
    raise_on_fail: bool = False,
    quiet: bool = False,
    parts: Sequence[str] = (),
) -> CheckResult:
    """Run ``fn`` on every case, compare, diagnose, print one message and return the result.

    ``fn`` gets a deep copy of each case's arguments. The first case that fails decides the
    message. With ``parts`` (e.g. ``("dQ", "dK", "dV")``) ``fn`` returns that many arrays, each
    case's ``expected`` is a tuple of them, and each part is compared on its own, so that the
    message names the part that is wrong (and its shape, when that is what is wrong).
    A ``NotImplementedError`` from ``fn`` (an exercise stub) is logged and re-raised with its hint,
    so that "Run all" stops at the first unwritten exercise.
    """
    problem = _signature_problem(name, fn, len(cases[0].args), signature)
    if problem is not None:
        return _finish(name, False, "not a usable function", problem, raise_on_fail, quiet)

    for case in cases:
        all_mistakes = list(case.mistakes) + list(mistakes)
        try:
            got_raw = _call_quietly(fn, case.args)
        except NotImplementedError as exc:
            # An unwritten exercise stops "Run all" here, with its hint, like any unfinished code.
            hint = f" Hint: {exc}" if str(exc) else ""
            text = f"your function is not written yet (it raised NotImplementedError).{hint}"
            _finish(name, False, "not implemented", text, False, True)
            raise NotImplementedError(f"{name}: {text}") from None
        except OverflowError as exc:
            return _finish(
                name,
                False,
                "no max subtraction (overflow)",
                f"looks like no max subtraction (overflow): your function overflowed ({exc}) "
                f"on {case.label or 'large inputs'}: exp of a large number is too big for a "
                "float. Subtract the largest score first: softmax(x) = softmax(x - max(x)), so "
                "every exponent is <= 0." + _shown(case, f"OverflowError: {exc}"),
                raise_on_fail,
                quiet,
            )
        except Exception as exc:  # report the learner's error, not a checker traceback
            msg, mistake = _diagnose_error(case, exc, all_mistakes)
            return _finish(name, False, mistake, msg, raise_on_fail, quiet)
        if parts:
            verdict = _check_parts(case, got_raw, parts, all_mistakes, rtol, atol)
            if verdict is None:
                continue
            return _finish(name, False, verdict[1], verdict[0], raise_on_fail, quiet)
        try:
            got_raw = postprocess(got_raw) if postprocess else got_raw
        except Exception:  # an output of an unexpected form: compare it as it is
            pass
        got = to_array(got_raw)
        if _matches(got, case.expected, rtol, atol):
            continue

        def same_everywhere(m: Mistake) -> bool:
            # Several mistakes can give the same output on one small case (for T = 1 an
            # inverted causal mask and one without its diagonal are both [[False]]): keep the
            # one that also explains the learner's output on the other cases.
            for other in cases:
                try:
                    mine = _call_quietly(fn, other.args)
                    mine = postprocess(mine) if postprocess else mine
                    wrong = _call_quietly(m.compute, other.args)
                except Exception:
                    continue
                if not _same(to_array(mine), to_array(wrong), rtol, atol):
                    return False
            return True

        msg, mistake = _diagnose(case, got, got_raw, all_mistakes, rtol, atol, same_everywhere)
        return _finish(name, False, mistake, msg, raise_on_fail, quiet)
    return _finish(name, True, None, f"correct on all {len(cases)} test cases.", raise_on_fail, quiet)


def _in_place_message(name: str) -> str:
    return f"your function changed its argument `{name}` in place"


def guard_in_place(fn: Any, names: Sequence[str]) -> Any:
    """``fn`` wrapped to raise ValueError when it writes into one of its first arguments.

    ``run_check`` hands ``fn`` a private copy of each case, so a function that writes into its
    input (``t = seq[:, 1:]; t[:, :n] = -100`` changes ``seq``) would pass, and then corrupt the
    caller's batch in real use. ``names`` are the arguments, in order, that must stay unchanged;
    :func:`in_place_mistake` names the error in the check's message. A non-callable ``fn`` is
    returned as it is, for ``run_check`` to report.
    """
    if not callable(fn):
        return fn

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        before = [copy.deepcopy(a) for a in args[: len(names)]]
        out = fn(*args, **kwargs)
        for name, old, new in zip(names, before, args):
            old_arr, new_arr = to_array(old), to_array(new)
            if old_arr is not None and not np.array_equal(old_arr, new_arr, equal_nan=True):
                raise ValueError(_in_place_message(name))
        return out

    return guarded


def in_place_mistake(name: str, explanation: str) -> Mistake:
    """The mistake that :func:`guard_in_place` reports: ``name`` was written into."""

    def compute(*args: Any) -> Any:
        raise ValueError(_in_place_message(name))

    return Mistake(f"`{name}` changed in place", explanation, compute)


def _mistakes_matching(
    mistakes: Sequence[Mistake], args: tuple, same: Callable[[Any], bool]
) -> list[Mistake]:
    """The mistakes whose output on ``args`` the learner's matches (``same(output)``), in order;
    a mistake that raises on these arguments does not match."""
    found = []
    for m in mistakes:
        try:
            wrong = _call_quietly(m.compute, args)
        except Exception:
            continue
        if same(wrong):
            found.append(m)
    return found


def _part_arrays(x: Any, n: int) -> list[np.ndarray | None] | None:
    """``x`` as a list of ``n`` arrays, or None when it is not a tuple or list of ``n`` items."""
    if isinstance(x, (tuple, list)) and len(x) == n:
        return [to_array(p) for p in x]
    return None


def _check_parts(
    case: Case, got_raw: Any, parts: Sequence[str], mistakes, rtol: float, atol: float
) -> tuple[str, str] | None:
    """Compare a learner's tuple of results part by part: None if right, else (message, mistake)."""
    names = ", ".join(parts)
    got = _part_arrays(got_raw, len(parts))
    if got is None:
        kind = type(got_raw).__name__
        if isinstance(got_raw, (tuple, list)):
            kind += f" of {len(got_raw)} items"
        return (
            f"your function should return {len(parts)} results, ({names}), but it returned a "
            f"{kind}.{_shown(case, _fmt(got_raw))}",
            "wrong number of results",
        )
    wrong = [p for p, g, w in zip(parts, got, case.expected) if not _matches(g, w, rtol, atol)]
    if not wrong:
        return None
    def listed(items: list[str]) -> str:
        return " and ".join(items) if len(items) <= 2 else ", ".join(items[:-1]) + " and " + items[-1]

    right = [p for p in parts if p not in wrong]
    which = f"{listed(wrong)} {'is' if len(wrong) == 1 else 'are'} wrong"
    which += f", {listed(right)} {'is' if len(right) == 1 else 'are'} right" if right else ""
    def same_parts(wrong: Any) -> bool:
        theirs = _part_arrays(wrong, len(parts))
        return theirs is not None and all(_same(g, t, rtol, atol) for g, t in zip(got, theirs))

    for m in _mistakes_matching(mistakes, case.args, same_parts)[:1]:
        shown = _shown(case, _fmt(tuple(got_raw)))
        return f"looks like {m.name} ({which}): {m.explanation}{shown}", m.name
    i = parts.index(wrong[0])
    one = Case(case.args, case.expected[i], case.label)
    msg, mistake = _diagnose(one, got[i], got_raw[i], (), rtol, atol)
    return f"{which}. {wrong[0]}: {msg}", mistake


def learner_facing(check: Callable[..., CheckResult]) -> Callable[..., CheckResult]:
    """Wrap a public check so that what it raises shows none of the checker's own frames.

    A check raises only on purpose: ``NotImplementedError`` for an unwritten exercise and
    :class:`CheckError` with ``raise_on_fail=True``. Re-raised here with a fresh traceback, the
    exception carries one frame of the checker (this wrapper, whose lines say why it stopped)
    instead of every frame down to :func:`run_check`. ``__tracebackhide__`` hides it in pytest
    and in IPython whenever it is not the last frame (IPython always shows the last one).
    """

    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> CheckResult:
        __tracebackhide__ = True  # noqa: F841 (read by IPython and pytest)
        try:
            return check(*args, **kwargs)
        except (NotImplementedError, CheckError) as exc:
            # The check stopped on purpose: the message below says why and what to do.
            raise exc.with_traceback(None) from None

    return wrapper


def _diagnose_error(case: Case, exc: Exception, mistakes) -> tuple[str, str]:
    """The learner's function raised: name the mistake that raises the same error, if any.

    Some classic mistakes cannot return a wrong value, they crash: ``K.T`` on a 4-D batch
    reverses every axis and the matmul then fails. A mistake whose ``compute`` raises the same
    exception type with the same message is recognised as that mistake.
    """
    obtained = f"{type(exc).__name__}: {exc}"
    for m in mistakes:
        try:
            _call_quietly(m.compute, case.args)
        except Exception as wrong:  # the mistake crashes: the same way?
            if type(wrong) is type(exc) and str(wrong) == str(exc):
                return (
                    f"looks like {m.name}: {m.explanation}\n  Your function raised "
                    f"{obtained}{_shown(case, obtained)}"
                ), m.name
    return (f"your function raised {obtained}{_shown(case, obtained)}"), "raised an error"


def _same(got: np.ndarray | None, wrong: np.ndarray | None, rtol: float, atol: float) -> bool:
    """Whether the learner's output equals a mistake's output (NaN where it has NaN)."""
    if got is None or wrong is None or got.shape != wrong.shape:
        return False
    if got.dtype == bool or wrong.dtype == bool:
        return bool(np.array_equal(got.astype(bool), wrong.astype(bool)))
    return bool(
        np.array_equal(np.isnan(got), np.isnan(wrong))
        and np.allclose(got, wrong, rtol=rtol, atol=atol, equal_nan=True)
    )


def _diagnose(
    case: Case, got, got_raw, mistakes, rtol, atol, same_everywhere: Callable[[Mistake], bool] | None = None
) -> tuple[str, str]:
    want = to_array(case.expected)
    shown = _shown(case, _fmt(got_raw))
    # A float mask with the right pattern is named first: compared as booleans below, it could
    # pass for a mistake (for T=1 a mask and its transpose are equal).
    if (
        want is not None
        and got is not None
        and want.dtype == bool
        and got.dtype != bool
        and got.shape == want.shape
    ):
        if np.array_equal(got.astype(bool), want) and np.isin(got, (0, 1)).all():
            return (
                f"your mask has the right pattern but dtype {got.dtype}, not bool. torch's "
                "scaled_dot_product_attention ADDS a float mask to the scores (adding 0 "
                "or 1 hides nothing): return a boolean tensor (dtype=torch.bool, or "
                f".bool()).{shown}"
            ), "a float mask instead of a boolean one"
    found = _mistakes_matching(mistakes, case.args, lambda wrong: _same(got, to_array(wrong), rtol, atol))
    if len(found) > 1 and same_everywhere is not None:
        found = [m for m in found if same_everywhere(m)] or found
    if found:
        m = found[0]
        return f"looks like {m.name}: {m.explanation}{shown}", m.name
    if got_raw is None:
        return (
            f"your function returned None: did you forget the `return` statement?{shown}",
            "returned None (missing return)",
        )
    if isinstance(got_raw, (tuple, list)) and got_raw and want is not None:
        first = to_array(got_raw[0]) if not isinstance(got_raw[0], (int, float)) else None
        if first is not None and _matches(first, case.expected, rtol, atol):
            return (
                f"your function returned a {type(got_raw).__name__} of {len(got_raw)} "
                f"items whose first item is right; return only that one.{shown}",
                "a tuple instead of one result",
            )
    if got is None:
        return (
            f"your function returned {type(got_raw).__name__}, which is not a list, array or "
            f"tensor of numbers.{shown}"
        ), "wrong type"
    if want is not None and got.shape != want.shape:
        return (f"the shape is wrong: expected {want.shape}, obtained {got.shape}.{shown}", "wrong shape")
    if got.dtype != bool and np.isnan(got).any():
        return (
            f"your output contains NaN (not a number); it usually comes from inf - inf or 0 * inf.{shown}"
        ), "NaN in output"
    if got.dtype != bool and np.isinf(got).any():
        return f"your output contains inf: something overflowed.{shown}", "inf in output"
    if got.dtype == bool:
        wrong = int(np.sum(got != want.astype(bool)))
        return f"{wrong} entries of your mask differ from the expected mask.{shown}", "wrong values"
    worst = float(np.max(np.abs(got - want))) if want is not None else float("nan")
    return f"the numbers differ (largest difference {worst:.3g}).{shown}", "wrong values"


def _finish(name, passed, mistake, message, raise_on_fail, quiet) -> CheckResult:
    result = CheckResult(name, passed, mistake, message)
    text = f"✅ {name}: {message}" if passed else f"❌ {name}: {message}"
    if not quiet:
        print(text)
    log = os.environ.get("SELFATTENTION_CHECKS_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(
                json.dumps(
                    {"check": name, "passed": passed, "mistake": mistake, "message": message},
                    ensure_ascii=False,
                )
                + "\n"
            )
    if not passed and (raise_on_fail or os.environ.get(RAISE_VAR) == "1"):
        raise CheckError(text)
    return result
