"""The chapter 10 checks accept right answers and name each classic mistake."""

from __future__ import annotations

import pytest
import torch

from selfattention import checks as check
from selfattention import train as tr
from selfattention.checks.model import IGNORE, toy_model


def right_shift(seq):
    return seq[:, :-1], seq[:, 1:]


def right_targets(seq, length):
    t = seq[:, 1:].clone()
    t[:, :length] = IGNORE
    return t


def right_greedy(model_fn, prompt, n_new):
    tokens = prompt
    for _ in range(n_new):
        nxt = model_fn(tokens)[:, -1].argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, nxt], 1)
    return tokens


def test_checks_accept_right_answers_and_the_library():
    assert check.lm_shift(right_shift, raise_on_fail=True)
    assert check.lm_shift(tr.shift, raise_on_fail=True)
    assert check.answer_targets(right_targets, raise_on_fail=True)
    assert check.answer_targets(tr.answer_targets, raise_on_fail=True)
    assert check.greedy_generate(right_greedy, raise_on_fail=True)


def test_ignore_matches_the_library():
    assert IGNORE == tr.IGNORE


LM_SHIFT_MISTAKES = [
    (lambda s: (s, s), "no shift (targets = inputs = seq)"),
    (lambda s: (s[:, 1:], s[:, :-1]), "the shift the wrong way round"),
    (lambda s: (s[:, :-1], s[:, :-1]), "targets equal to the inputs"),
]


def _masked(seq, length, start, shifted=True, fill=IGNORE):
    t = (seq[:, 1:] if shifted else seq[:, :-1]).clone()
    t[:, :start] = fill
    return t


ANSWER_TARGETS_MISTAKES = [
    (lambda s, n: _masked(s, n, n, shifted=False), "targets not shifted"),
    (lambda s, n: _masked(s, n, n - 1), "the separator kept as a target"),
    (lambda s, n: _masked(s, n, n + 1), "the first answer digit hidden"),
    (lambda s, n: torch.cat([s[:, 1 : n + 1], torch.full_like(s[:, n + 1 :], IGNORE)], 1),
     "the mask inverted"),
    (lambda s, n: _masked(s, n, n, fill=0), "hidden targets set to 0"),
    (lambda s, n: _targets_in_place(s, n), "`seq` changed in place"),
]


def _targets_in_place(seq, length):
    """Right values, but written through a view into the caller's batch (no .clone())."""
    t = seq[:, 1:]
    t[:, :length] = IGNORE
    return t


def test_a_function_that_writes_into_the_batch_is_named():
    """run_check hands each case a private copy, so only a guard can see the batch change."""
    result = check.answer_targets(_targets_in_place)
    assert not result.passed and result.mistake == "`seq` changed in place"
    assert "seq[:, 1:].clone()" in result.message
    assert check.answer_targets(right_targets).passed  # a .clone() first: not flagged


def first_position(model_fn, prompt, n_new):
    tokens = prompt
    for _ in range(n_new):
        tokens = torch.cat([tokens, model_fn(tokens)[:, 0].argmax(-1, keepdim=True)], 1)
    return tokens


def no_feedback(model_fn, prompt, n_new):
    nxt = model_fn(prompt)[:, -1].argmax(-1, keepdim=True)
    return torch.cat([prompt] + [nxt] * n_new, 1)


def only_new(model_fn, prompt, n_new):
    return right_greedy(model_fn, prompt, n_new)[:, prompt.shape[1]:]


GREEDY_MISTAKES = [
    (first_position, "the first position's prediction used"),
    (no_feedback, "generated tokens not fed back"),
    (only_new, "only the new tokens returned"),
]

# Registries read by tests/test_checks.py, whose coverage tests require every declared mistake of
# every check to have a wrong implementation somewhere.
CORRECT = {"lm_shift": right_shift, "answer_targets": right_targets, "greedy_generate": right_greedy}
MISTAKES = (
    [("lm_shift", m, f) for f, m in LM_SHIFT_MISTAKES]
    + [("answer_targets", m, f) for f, m in ANSWER_TARGETS_MISTAKES]
    + [("greedy_generate", m, f) for f, m in GREEDY_MISTAKES]
)


def test_unwritten_exercise_stops_with_the_hint():
    def todo(seq):
        raise NotImplementedError("shift by one")

    with pytest.raises(NotImplementedError, match="shift by one"):
        check.lm_shift(todo)


def test_toy_model_is_causal():
    idx = torch.tensor([[1, 2, 3, 4]])
    other = torch.tensor([[1, 2, 6, 0]])
    assert torch.equal(toy_model(idx)[:, :2], toy_model(other)[:, :2])
    assert repr(toy_model) == "toy_model"
