"""Checks for Part I: the dot product, softmax and attention with loops and with NumPy."""

from __future__ import annotations

import math

import numpy as np

from .. import data
from .. import vectorized as vz
from ._core import Case, CheckResult, Mistake, run_check


def _rng() -> np.random.Generator:
    """A fresh generator per check, so its cases do not depend on which checks ran before."""
    return np.random.default_rng(1234)


def _naive_softmax(x, axis=-1):
    e = np.exp(np.asarray(x, dtype=np.float64))
    return e / e.sum(axis=axis, keepdims=True)


def _nan_masked_softmax(x, axis=-1):
    # What exp(x - max) / sum gives when a whole row is -inf: max is -inf and -inf - -inf is NaN.
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)


_NO_MAX = Mistake(
    "no max subtraction (overflow)",
    "exp(1000) overflows to inf and inf / inf is NaN. Subtract the largest score first: "
    "softmax(x) = softmax(x - max(x)), and every exponent is then <= 0.",
    lambda x, *a: _quiet(_naive_softmax, x),
)
def _min_shifted_softmax(x):
    # A shift by the smallest score: right whenever the scores lie close together, but the
    # exponents are then >= 0 and overflow as soon as the scores are far apart.
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.min(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


_MIN_SHIFT = Mistake(
    "the smallest score subtracted instead of the largest",
    "any shift gives the same softmax, but only x - max(x) makes every exponent <= 0. Shifted "
    "by the minimum, scores 2000 apart give exp(2000), which overflows: subtract the largest.",
    lambda x, *a: _quiet(_min_shifted_softmax, x),
)
_ROW_NEG_INF = Mistake(
    "a whole row of -inf giving NaN",
    "when every score is -inf (every key masked), max is -inf and -inf - (-inf) is NaN. Treat that "
    "row specially and return zeros, as torch's scaled_dot_product_attention does.",
    lambda x, *a: _quiet(_nan_masked_softmax, x),
)


def _softmax_no_keepdims(x):
    # x.max(axis=-1) is (..., T): lined up from the right against (..., T, S) it fails, or, when
    # T == S, subtracts row i's maximum from column i.
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1))
    return e / e.sum(axis=-1)


_NO_KEEPDIMS = Mistake(
    "a missing keepdims=True",
    "x.max(axis=-1) has one number per row, shape (..., T), and NumPy lines shapes up from the "
    "right, so x - x.max(axis=-1) compares (..., T, S) with (..., T): it fails with a broadcast "
    "error (or, when T == S, silently subtracts row i's maximum from column i). Keep the axis: "
    "x.max(axis=-1, keepdims=True) has shape (..., T, 1) and is subtracted from every column; "
    "the same for the sum.",
    lambda x, *a: _quiet(_softmax_no_keepdims, x),
)


def _quiet(f, *args, **kw):
    with np.errstate(all="ignore"):
        return f(*args, **kw)


def dot(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(a, b) -> float``, the dot product of two lists of floats."""
    cases = [
        Case(([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]), 32.0, "small integers"),
        Case(([0.5, -1.0], [2.0, 3.0]), -2.0, "negative entries"),
        Case(
            (data.embeddings_list()[1], data.embeddings_list()[5]),
            float(np.dot(data.embeddings()[1], data.embeddings()[5])),
            "'cat' . 'mat'",
        ),
    ]
    mistakes = [
        Mistake(
            "an elementwise product that was not summed",
            "a dot product multiplies matching entries and then adds them up to one number.",
            lambda a, b: [x * y for x, y in zip(a, b)],
        ),
        Mistake(
            "a sum of the entries instead of their products",
            "multiply a[i] * b[i] before adding.",
            lambda a, b: sum(a) + sum(b),
        ),
    ]
    return run_check("dot", fn, cases, "(a, b)", mistakes, raise_on_fail=raise_on_fail)


def softmax_list(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(scores: list[float]) -> list[float]``, a stable softmax with plain Python."""
    cases = [
        Case(([1.0, 2.0, 3.0],), vz.softmax(np.array([1.0, 2.0, 3.0])), "three scores"),
        Case(([0.0],), [1.0], "a single score"),
        Case(
            ([1000.0, 1001.0, 999.0],),
            vz.softmax(np.array([1000.0, 1001.0, 999.0])),
            "large scores",
            mistakes=[_NO_MAX],
        ),
        Case(
            ([-1000.0, 0.0, 1000.0],),
            vz.softmax(np.array([-1000.0, 0.0, 1000.0])),
            "scores far apart",
            mistakes=[_NO_MAX, _MIN_SHIFT],
        ),
        Case(([2.0, -math.inf, 0.5],), vz.softmax(np.array([2.0, -np.inf, 0.5])), "a masked score (-inf)"),
        Case(([-math.inf, -math.inf],), [0.0, 0.0], "every score masked", mistakes=[_ROW_NEG_INF]),
    ]
    mistakes = [
        Mistake(
            "exponentials that were not normalised",
            "divide every exp(x_i - max) by their sum so the weights add up to 1.",
            lambda x: _quiet(lambda v: np.exp(np.asarray(v) - np.max(v)), x),
        ),
    ]
    return run_check("softmax_list", fn, cases, "(scores)", mistakes, raise_on_fail=raise_on_fail)


def _row(q, K, V, scale):
    out, _ = vz.attention(np.asarray(q, float)[None], np.asarray(K, float), np.asarray(V, float), scale=scale)
    return out[0]


def attention_row(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(q, K, V) -> list``: the output of one query q (d_k) over K (S, d_k), V (S, d_v)."""
    r = _rng()
    X = data.embeddings_list()
    W_q, W_k, W_v = data.example_projections()
    Xa = np.array(X)
    Q, K, V = (Xa @ W_q).tolist(), (Xa @ W_k).tolist(), (Xa @ W_v).tolist()
    q2 = r.normal(size=3).tolist()
    K2 = r.normal(size=(5, 3)).tolist()
    V2 = r.normal(size=(5, 2)).tolist()
    cases = [
        Case((Q[1], K, V), _row(Q[1], K, V, None), "query 'cat' over the sentence"),
        Case((q2, K2, V2), _row(q2, K2, V2, None), "random q (3,), K (5, 3), V (5, 2)"),
    ]
    mistakes = [
        Mistake(
            "missing 1/sqrt(d_k) scaling",
            "divide every score by sqrt(d_k) before the softmax; without it the softmax is too "
            "sharp when d_k is large.",
            lambda q, K, V: _row(q, K, V, 1.0),
        ),
        Mistake(
            "dividing by d_k instead of sqrt(d_k)",
            "the scores are divided by the square root of d_k (their standard deviation), not by d_k.",
            lambda q, K, V: _row(q, K, V, 1.0 / len(q)),
        ),
        Mistake(
            "scaling by sqrt(d_model) instead of sqrt(d_k)",
            f"each score is a dot product of d_k = len(q) numbers, so divide by sqrt(len(q)); "
            f"d_model = {data.D_MODEL} is the width of the embeddings, before W_q and W_k.",
            lambda q, K, V: _row(q, K, V, 1.0 / math.sqrt(data.D_MODEL)),
        ),
        Mistake(
            "weights returned instead of the output",
            "after the softmax, take the weighted sum of the value rows: sum_j w_j * V[j].",
            lambda q, K, V: vz.attention(
                np.asarray(q, float)[None], np.asarray(K, float), np.asarray(V, float)
            )[1][0],
        ),
    ]
    return run_check("attention_row", fn, cases, "(q, K, V)", mistakes, raise_on_fail=raise_on_fail)


def softmax(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(x: np.ndarray) -> np.ndarray``: a row-wise (last axis) stable softmax."""
    r = _rng()
    x1 = r.normal(size=(3, 4))
    x2 = r.normal(size=(2, 3, 5)) * 3
    big = np.array([[1000.0, 1001.0, 1002.0], [-5.0, 0.0, 5.0]])
    spread = np.array([[-1000.0, 0.0, 1000.0], [3.0, -2000.0, 1.0]])
    masked = np.array([[0.5, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]])
    cases = [
        Case((x1,), vz.softmax(x1), "a (3, 4) score matrix"),
        Case((x2,), vz.softmax(x2), "a batch of shape (2, 3, 5)"),
        Case((big,), vz.softmax(big), "large scores", mistakes=[_NO_MAX]),
        Case((spread,), vz.softmax(spread), "scores far apart", mistakes=[_NO_MAX, _MIN_SHIFT]),
        Case((masked,), vz.softmax(masked), "a fully masked row", mistakes=[_ROW_NEG_INF]),
    ]
    mistakes = [
        Mistake(
            "softmax over the wrong axis",
            "each ROW (one query) must sum to 1, so normalise over the last axis "
            "(axis=-1, keepdims=True); your columns sum to 1 instead.",
            lambda x: vz.softmax(x, axis=-2),
        ),
        Mistake(
            "a sum over the whole array",
            "use axis=-1 and keepdims=True in max and sum, so each row is normalised on its own.",
            lambda x: (lambda e: e / e.sum())(np.exp(x - x.max())),
        ),
        _NO_KEEPDIMS,
    ]
    return run_check("softmax", fn, cases, "(x)", mistakes, raise_on_fail=raise_on_fail)


_BY_SQRT_T = Mistake(
    "dividing by sqrt(T), the number of queries, instead of sqrt(d_k)",
    "the scale belongs to one dot product, which adds d_k terms: divide by "
    "np.sqrt(Q.shape[-1]) (d_k), not by the square root of the sequence length Q.shape[-2].",
    lambda Q, K: Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-2]),
)


def scores(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(Q, K) -> np.ndarray``: scaled scores Q K^T / sqrt(d_k), shape (T, S)."""
    r = _rng()
    Q, K = r.normal(size=(4, 8)), r.normal(size=(6, 8))
    Q2, K2 = r.normal(size=(5, 5)), r.normal(size=(5, 5))
    cases = [
        Case((Q, K), Q @ K.T / np.sqrt(8), "Q (4, 8), K (6, 8)"),
        Case((Q2, K2), Q2 @ K2.T / np.sqrt(5), "square Q and K (5, 5)"),
    ]
    mistakes = [
        Mistake("missing 1/sqrt(d_k) scaling", "divide Q @ K.T by np.sqrt(d_k).", lambda Q, K: Q @ K.T),
        Mistake(
            "dividing by d_k instead of sqrt(d_k)",
            "divide by np.sqrt(d_k), not d_k.",
            lambda Q, K: Q @ K.T / Q.shape[-1],
        ),
        Mistake(
            "K Q^T instead of Q K^T (transposed scores)",
            "row i must belong to query i: scores = Q @ K.T, shape (T, S).",
            lambda Q, K: K @ Q.T / np.sqrt(Q.shape[-1]),
        ),
        _BY_SQRT_T,
    ]
    return run_check("scores", fn, cases, "(Q, K)", mistakes, raise_on_fail=raise_on_fail)


def attention(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(Q, K, V) -> out``: batched attention for Q (..., T, d_k), K, V (..., S, d)."""
    r = _rng()
    Q, K, V = r.normal(size=(6, 4)), r.normal(size=(6, 4)), r.normal(size=(6, 3))
    Qb, Kb, Vb = (r.normal(size=(2, 3, 5, 4)), r.normal(size=(2, 3, 7, 4)), r.normal(size=(2, 3, 7, 2)))
    cases = [
        Case((Q, K, V), vz.attention(Q, K, V)[0], "one sentence, T = S = 6"),
        Case((Qb, Kb, Vb), vz.attention(Qb, Kb, Vb)[0], "a batch (2, 3, ...) with T=5, S=7"),
    ]
    mistakes = [
        Mistake(
            "softmax over the wrong axis",
            "normalise each query's row of scores (axis=-1), not each key's column.",
            lambda Q, K, V: vz.softmax(Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1]), axis=-2) @ V,
        ),
        Mistake(
            "missing 1/sqrt(d_k) scaling",
            "divide the scores by np.sqrt(d_k).",
            lambda Q, K, V: vz.attention(Q, K, V, scale=1.0)[0],
        ),
        Mistake(
            "K.T on a batch (transposes the batch axes too)",
            "for batched arrays, swap only the last two axes: np.swapaxes(K, -1, -2) or "
            "K.transpose(0, 1, 3, 2), not K.T.",
            lambda Q, K, V: vz.softmax(Q @ K.T / np.sqrt(Q.shape[-1])) @ V,
        ),
        Mistake(
            _BY_SQRT_T.name,
            _BY_SQRT_T.explanation,
            lambda Q, K, V: vz.attention(Q, K, V, scale=1.0 / np.sqrt(Q.shape[-2]))[0],
        ),
        Mistake(
            _NO_KEEPDIMS.name,
            _NO_KEEPDIMS.explanation,
            lambda Q, K, V: (
                _quiet(_softmax_no_keepdims, Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])) @ V
            ),
        ),
    ]
    return run_check("attention", fn, cases, "(Q, K, V)", mistakes, raise_on_fail=raise_on_fail)


# ---------------------------------------------------------------------------------------------
# Chapter 1: the two halves of one query's attention, scores and the weighted sum.
# ---------------------------------------------------------------------------------------------


def _sentence_qkv() -> tuple[list, list, list]:
    """Q, K, V of the running example with the example projections, as nested lists."""
    X = data.embeddings()
    W_q, W_k, W_v = data.example_projections()
    return (X @ W_q).tolist(), (X @ W_k).tolist(), (X @ W_v).tolist()


def _one_query_scores(q, K, divide_by):
    q, K = np.asarray(q, dtype=np.float64), np.asarray(K, dtype=np.float64)
    return K @ q / divide_by(q, K)


def scores_one_query(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(q, K) -> S scores``: the scaled scores ``q . k_j / sqrt(d_k)`` of one query.

    ``q`` is a list of d_k floats, ``K`` a list of S keys of d_k floats each; the answer may be a
    list or a 1-D array of S floats.
    """
    r = _rng()
    Q, K, _ = _sentence_qkv()
    q2, K2 = r.normal(size=3).tolist(), r.normal(size=(5, 3)).tolist()

    def right(q, K):
        return _one_query_scores(q, K, lambda q, K: np.sqrt(len(q)))

    cases = [
        Case((Q[1], K), right(Q[1], K), "query 'cat' over the sentence, d_k = 4, S = 6"),
        Case((q2, K2), right(q2, K2), "random q (3,), K (5, 3)"),
    ]
    mistakes = [
        Mistake(
            "missing 1/sqrt(d_k) scaling",
            "divide every dot product q . k_j by sqrt(d_k), the square root of the query's length.",
            lambda q, K: _one_query_scores(q, K, lambda q, K: 1.0),
        ),
        Mistake(
            "dividing by d_k instead of sqrt(d_k)",
            "the dot products are divided by the square root of d_k, not by d_k itself.",
            lambda q, K: _one_query_scores(q, K, lambda q, K: len(q)),
        ),
        Mistake(
            "dividing by sqrt(S), the number of keys, instead of sqrt(d_k)",
            "d_k is the length of one query (len(q)), not the number of keys (len(K)).",
            lambda q, K: _one_query_scores(q, K, lambda q, K: np.sqrt(len(K))),
        ),
        Mistake(
            "weights returned instead of the scores",
            "this exercise stops before the softmax: return the scaled dot products "
            "themselves; the softmax comes next.",
            lambda q, K: vz.softmax(right(q, K)),
        ),
    ]
    return run_check("scores_one_query", fn, cases, "(q, K)", mistakes, raise_on_fail=raise_on_fail)


def weighted_sum(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(weights, V) -> d_v floats``: one query's output ``sum_j weights[j] * V[j]``.

    ``weights`` is a list of S floats that sum to 1 and ``V`` a list of S values of d_v floats
    each; the answer may be a list or a 1-D array of d_v floats.
    """
    r = _rng()
    Q, K, V = _sentence_qkv()
    w_cat = vz.attention(np.array(Q[1])[None], np.array(K), np.array(V))[1][0].tolist()
    w2 = vz.softmax(r.normal(size=5) * 2).tolist()
    V2 = r.normal(size=(5, 2)).tolist()
    one_hot = [0.0, 0.0, 1.0, 0.0]
    V3 = r.normal(size=(4, 3)).tolist()

    def right(w, V):
        return np.asarray(w, dtype=np.float64) @ np.asarray(V, dtype=np.float64)

    cases = [
        Case((w_cat, V), right(w_cat, V), "the weights of 'cat' and the sentence's values"),
        Case((w2, V2), right(w2, V2), "random weights (5,) and values (5, 2)"),
        Case((one_hot, V3), right(one_hot, V3), "one-hot weights pick the value V[2]"),
    ]
    mistakes = [
        Mistake(
            "a plain average of the values (weights ignored)",
            "multiply each value row V[j] by its weight weights[j] before adding them up.",
            lambda w, V: np.mean(np.asarray(V, dtype=np.float64), axis=0),
        ),
        Mistake(
            "the weighted rows not added up",
            "after multiplying, add the S weighted rows together into one vector of d_v numbers.",
            lambda w, V: np.asarray(w, dtype=np.float64)[:, None] * np.asarray(V),
        ),
        Mistake(
            "the value with the largest weight only (hard attention)",
            "attention blends every value, weighted; it does not pick the single best one.",
            lambda w, V: np.asarray(V, dtype=np.float64)[int(np.argmax(w))],
        ),
    ]
    return run_check("weighted_sum", fn, cases, "(weights, V)", mistakes, raise_on_fail=raise_on_fail)
