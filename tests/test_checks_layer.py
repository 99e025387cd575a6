"""The checks of ``selfattention.checks.layer`` (chapters 4 and 5): each passes right answers and
names each classic mistake it knows (one wrong implementation per mistake), so a learner's wrong
code gets the right diagnosis."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfattention import checks as check
from selfattention import positional

# ---------------------------------------------------------------------------------------------
# Right answers, written the way a learner would write them.
# ---------------------------------------------------------------------------------------------


def good_projections(X, W_q, W_k, W_v):
    return X @ W_q, X @ W_k, X @ W_v


def good_shuffled_weights(weights, perm):
    return np.asarray(weights)[perm][:, perm]


def good_split_heads(x, num_heads):
    B, T, d_model = x.shape
    return x.view(B, T, num_heads, d_model // num_heads).transpose(1, 2)


def good_merge_heads(x):
    B, H, T, d_head = x.shape
    return x.transpose(1, 2).reshape(B, T, H * d_head)


def good_mha(x, W_q, W_k, W_v, W_o, num_heads):
    q, k, v = (good_split_heads(x @ W, num_heads) for W in (W_q, W_k, W_v))
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    return good_merge_heads(torch.softmax(scores, dim=-1) @ v) @ W_o


def good_count(d_model, num_heads, bias):
    return 4 * d_model**2 + (4 * d_model if bias else 0)


GOOD = [
    (check.projections, good_projections),
    (check.shuffled_weights, good_shuffled_weights),
    (check.sinusoidal, lambda T, d: positional.sinusoidal_encoding(T, d)),
    (check.split_heads, good_split_heads),
    (check.merge_heads, good_merge_heads),
    (check.multihead_attention, good_mha),
    (check.mha_parameter_count, good_count),
]


# ---------------------------------------------------------------------------------------------
# One wrong implementation per classic mistake, and the mistake name the check must report.
# ---------------------------------------------------------------------------------------------


def _split(x, h):
    return good_split_heads(x, h)


def _mha_with(split=None, scale_by_d_model=False, transpose=False):
    def fn(x, W_q, W_k, W_v, W_o, num_heads):
        tr = (lambda W: W.T) if transpose else (lambda W: W)
        sp = split or _split
        q, k, v = (sp(x @ tr(W), num_heads) for W in (W_q, W_k, W_v))
        d = x.shape[-1] if scale_by_d_model else q.shape[-1]
        w = torch.softmax(q @ k.transpose(-2, -1) / d**0.5, dim=-1)
        return good_merge_heads(w @ v) @ tr(W_o)

    return fn


def _sin_cos_swapped(T, d):
    pe = positional.sinusoidal_encoding(T, d)
    out = np.empty_like(pe)
    out[:, 0::2], out[:, 1::2] = pe[:, 1::2], pe[:, 0::2]
    return out


def _exponent_i(T, d):
    t = np.arange(T)[:, None]
    i = np.arange(d)[None, :]
    angle = t / 10000 ** (i / d)
    return np.where(i % 2 == 0, np.sin(angle), np.cos(angle))


def _exponent_pair_i(T, d):
    """The exponent i/d with i counting pairs: what a learner writes reading 2i as i."""
    t = np.arange(T)[:, None]
    i = np.arange(d // 2)
    angle = t / 10000 ** (i / d)  # (T, d/2)
    pe = np.zeros((T, d))
    pe[:, 0::2], pe[:, 1::2] = np.sin(angle), np.cos(angle)
    return pe


def _per_head_full(d, h, b):
    return h * 3 * (d * d + (d if b else 0)) + d * d + (d if b else 0)


def _per_head_small(d, h, b):
    dh = d // h
    return h * 3 * (dh * dh + (dh if b else 0)) + d * d + (d if b else 0)


_WRONG = [
    # chapter 4
    (check.projections, lambda X, a, b, c: (X @ a.T, X @ b.T, X @ c.T), "a transposed projection"),
    (check.projections, lambda X, a, b, c: (X @ b, X @ a, X @ c), "W_k and W_q swapped"),
    (check.shuffled_weights, lambda A, p: np.asarray(A)[p], "only the rows permuted"),
    (check.shuffled_weights, lambda A, p: np.asarray(A)[:, p], "only the columns permuted"),
    (
        check.shuffled_weights,
        lambda A, p: np.asarray(A)[np.argsort(p)][:, np.argsort(p)],
        "the inverse permutation",
    ),
    (check.shuffled_weights, lambda A, p: np.array(A), "unchanged weights"),
    (check.sinusoidal, _sin_cos_swapped, "sin and cos swapped"),
    (
        check.sinusoidal,
        _exponent_i,
        "each dimension j with its own exponent j/d_model (pairs not sharing a frequency)",
    ),
    (check.sinusoidal, _exponent_pair_i, "an exponent of i/d_model instead of 2i/d_model (i the pair index)"),
    # chapter 5
    (
        check.split_heads,
        lambda x, h: x.view(x.shape[0], h, x.shape[1], x.shape[2] // h),
        "heads split in the wrong order (a plain view)",
    ),
    (
        check.split_heads,
        lambda x, h: x.view(x.shape[0], x.shape[1], x.shape[2] // h, h).permute(0, 3, 1, 2),
        "features split as (d_head, H) instead of (H, d_head)",
    ),
    (
        check.split_heads,
        lambda x, h: x.view(x.shape[0], x.shape[1], h, x.shape[2] // h),
        "a missing transpose",
    ),
    (
        check.merge_heads,
        lambda x: x.reshape(x.shape[0], x.shape[2], -1),
        "a plain reshape without the transpose",
    ),
    (
        check.merge_heads,
        lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
        "features merged as (d_head, H) instead of (H, d_head)",
    ),
    (check.multihead_attention, _mha_with(scale_by_d_model=True), "scaling by d_model instead of d_head"),
    (
        check.multihead_attention,
        _mha_with(split=lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h)),
        "heads split in the wrong order (a plain view)",
    ),
    (check.multihead_attention, _mha_with(transpose=True), "a transposed projection"),
    (
        check.mha_parameter_count,
        lambda d, h, b: 3 * d * d + (3 * d if b else 0),
        "the output projection forgotten",
    ),
    (check.mha_parameter_count, lambda d, h, b: 4 * d * d, "biases forgotten"),
    (check.mha_parameter_count, lambda d, h, b: 4 * d * d + 4 * d, "biases counted although bias=False"),
    (check.mha_parameter_count, _per_head_full, "one full d_model x d_model projection per head"),
    (check.mha_parameter_count, _per_head_small, "one d_head x d_head projection per head"),
]


# ---------------------------------------------------------------------------------------------
# More right and wrong answers, written from scratch.
# ---------------------------------------------------------------------------------------------


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


def _mha_params(d_model, num_heads, bias):
    return 4 * d_model * d_model + (4 * d_model if bias else 0)


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


CORRECT_FROM_SCRATCH = {
    "projections": lambda X, W_q, W_k, W_v: (X @ W_q, X @ W_k, X @ W_v),
    "sinusoidal": _sinusoidal,
    "split_heads": _split_heads,
    "multihead_attention": _mha,
    "shuffled_weights": lambda A, perm: np.asarray(A)[perm][:, perm],
    "merge_heads": lambda x: x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1),
    "mha_parameter_count": _mha_params,
}
MISTAKES_FROM_SCRATCH = [
    ("projections", "a transposed projection", lambda X, W_q, W_k, W_v: (X @ W_q.T, X @ W_k.T, X @ W_v.T)),
    ("projections", "W_k and W_q swapped", lambda X, W_q, W_k, W_v: (X @ W_k, X @ W_q, X @ W_v)),
    ("sinusoidal", "sin and cos swapped", _sinusoidal_swapped),
    (
        "sinusoidal",
        "each dimension j with its own exponent j/d_model (pairs not sharing a frequency)",
        _sinusoidal_unpaired,
    ),
    ("split_heads", "heads split in the wrong order (a plain view)", _split_plain_view),
    ("split_heads", "features split as (d_head, H) instead of (H, d_head)", _split_dhead_first),
    ("split_heads", "a missing transpose", _split_no_transpose),
    (
        "multihead_attention",
        "scaling by d_model instead of d_head",
        lambda x, a, b, c, o, h: _mha(x, a, b, c, o, h, scale_by=x.shape[-1]),
    ),
    (
        "multihead_attention",
        "heads split in the wrong order (a plain view)",
        lambda x, a, b, c, o, h: _mha(x, a, b, c, o, h, split=_split_plain_view),
    ),
    ("multihead_attention", "a transposed projection", _mha_transposed),
    ("shuffled_weights", "only the rows permuted", lambda A, p: np.asarray(A)[p]),
    ("shuffled_weights", "only the columns permuted", lambda A, p: np.asarray(A)[:, p]),
    (
        "shuffled_weights",
        "the inverse permutation",
        lambda A, p: np.asarray(A)[np.argsort(p)][:, np.argsort(p)],
    ),
    ("shuffled_weights", "unchanged weights", lambda A, p: np.asarray(A).copy()),
    ("merge_heads", "a plain reshape without the transpose", lambda x: x.reshape(x.shape[0], x.shape[2], -1)),
    (
        "merge_heads",
        "features merged as (d_head, H) instead of (H, d_head)",
        lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
    ),
    (
        "mha_parameter_count",
        "the output projection forgotten",
        lambda d, h, b: 3 * d * d + (3 * d if b else 0),
    ),
    ("mha_parameter_count", "biases forgotten", lambda d, h, b: 4 * d * d),
    ("mha_parameter_count", "biases counted although bias=False", lambda d, h, b: 4 * d * d + 4 * d),
    (
        "mha_parameter_count",
        "one full d_model x d_model projection per head",
        lambda d, h, b: h * (3 * d * d + (3 * d if b else 0)) + d * d + (d if b else 0),
    ),
    (
        "mha_parameter_count",
        "one d_head x d_head projection per head",
        lambda d, h, b: h * 3 * ((d // h) ** 2 + ((d // h) if b else 0)) + d * d + (d if b else 0),
    ),
]


def test_raise_on_fail_raises():
    with pytest.raises(check.CheckError, match="biases forgotten"):
        check.mha_parameter_count(lambda d, h, b: 4 * d * d, raise_on_fail=True)


def test_merge_heads_view_of_non_contiguous_is_reported_not_raised(capsys):
    # x.transpose(1, 2).view(...) fails on the transposed tensor: a plain report, no traceback.
    result = check.merge_heads(lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1))
    assert not result.passed and result.mistake == "raised an error"
    assert "RuntimeError" in capsys.readouterr().out


def test_unwritten_exercise_stops_with_its_hint():
    def todo(weights, perm):
        raise NotImplementedError("index rows and columns with perm")

    with pytest.raises(NotImplementedError, match="index rows and columns with perm"):
        check.shuffled_weights(todo)


def test_new_checks_leave_the_global_random_state_alone():
    # A check cell must not change what the learner's next random draw gives.
    torch.manual_seed(123)
    np.random.seed(123)
    before_t, before_np = torch.get_rng_state(), np.random.get_state()[1].copy()
    check.shuffled_weights(good_shuffled_weights)
    check.merge_heads(good_merge_heads)
    check.mha_parameter_count(good_count)
    assert torch.equal(torch.get_rng_state(), before_t)
    assert np.array_equal(np.random.get_state()[1], before_np)


# Registries: tests/test_checks.py runs every right answer and names every mistake, once.
CORRECT = CORRECT_FROM_SCRATCH
MORE_CORRECT = [(chk.__name__, fn) for chk, fn in GOOD]
MISTAKES = [(chk.__name__, mistake, wrong) for chk, wrong, mistake in _WRONG] + MISTAKES_FROM_SCRATCH
