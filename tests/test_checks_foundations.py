"""The checks of ``selfattention.checks.foundations`` (Part I: chapter 1's ``scores_one_query`` and
``weighted_sum``; the loops' ``dot``, ``softmax_list``, ``attention_row``; NumPy's ``softmax``,
``scores``, ``attention``): each passes right answers written in several ways and names each
classic mistake it knows (one wrong implementation per mistake).

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
    (
        "scores_one_query",
        "dividing by d_k instead of sqrt(d_k)",
        lambda q, K: [s / len(q) for s in _dots(q, K)],
    ),
    (
        "scores_one_query",
        "dividing by sqrt(S), the number of keys, instead of sqrt(d_k)",
        lambda q, K: [s / math.sqrt(len(K)) for s in _dots(q, K)],
    ),
    ("scores_one_query", "weights returned instead of the scores", lambda q, K: _softmax(scores_loops(q, K))),
    # weighted_sum
    (
        "weighted_sum",
        "a plain average of the values (weights ignored)",
        lambda w, V: [sum(col) / len(V) for col in zip(*V)],
    ),
    (
        "weighted_sum",
        "the weighted rows not added up",
        lambda w, V: [[w_j * x for x in v] for w_j, v in zip(w, V)],
    ),
    (
        "weighted_sum",
        "the value with the largest weight only (hard attention)",
        lambda w, V: V[w.index(max(w))],
    ),
]


# ---------------------------------------------------------------------------------------------
# The loops and NumPy checks (chapters 2 and 3): right answers, then one wrong answer per mistake.
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


def _np_softmax(x, axis=-1):
    x = np.asarray(x, dtype=float)
    m = x.max(axis=axis, keepdims=True)
    m = np.where(np.isneginf(m), 0.0, m)  # a fully masked row: exp(-inf) = 0 everywhere
    e = np.exp(x - m)
    s = e.sum(axis=axis, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0)


def _scores(Q, K):
    return Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])


def _attention(Q, K, V):
    return _np_softmax(_scores(Q, K)) @ V


def _naive_softmax_list(scores):  # no max subtraction, pure Python: math.exp(1000) overflows
    e = [math.exp(s) for s in scores]
    return [x / sum(e) for x in e]


def _naive_softmax_list_numpy(scores):  # no max subtraction with NumPy: inf / inf = NaN
    e = np.exp(np.asarray(scores, dtype=float))
    return list(e / e.sum())


def _softmax_list_min_shift_numpy(scores):  # shifted by the smallest score: exp(2000) overflows
    x = np.asarray(scores, dtype=float)
    e = np.exp(x - x.min())
    return list(e / e.sum())


def _softmax_min_shift(x):
    e = np.exp(x - x.min(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


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
    return _np_softmax(_scores(Q, K), axis=-2) @ V


def _attention_batch_T(Q, K, V):  # K.T is right for 2-D arrays only
    return _np_softmax(Q @ K.T / np.sqrt(Q.shape[-1])) @ V


# A learner's notebook global: the embeddings' width, before the projections.
D_MODEL = 8


def _softmax_no_keepdims(x):
    e = np.exp(x - x.max(axis=-1))  # (..., T, S) - (..., T): fails, or is wrong when T == S
    return e / e.sum(axis=-1)


CORRECT.update(
    {
        "dot": lambda a, b: sum(x * y for x, y in zip(a, b)),
        "softmax_list": _softmax_list,
        "attention_row": _attention_row,
        "softmax": _np_softmax,
        "scores": _scores,
        "attention": _attention,
    }
)
MISTAKES += [
    ("dot", "an elementwise product that was not summed", lambda a, b: [x * y for x, y in zip(a, b)]),
    ("dot", "a sum of the entries instead of their products", lambda a, b: sum(x + y for x, y in zip(a, b))),
    ("softmax_list", "no max subtraction (overflow)", _naive_softmax_list),
    ("softmax_list", "no max subtraction (overflow)", _naive_softmax_list_numpy),
    ("softmax_list", "the smallest score subtracted instead of the largest", _softmax_list_min_shift_numpy),
    ("softmax_list", "a whole row of -inf giving NaN", _softmax_list_no_masked_row),
    ("softmax_list", "exponentials that were not normalised", _softmax_list_unnormalised),
    ("attention_row", "missing 1/sqrt(d_k) scaling", _row_with(lambda d: 1.0)),
    ("attention_row", "dividing by d_k instead of sqrt(d_k)", _row_with(lambda d: 1.0 / d)),
    (
        "attention_row",
        "weights returned instead of the output",
        _row_with(lambda d: 1.0 / math.sqrt(d), return_weights=True),
    ),
    ("softmax", "no max subtraction (overflow)", _softmax_no_max),
    ("softmax", "the smallest score subtracted instead of the largest", _softmax_min_shift),
    ("softmax", "a whole row of -inf giving NaN", _softmax_no_masked_row),
    ("softmax", "softmax over the wrong axis", _softmax_axis0),
    ("softmax", "a sum over the whole array", _softmax_global),
    ("scores", "missing 1/sqrt(d_k) scaling", lambda Q, K: Q @ K.T),
    ("scores", "dividing by d_k instead of sqrt(d_k)", lambda Q, K: Q @ K.T / Q.shape[-1]),
    ("scores", "K Q^T instead of Q K^T (transposed scores)", lambda Q, K: K @ Q.T / np.sqrt(Q.shape[-1])),
    ("attention", "softmax over the wrong axis", _attention_columns),
    ("attention", "missing 1/sqrt(d_k) scaling", lambda Q, K, V: _np_softmax(Q @ np.swapaxes(K, -1, -2)) @ V),
    ("attention", "K.T on a batch (transposes the batch axes too)", _attention_batch_T),
    (
        "attention_row",
        "scaling by sqrt(d_model) instead of sqrt(d_k)",
        _row_with(lambda d: 1.0 / math.sqrt(D_MODEL)),
    ),
    ("softmax", "a missing keepdims=True", _softmax_no_keepdims),
    (
        "scores",
        "dividing by sqrt(T), the number of queries, instead of sqrt(d_k)",
        lambda Q, K: Q @ K.T / np.sqrt(Q.shape[0]),
    ),
    (
        "attention",
        "dividing by sqrt(T), the number of queries, instead of sqrt(d_k)",
        lambda Q, K, V: _np_softmax(Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-2])) @ V,
    ),
    ("attention", "a missing keepdims=True", lambda Q, K, V: _softmax_no_keepdims(_scores(Q, K)) @ V),
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
