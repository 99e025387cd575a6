"""Tests of the exercise checks (``selfattention.checks``).

For every check:

* a correct implementation passes (``CORRECT``);
* every classic mistake the check knows is caught and named: ``MISTAKES`` holds one deliberately
  wrong implementation per mistake, written the way a learner would write it (not by calling the
  check's own model of the mistake), and the test asserts ``result.mistake`` and that the message
  shows the input, the expected and the obtained values;
* ``test_every_mistake_has_a_test`` reads the mistakes each check declares and fails if one has no
  entry in ``MISTAKES`` (here, or in the registries of the same form of another
  ``tests/test_checks_*.py``), so a new check or a new mistake cannot land untested.

Then the machinery (``_core``): a non-callable, a wrong signature, an exception inside the
learner's function, a stub raising ``NotImplementedError``, the JSON log, ``raise_on_fail``.

Adding a check: add its correct implementation to ``CORRECT`` and one ``MISTAKES`` row per mistake.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from selfattention import checks as check
from selfattention.checks import CheckError, _core

# ---------------------------------------------------------------------------------------------
# Correct implementations, written from scratch (not by calling the library).
# ---------------------------------------------------------------------------------------------


def _softmax_list(scores):
    m = max(scores)
    if m == -math.inf:  # every score masked
        return [0.0] * len(scores)
    e = [math.exp(s - m) for s in scores]
    total = sum(e)
    return [x / total for x in e]


def _attention_row(q, K, V):
    d_k = len(q)
    scores = [sum(a * b for a, b in zip(q, k)) / math.sqrt(d_k) for k in K]
    w = _softmax_list(scores)
    return [sum(w[j] * V[j][c] for j in range(len(V))) for c in range(len(V[0]))]


def _softmax(x, axis=-1):
    x = np.asarray(x, dtype=float)
    m = x.max(axis=axis, keepdims=True)
    m = np.where(np.isneginf(m), 0.0, m)  # a fully masked row: exp(-inf) = 0 everywhere
    e = np.exp(x - m)
    s = e.sum(axis=axis, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0)


def _scores(Q, K):
    return Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])


def _attention(Q, K, V):
    return _softmax(_scores(Q, K)) @ V


def _sinusoidal(T, d_model):
    pe = np.zeros((T, d_model))
    pos = np.arange(T)[:, None]
    freq = 1.0 / 10000 ** (np.arange(0, d_model, 2) / d_model)
    pe[:, 0::2] = np.sin(pos * freq)
    pe[:, 1::2] = np.cos(pos * freq)
    return pe


def _split_heads(x, num_heads):
    B, T, d_model = x.shape
    return x.view(B, T, num_heads, d_model // num_heads).transpose(1, 2)


def _mha(x, W_q, W_k, W_v, W_o, num_heads, scale_by=None, split=_split_heads):
    q, k, v = (split(x @ W, num_heads) for W in (W_q, W_k, W_v))  # (B, H, T, d_head)
    d = q.shape[-1] if scale_by is None else scale_by
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    out = (w @ v).transpose(1, 2).reshape(x.shape)  # (B, T, d_model)
    return out @ W_o


def _masked_softmax(scores, mask):
    return _softmax(np.where(mask, scores, -np.inf))


def _kv_step(q, k, v, K_cache, V_cache):
    K = torch.cat([K_cache, k], dim=2)  # (B, H, S + 1, d)
    V = torch.cat([V_cache, v], dim=2)
    w = torch.softmax(q @ K.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ V, K, V


def _flops(B, H, T, S, d, causal):
    f = 2 * 2 * B * H * T * S * d  # two matmuls, a multiply-add is two FLOPs
    return f // 2 if causal else f


def _online_update(m, l, acc, s, v, rescale=True):
    m_new = np.maximum(m, s.max(axis=-1))
    corr = np.exp(m - m_new) if rescale else np.ones_like(m)
    p = np.exp(s - m_new[:, None])
    return m_new, l * corr + p.sum(axis=-1), acc * corr[:, None] + p @ v


def _mha_params(d_model, num_heads, bias):
    return 4 * d_model * d_model + (4 * d_model if bias else 0)


CORRECT = {
    "dot": lambda a, b: sum(x * y for x, y in zip(a, b)),
    "softmax_list": _softmax_list,
    "attention_row": _attention_row,
    "softmax": _softmax,
    "scores": _scores,
    "attention": _attention,
    "projections": lambda X, W_q, W_k, W_v: (X @ W_q, X @ W_k, X @ W_v),
    "sinusoidal": _sinusoidal,
    "split_heads": _split_heads,
    "multihead_attention": _mha,
    "causal_mask": lambda T: torch.ones(T, T, dtype=torch.bool).tril(),
    "masked_softmax": _masked_softmax,
    "kv_step": _kv_step,
    "attention_flops": _flops,
    "online_softmax_update": _online_update,
    # Checks added by the chapter authors after the first fifteen.
    "shuffled_weights": lambda A, perm: np.asarray(A)[perm][:, perm],
    "merge_heads": lambda x: x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1),
    "mha_parameter_count": _mha_params,
}

# ---------------------------------------------------------------------------------------------
# Wrong implementations: (check, the mistake it must name, the wrong function).
# ---------------------------------------------------------------------------------------------


def _naive_softmax_list(scores):  # no max subtraction, pure Python: math.exp(1000) overflows
    e = [math.exp(s) for s in scores]
    return [x / sum(e) for x in e]


def _naive_softmax_list_numpy(scores):  # no max subtraction with NumPy: inf / inf = NaN
    e = np.exp(np.asarray(scores, dtype=float))
    return list(e / e.sum())


def _softmax_list_no_masked_row(scores):  # max subtracted, fully masked rows not handled
    m = max(scores)
    e = [math.exp(s - m) if s - m == s - m else math.nan for s in scores]
    total = sum(e)
    return [x / total for x in e]


def _softmax_list_unnormalised(scores):
    m = max(scores)
    return [math.exp(s - m) for s in scores]


def _row_with(scale, return_weights=False):
    def row(q, K, V):
        scores = [sum(a * b for a, b in zip(q, k)) * scale(len(q)) for k in K]
        w = _softmax_list(scores)
        if return_weights:
            return w
        return [sum(w[j] * V[j][c] for j in range(len(V))) for c in range(len(V[0]))]

    return row


def _softmax_no_max(x):
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_no_masked_row(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_axis0(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _softmax_global(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def _attention_columns(Q, K, V):  # softmax over the keys' column (axis=-2)
    return _softmax(_scores(Q, K), axis=-2) @ V


def _attention_batch_T(Q, K, V):  # K.T is right for 2-D arrays only
    return _softmax(Q @ K.T / np.sqrt(Q.shape[-1])) @ V


def _sinusoidal_swapped(T, d_model):
    pe = _sinusoidal(T, d_model)
    pe[:, 0::2], pe[:, 1::2] = pe[:, 1::2].copy(), pe[:, 0::2].copy()
    return pe


def _sinusoidal_unpaired(T, d_model):
    pe = np.zeros((T, d_model))
    for pos in range(T):
        for i in range(d_model):
            angle = pos / 10000 ** (i / d_model)  # i, where 2i (shared by the pair) belongs
            pe[pos, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    return pe


def _split_plain_view(x, num_heads):
    B, T, d_model = x.shape
    return x.view(B, num_heads, T, d_model // num_heads)


def _split_dhead_first(x, num_heads):
    B, T, d_model = x.shape
    return x.view(B, T, d_model // num_heads, num_heads).permute(0, 3, 1, 2)


def _split_no_transpose(x, num_heads):
    B, T, d_model = x.shape
    return x.view(B, T, num_heads, d_model // num_heads)


def _mha_transposed(x, W_q, W_k, W_v, W_o, num_heads):
    return _mha(x, W_q.T, W_k.T, W_v.T, W_o.T, num_heads)


def _masked_softmax_multiply(scores, mask):  # "hides" scores by multiplying: 0 * -inf = NaN
    hidden = scores * np.where(mask, 1.0, -np.inf)
    e = np.exp(hidden - hidden.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _kv_step_no_append(q, k, v, K_cache, V_cache):
    w = torch.softmax(q @ K_cache.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ V_cache


def _kv_step_is_causal(q, k, v, K_cache, V_cache):
    K, V = torch.cat([K_cache, k], dim=2), torch.cat([V_cache, v], dim=2)
    return torch.nn.functional.scaled_dot_product_attention(q, K, V, is_causal=True)


def _causal_no_diagonal(T):
    return torch.ones(T, T, dtype=torch.bool).tril(diagonal=-1)


MISTAKES = [
    # dot
    ("dot", "an elementwise product that was not summed", lambda a, b: [x * y for x, y in zip(a, b)]),
    ("dot", "a sum of the entries instead of their products",
     lambda a, b: sum(x + y for x, y in zip(a, b))),
    # softmax_list
    ("softmax_list", "no max subtraction (overflow)", _naive_softmax_list),
    ("softmax_list", "no max subtraction (overflow)", _naive_softmax_list_numpy),
    ("softmax_list", "a whole row of -inf giving NaN", _softmax_list_no_masked_row),
    ("softmax_list", "exponentials that were not normalised", _softmax_list_unnormalised),
    # attention_row
    ("attention_row", "missing 1/sqrt(d_k) scaling", _row_with(lambda d: 1.0)),
    ("attention_row", "dividing by d_k instead of sqrt(d_k)", _row_with(lambda d: 1.0 / d)),
    ("attention_row", "weights returned instead of the output",
     _row_with(lambda d: 1.0 / math.sqrt(d), return_weights=True)),
    # softmax
    ("softmax", "no max subtraction (overflow)", _softmax_no_max),
    ("softmax", "a whole row of -inf giving NaN", _softmax_no_masked_row),
    ("softmax", "softmax over the wrong axis", _softmax_axis0),
    ("softmax", "a sum over the whole array", _softmax_global),
    # scores
    ("scores", "missing 1/sqrt(d_k) scaling", lambda Q, K: Q @ K.T),
    ("scores", "dividing by d_k instead of sqrt(d_k)", lambda Q, K: Q @ K.T / Q.shape[-1]),
    ("scores", "K Q^T instead of Q K^T (transposed scores)",
     lambda Q, K: K @ Q.T / np.sqrt(Q.shape[-1])),
    # attention
    ("attention", "softmax over the wrong axis", _attention_columns),
    ("attention", "missing 1/sqrt(d_k) scaling",
     lambda Q, K, V: _softmax(Q @ np.swapaxes(K, -1, -2)) @ V),
    ("attention", "K.T on a batch (transposes the batch axes too)", _attention_batch_T),
    # projections
    ("projections", "a transposed projection", lambda X, W_q, W_k, W_v: (X @ W_q.T, X @ W_k.T, X @ W_v.T)),
    ("projections", "W_k and W_q swapped", lambda X, W_q, W_k, W_v: (X @ W_k, X @ W_q, X @ W_v)),
    # sinusoidal
    ("sinusoidal", "sin and cos swapped", _sinusoidal_swapped),
    ("sinusoidal", "an exponent of i/d_model instead of 2i/d_model", _sinusoidal_unpaired),
    # split_heads
    ("split_heads", "heads split in the wrong order (a plain view)", _split_plain_view),
    ("split_heads", "features split as (d_head, H) instead of (H, d_head)", _split_dhead_first),
    ("split_heads", "a missing transpose", _split_no_transpose),
    # multihead_attention
    ("multihead_attention", "scaling by d_model instead of d_head",
     lambda x, a, b, c, o, h: _mha(x, a, b, c, o, h, scale_by=x.shape[-1])),
    ("multihead_attention", "heads split in the wrong order (a plain view)",
     lambda x, a, b, c, o, h: _mha(x, a, b, c, o, h, split=_split_plain_view)),
    ("multihead_attention", "a transposed projection", _mha_transposed),
    # causal_mask
    ("causal_mask", "an inverted mask (True = hide)",
     lambda T: torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)),
    ("causal_mask", "the diagonal left out", _causal_no_diagonal),
    ("causal_mask", "the upper triangle (future allowed, past hidden)",
     lambda T: torch.ones(T, T, dtype=torch.bool).triu()),
    # masked_softmax
    ("masked_softmax", "an inverted mask", lambda s, m: _softmax(np.where(m, -np.inf, s))),
    ("masked_softmax", "NaN from 0 * -inf", _masked_softmax_multiply),
    ("masked_softmax", "a whole row of -inf giving NaN",
     lambda s, m: _softmax_no_masked_row(np.where(m, s, -np.inf))),
    ("masked_softmax", "masked positions set to 0 instead of -inf",
     lambda s, m: _softmax(np.where(m, s, 0.0))),
    # kv_step
    ("kv_step", "the new key and value not appended", _kv_step_no_append),
    ("kv_step", "is_causal=True with one query (top-left alignment)", _kv_step_is_causal),
    # attention_flops
    ("attention_flops", "half the FLOPs (multiply-adds counted once, or one matmul forgotten)",
     lambda B, H, T, S, d, c: _flops(B, H, T, S, d, c) // 2),
    ("attention_flops", "the causal mask not halving the work",
     lambda B, H, T, S, d, c: 4 * B * H * T * S * d),
    ("attention_flops", "batch or heads forgotten", lambda B, H, T, S, d, c: _flops(1, 1, T, S, d, c)),
    # online_softmax_update
    ("online_softmax_update", "the old sums not rescaled",
     lambda m, l, a, s, v: _online_update(m, l, a, s, v, rescale=False)),
    # shuffled_weights
    ("shuffled_weights", "only the rows permuted", lambda A, p: np.asarray(A)[p]),
    ("shuffled_weights", "only the columns permuted", lambda A, p: np.asarray(A)[:, p]),
    ("shuffled_weights", "the inverse permutation",
     lambda A, p: np.asarray(A)[np.argsort(p)][:, np.argsort(p)]),
    ("shuffled_weights", "unchanged weights", lambda A, p: np.asarray(A).copy()),
    # merge_heads
    ("merge_heads", "a plain reshape without the transpose",
     lambda x: x.reshape(x.shape[0], x.shape[2], -1)),
    ("merge_heads", "features merged as (d_head, H) instead of (H, d_head)",
     lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1)),
    # mha_parameter_count
    ("mha_parameter_count", "the output projection forgotten",
     lambda d, h, b: 3 * d * d + (3 * d if b else 0)),
    ("mha_parameter_count", "biases forgotten", lambda d, h, b: 4 * d * d),
    ("mha_parameter_count", "biases counted although bias=False", lambda d, h, b: 4 * d * d + 4 * d),
    ("mha_parameter_count", "one full d_model x d_model projection per head",
     lambda d, h, b: h * (3 * d * d + (3 * d if b else 0)) + d * d + (d if b else 0)),
    ("mha_parameter_count", "one d_head x d_head projection per head",
     lambda d, h, b: h * 3 * ((d // h) ** 2 + ((d // h) if b else 0)) + d * d + (d if b else 0)),
]

CHECK_NAMES = sorted(n for n in check.__all__ if n not in ("CheckError", "CheckResult"))


def _registries() -> tuple[list, list]:
    """Every right and wrong implementation: these files' and those of ``tests/test_checks_*.py``.

    A chapter keeps the implementations for its own checks in a file of its own (e.g.
    test_checks_beyond.py), as ``CORRECT = {name: fn}``, optionally ``MORE_CORRECT = [(name, fn)]``
    and ``MISTAKES = [(name, mistake, fn)]``; the tests below run them all, once. A file whose
    checks cannot run on this machine (Triton's, on macOS) lists them as ``UNAVAILABLE = {name:
    reason}`` instead, and their tests skip with that reason.
    """
    correct, mistakes = list(CORRECT.items()), list(MISTAKES)
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
    assert not missing, f"add a correct implementation to CORRECT in tests/test_checks.py: {missing}"


@pytest.mark.parametrize("name", CHECK_NAMES)
def test_every_mistake_has_a_test(name, monkeypatch, capsys):
    if name in UNAVAILABLE:
        pytest.skip(UNAVAILABLE[name])
    correct = dict(ALL_CORRECT)
    if name not in correct:
        pytest.fail(f"check {name!r} has no entry in CORRECT (tests/test_checks.py)")
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
    check.dot(CORRECT["dot"])
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
    check.dot(CORRECT["dot"])
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
