"""Tests of the exercise checks (``selfattention.checks``).

Each check module ``selfattention/checks/<module>.py`` has its right and wrong answers in
``tests/test_checks_<module>.py``: ``CORRECT = {name: fn}``, optionally ``MORE_CORRECT = [(name,
fn)]``, and ``MISTAKES = [(name, mistake, wrong_fn)]``, one deliberately wrong implementation per
mistake, written the way a learner would write it (not by calling the check's own model of the
mistake). This file runs them all:

* every correct implementation passes;
* every wrong one is caught and named: the test asserts ``result.mistake`` and that the message
  shows the input, the expected and the obtained values;
* ``test_every_mistake_has_a_test`` reads the mistakes each check declares and fails if one has no
  entry in any ``MISTAKES``, so a new check or a new mistake cannot land untested.

Then the machinery (``_core``): a non-callable, a wrong signature, an exception inside the
learner's function, a stub raising ``NotImplementedError`` (and the frames its traceback shows),
the JSON log, ``raise_on_fail``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_checks_foundations import CORRECT as FOUNDATIONS
from test_checks_foundations import _attention, _scores, _softmax_axis0, _softmax_no_max
from test_checks_foundations import _np_softmax as _softmax

from selfattention import checks as check
from selfattention.checks import CheckError, _core

CHECK_NAMES = sorted(n for n in check.__all__ if n[0].islower())  # the checks themselves


def _registries() -> tuple[list, list]:
    """Every right and wrong implementation, from the ``tests/test_checks_<module>.py`` files.

    Each holds the implementations for the checks of one module, as ``CORRECT = {name: fn}``,
    optionally ``MORE_CORRECT = [(name, fn)]`` and ``MISTAKES = [(name, mistake, fn)]``; the tests
    below run them all, once.
    A file whose checks cannot run on this machine (Triton's, on macOS) lists them as
    ``UNAVAILABLE = {name: reason}`` instead, and their tests skip with that reason.
    """
    correct, mistakes = [], []
    for path in sorted(Path(__file__).parent.glob("test_checks_*.py")):
        module = importlib.import_module(path.stem)
        correct += list(getattr(module, "CORRECT", {}).items())
        correct += list(getattr(module, "MORE_CORRECT", []))
        mistakes += list(getattr(module, "MISTAKES", []))
        UNAVAILABLE.update(getattr(module, "UNAVAILABLE", {}))
    return correct, mistakes


UNAVAILABLE: dict[str, str] = {}
ALL_CORRECT, ALL_MISTAKES = _registries()


def _run(name, fn, capsys=None):
    result = getattr(check, name)(fn)
    printed = capsys.readouterr().out if capsys is not None else ""
    return result, printed


@pytest.mark.parametrize(
    "name, fn", [pytest.param(n, f, id=f"{n}-{i}") for i, (n, f) in enumerate(ALL_CORRECT)]
)
def test_check_passes_a_correct_implementation(name, fn, capsys):
    result, printed = _run(name, fn, capsys)
    assert result.passed, result.message
    assert bool(result) and result.mistake is None
    assert printed.startswith(f"✅ {name}: correct on all") and printed.count("\n") == 1


@pytest.mark.parametrize(
    "name, mistake, wrong",
    [pytest.param(*row, id=f"{row[0]}: {row[1]} [{i}]") for i, row in enumerate(ALL_MISTAKES)],
)
def test_check_names_the_mistake(name, mistake, wrong, capsys):
    result, printed = _run(name, wrong, capsys)
    assert not result.passed and not bool(result)
    assert result.mistake == mistake, result.message
    # In words, with the small example: input, expected and obtained values.
    assert mistake in result.message
    for part in ("\n  input", "\n  expected: ", "\n  obtained: "):
        assert part in result.message, result.message
    assert printed.startswith(f"❌ {name}: looks like {mistake}") and "Traceback" not in printed


def _declared_mistakes(name, correct_fn, monkeypatch) -> set[str]:
    """The names of the mistakes that check ``name`` declares (shared and per case)."""
    seen: set[str] = set()

    def spy(check_name, fn, cases, signature, mistakes=(), **kw):
        seen.update(m.name for m in mistakes)
        for case in cases:
            seen.update(m.name for m in case.mistakes)
        return _core.run_check(check_name, fn, cases, signature, mistakes, **kw)

    fn = getattr(check, name)
    monkeypatch.setattr(f"{fn.__module__}.run_check", spy)
    fn(correct_fn)
    return seen


def test_every_check_has_a_correct_implementation():
    missing = sorted(set(CHECK_NAMES) - {n for n, _ in ALL_CORRECT} - set(UNAVAILABLE))
    assert not missing, f"add a correct implementation to CORRECT in tests/test_checks_<module>.py: {missing}"


@pytest.mark.parametrize("name", CHECK_NAMES)
def test_every_mistake_has_a_test(name, monkeypatch, capsys):
    if name in UNAVAILABLE:
        pytest.skip(UNAVAILABLE[name])
    correct = dict(ALL_CORRECT)
    if name not in correct:
        pytest.fail(f"check {name!r} has no entry in CORRECT (tests/test_checks_<module>.py)")
    declared = _declared_mistakes(name, correct[name], monkeypatch)
    tested = {m for n, m, _ in ALL_MISTAKES if n == name}
    untested = sorted(declared - tested)
    assert not untested, f"add a wrong implementation to MISTAKES for {name}: {untested}"


# ---------------------------------------------------------------------------------------------
# The machinery: what a learner sees when the function cannot even be run.
# ---------------------------------------------------------------------------------------------


def test_not_callable_is_reported_plainly(capsys):
    x = np.array([[1.0, 2.0]])
    result = check.softmax(_softmax(x))  # the classic slip: the result passed, not the function
    printed = capsys.readouterr().out
    assert not result.passed and result.mistake == "not a usable function"
    assert "Pass the function itself" in result.message and "ndarray" in result.message
    assert printed.startswith("❌ softmax: ") and "Traceback" not in printed


def test_none_is_not_callable_either(capsys):
    result = check.dot(None)
    assert result.mistake == "not a usable function" and "NoneType" in result.message


def test_wrong_signature_is_reported_plainly(capsys):
    def my_softmax(x, axis, temperature):
        return x

    result = check.softmax(my_softmax)
    printed = capsys.readouterr().out
    assert not result.passed and result.mistake == "not a usable function"
    assert "my_softmax(x, axis, temperature)" in result.message and "f(x)" in result.message
    assert "Traceback" not in printed


def test_wrong_signature_of_a_callable_without_a_name(capsys):
    import functools

    result = check.dot(functools.partial(lambda a, b, c: 0.0, c=1.0, b=2.0))
    assert result.mistake == "not a usable function"


def test_an_error_inside_the_learners_function_is_reported(capsys):
    def my_dot(a, b):
        return a[0] * b[0] + a[1] * b[1] + a[7] * b[7]  # IndexError on 3 entries

    result = check.dot(my_dot)
    printed = capsys.readouterr().out
    assert not result.passed and result.mistake == "raised an error"
    assert "IndexError: list index out of range" in result.message
    assert "\n  expected: 32.0" in result.message and "\n  obtained: IndexError" in result.message
    assert "Traceback" not in printed


def test_not_implemented_stops_with_the_hint(tmp_path, monkeypatch, capsys):
    log = tmp_path / "checks.jsonl"
    monkeypatch.setenv("SELFATTENTION_CHECKS_LOG", str(log))

    def my_softmax(x):
        raise NotImplementedError("subtract the row maximum before exp")

    with pytest.raises(NotImplementedError, match="subtract the row maximum before exp"):
        check.softmax(my_softmax)
    assert capsys.readouterr().out == ""  # the exception says it; nothing printed twice
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["check"] == "softmax" and entry["passed"] is False
    assert entry["mistake"] == "not implemented"


def test_json_log(tmp_path, monkeypatch, capsys):
    log = tmp_path / "checks.jsonl"
    monkeypatch.setenv("SELFATTENTION_CHECKS_LOG", str(log))
    check.dot(FOUNDATIONS["dot"])
    check.softmax(_softmax_axis0)
    check.causal_mask(42)
    entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [(e["check"], e["passed"], e["mistake"]) for e in entries] == [
        ("dot", True, None),
        ("softmax", False, "softmax over the wrong axis"),
        ("causal_mask", False, "not a usable function"),
    ]
    assert all(isinstance(e["message"], str) and e["message"] for e in entries)


def test_no_log_without_the_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SELFATTENTION_CHECKS_LOG", raising=False)
    monkeypatch.chdir(tmp_path)
    check.dot(FOUNDATIONS["dot"])
    assert list(tmp_path.iterdir()) == []


def test_raise_on_fail(capsys):
    with pytest.raises(CheckError, match="softmax over the wrong axis"):
        check.softmax(_softmax_axis0, raise_on_fail=True)
    assert check.softmax(_softmax, raise_on_fail=True)


def test_an_in_place_function_cannot_corrupt_the_cases(capsys):
    def my_softmax(x):  # right, but it overwrites its input
        x -= np.where(np.isneginf(x.max(-1, keepdims=True)), 0, x.max(-1, keepdims=True))
        e = np.exp(x)
        s = e.sum(-1, keepdims=True)
        return np.divide(e, s, out=np.zeros_like(e), where=s > 0)

    assert check.softmax(my_softmax).passed


def test_missing_return_is_named(capsys):
    def my_dot(a, b):
        total = sum(x * y for x, y in zip(a, b))  # noqa: F841 (the mistake under test)

    result = check.dot(my_dot)
    assert result.mistake == "returned None (missing return)"
    assert "\n  obtained: None" in result.message


def test_a_tuple_instead_of_the_output_is_named(capsys):
    result = check.attention(lambda Q, K, V: (_attention(Q, K, V), _softmax(_scores(Q, K))))
    assert result.mistake == "a tuple instead of one result"


def test_a_float_mask_is_named(capsys):
    result = check.causal_mask(lambda T: torch.ones(T, T).tril())
    assert result.mistake == "a float mask instead of a boolean one"
    assert "ADDS a float mask" in result.message and "\n  expected: [[ True]]" in result.message


def test_no_numpy_warnings_reach_the_learner(recwarn, capsys):
    check.softmax(_softmax_no_max)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("name", ["multihead_attention", "kv_step", "online_softmax_update"])
def test_checks_try_at_least_three_cases(name, capsys):
    result = getattr(check, name)(dict(ALL_CORRECT)[name])
    n = int(result.message.split("correct on all ")[1].split()[0])
    assert result.passed and n >= 3, result.message


def test_the_wrong_argument_message_names_the_check(capsys):
    result = check.masked_softmax(np.zeros(3))
    assert "check.masked_softmax(my_f), not check.masked_softmax(my_f())" in result.message
    assert "check.x(" not in result.message


def _stub(*args):
    raise NotImplementedError("write me")


@pytest.mark.parametrize(
    "call",
    [
        lambda: check.softmax(_stub),
        lambda: check.kv_step(_stub),
        lambda: check.softmax(_softmax_axis0, raise_on_fail=True),
    ],
)
def test_what_a_check_raises_shows_one_hidden_checker_frame(call, capsys):
    """The traceback holds the caller's frame and one frame of the checker, marked
    ``__tracebackhide__``; the frames down to run_check (about 25 lines in IPython) are gone."""
    with pytest.raises((NotImplementedError, CheckError)) as excinfo:
        call()
    tb, frames = excinfo.value.__traceback__, []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    inside = [f for f in frames if "selfattention" in f.f_code.co_filename]
    assert len(inside) == 1 and inside[0].f_locals.get("__tracebackhide__"), [
        f"{f.f_code.co_filename}:{f.f_code.co_name}" for f in inside
    ]


def test_ipython_shows_the_caller_and_one_checker_frame(capsys):
    ultratb = pytest.importorskip("IPython.core.ultratb")
    try:
        check.softmax(_stub)
    except NotImplementedError as exc:
        text = ultratb.AutoFormattedTB(mode="Context").text(type(exc), exc, exc.__traceback__)
    assert "foundations.py" not in text and text.count("_core.py") == 1, text
    assert "Hint: write me" in text


def test_check_call_re_finds_the_check_calls():
    source = "check.softmax(my_softmax)\nx = check.kv_step (f)\nmycheck.dot(f)\ncheck.softmax"
    assert check.CHECK_CALL_RE.findall(source) == ["softmax", "kv_step"]
