"""The checks of chapter 1 (``scores_one_query``, ``weighted_sum``): each passes right answers
written in several ways and names each classic mistake it knows (one test per mistake).

``CORRECT`` and ``MISTAKES`` are also merged into the registries of ``tests/test_checks.py``, whose
generic tests (every check has a right answer, every declared mistake has a test) cover all checks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfattention import checks as check

# ---------------------------------------------------------------------------------------------
# Right answers, written the way a learner would write them.
# ---------------------------------------------------------------------------------------------


def scores_loops(q, K):
    d_k = len(q)
    return [sum(a * b for a, b in zip(q, k)) / math.sqrt(d_k) for k in K]


def scores_numpy(q, K):
    q, K = np.asarray(q), np.asarray(K)  # (d_k,), (S, d_k)
    return K @ q / np.sqrt(q.shape[0])  # (S,)


def scores_torch(q, K):
    """A torch tensor is accepted too."""
    q, K = torch.tensor(q), torch.tensor(K)
    return K @ q / q.shape[0] ** 0.5


def weighted_sum_loops(weights, V):
    out = [0.0] * len(V[0])
    for w, v in zip(weights, V):
        for c in range(len(v)):
            out[c] += w * v[c]
    return out


def weighted_sum_numpy(weights, V):
    return np.asarray(weights) @ np.asarray(V)  # (S,) @ (S, d_v) -> (d_v,)


CORRECT = {
    "scores_one_query": scores_loops,
    "weighted_sum": weighted_sum_loops,
}
MORE_CORRECT = [
    ("scores_one_query", scores_numpy),
    ("scores_one_query", scores_torch),
    ("weighted_sum", weighted_sum_numpy),
    ("weighted_sum", lambda w, V: np.sum(np.asarray(w)[:, None] * np.asarray(V), axis=0)),
]


# ---------------------------------------------------------------------------------------------
# One wrong implementation per declared mistake, as a learner would write it.
# ---------------------------------------------------------------------------------------------


def _dots(q, K):
    return [sum(a * b for a, b in zip(q, k)) for k in K]


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [x / sum(e) for x in e]


MISTAKES = [
    # scores_one_query
    ("scores_one_query", "missing 1/sqrt(d_k) scaling", _dots),
    ("scores_one_query", "dividing by d_k instead of sqrt(d_k)",
     lambda q, K: [s / len(q) for s in _dots(q, K)]),
    ("scores_one_query", "dividing by sqrt(S), the number of keys, instead of sqrt(d_k)",
     lambda q, K: [s / math.sqrt(len(K)) for s in _dots(q, K)]),
    ("scores_one_query", "weights returned instead of the scores",
     lambda q, K: _softmax(scores_loops(q, K))),
    # weighted_sum
    ("weighted_sum", "a plain average of the values (weights ignored)",
     lambda w, V: [sum(col) / len(V) for col in zip(*V)]),
    ("weighted_sum", "the weighted rows not added up",
     lambda w, V: [[w_j * x for x in v] for w_j, v in zip(w, V)]),
    ("weighted_sum", "the value with the largest weight only (hard attention)",
     lambda w, V: V[w.index(max(w))]),
]


def test_the_first_case_is_the_chapters_query(capsys):
    """The chapter's exercise promises the first case is 'cat' over the running example."""
    from selfattention import data

    seen = []

    def spy(q, K):
        seen.append((list(q), [list(k) for k in K]))
        return scores_loops(q, K)

    assert check.scores_one_query(spy, raise_on_fail=True)
    X = data.embeddings()
    W_q, W_k, _ = data.example_projections()
    np.testing.assert_allclose(seen[0][0], (X @ W_q)[1])
    np.testing.assert_allclose(seen[0][1], X @ W_k)


def test_the_inputs_are_plain_lists(capsys):
    """Chapter 1 promises lists, so a pure-Python answer (no NumPy) works."""
    kinds = []

    def spy(w, V):
        kinds.append((type(w), type(V), type(V[0])))
        return weighted_sum_loops(w, V)

    assert check.weighted_sum(spy, raise_on_fail=True)
    assert set(kinds) == {(list, list, list)}


def test_raise_on_fail():
    with pytest.raises(check.CheckError, match="missing 1/sqrt"):
        check.scores_one_query(_dots, raise_on_fail=True)
    with pytest.raises(check.CheckError, match="weighted rows not added up"):
        check.weighted_sum(lambda w, V: np.asarray(w)[:, None] * np.asarray(V), raise_on_fail=True)
