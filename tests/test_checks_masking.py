"""The checks of ``selfattention.checks.masking`` (chapter 6: ``causal_mask``, ``masked_softmax``,
``kv_step``, ``fix_inverted_mask``): each passes right answers (however the learner spells the
mask) and names each classic mistake it knows (one wrong implementation per mistake), so a
learner's wrong code gets the right diagnosis."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_checks_foundations import _np_softmax as _softmax
from test_checks_foundations import _softmax_no_masked_row

from selfattention import checks as check

# ---------------------------------------------------------------------------------------------
# Right answers, written the way a learner would write them.
# ---------------------------------------------------------------------------------------------


def _real(lengths, S):
    """(B, S) bool, True = a real token."""
    return torch.arange(S)[None, :] < torch.as_tensor(lengths)[:, None]


def good_negated(q, k, v, lengths):
    """The buggy code of the exercise with its mask negated."""
    is_pad = torch.arange(k.shape[-2])[None, :] >= torch.as_tensor(lengths)[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=~is_pad[:, None, None, :])


def good_real_tokens(q, k, v, lengths):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=_real(lengths, k.shape[-2])[:, None, None, :])


def good_additive_with_weights(q, k, v, lengths):
    """A float mask of 0 / -inf, by hand, returning (out, weights) like the library does."""
    add = torch.zeros(len(lengths), k.shape[-2]).masked_fill(~_real(lengths, k.shape[-2]), float("-inf"))
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5 + add[:, None, None, :]
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


# ---------------------------------------------------------------------------------------------
# One wrong implementation per mistake the check declares.
# ---------------------------------------------------------------------------------------------


def bad_unchanged(q, k, v, lengths):
    """The exercise's buggy code, handed in as it is."""
    is_pad = torch.arange(k.shape[-2])[None, :] >= torch.as_tensor(lengths)[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=is_pad[:, None, None, :])


def bad_on_queries(q, k, v, lengths):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=_real(lengths, k.shape[-2])[:, None, :, None])


def bad_float_01(q, k, v, lengths):
    mask = _real(lengths, k.shape[-2]).float()  # 1.0 for real tokens, 0.0 for padding: added!
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])


def bad_off_by_one(q, k, v, lengths):
    mask = torch.arange(k.shape[-2])[None, :] <= torch.as_tensor(lengths)[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])


def bad_no_mask(q, k, v, lengths):
    return F.scaled_dot_product_attention(q, k, v)


# Registries in the form tests/test_checks.py collects from every tests/test_checks_*.py
# ({check: correct fn} and [(check, mistake, wrong fn)]), so its coverage tests count them.
def _masked_softmax(scores, mask):
    return _softmax(np.where(mask, scores, -np.inf))


def _kv_step(q, k, v, K_cache, V_cache):
    K = torch.cat([K_cache, k], dim=2)  # (B, H, S + 1, d)
    V = torch.cat([V_cache, v], dim=2)
    w = torch.softmax(q @ K.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ V, K, V


def _masked_softmax_multiply(scores, mask):  # "hides" scores by multiplying: 0 * -inf = NaN
    hidden = scores * np.where(mask, 1.0, -np.inf)
    e = np.exp(hidden - hidden.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _kv_step_no_append(q, k, v, K_cache, V_cache):
    w = torch.softmax(q @ K_cache.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ V_cache, K_cache, V_cache


def _kv_step_old_cache(q, k, v, K_cache, V_cache):
    out, _, _ = _kv_step(q, k, v, K_cache, V_cache)
    return out, K_cache, V_cache


def _kv_step_prepended(q, k, v, K_cache, V_cache):
    K, V = torch.cat([k, K_cache], dim=2), torch.cat([v, V_cache], dim=2)
    w = torch.softmax(q @ K.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ V, K, V


def _kv_step_is_causal(q, k, v, K_cache, V_cache):
    K, V = torch.cat([K_cache, k], dim=2), torch.cat([V_cache, v], dim=2)
    return torch.nn.functional.scaled_dot_product_attention(q, K, V, is_causal=True), K, V


def _causal_no_diagonal(T):
    return torch.ones(T, T, dtype=torch.bool).tril(diagonal=-1)


CORRECT = {
    "fix_inverted_mask": good_real_tokens,
    "causal_mask": lambda T: torch.ones(T, T, dtype=torch.bool).tril(),
    "masked_softmax": _masked_softmax,
    "kv_step": _kv_step,
}
MORE_CORRECT = [("fix_inverted_mask", good_negated), ("fix_inverted_mask", good_additive_with_weights)]
MISTAKES = [
    ("fix_inverted_mask", "the inverted mask left in (True = padding)", bad_unchanged),
    ("fix_inverted_mask", "the mask put on the queries instead of the keys", bad_on_queries),
    ("fix_inverted_mask", "a boolean mask turned into a 0/1 float mask", bad_float_01),
    ("fix_inverted_mask", "one padded key let through (<= instead of <)", bad_off_by_one),
    ("fix_inverted_mask", "no mask at all", bad_no_mask),
    (
        "causal_mask",
        "an inverted mask (True = hide)",
        lambda T: torch.ones(T, T, dtype=torch.bool).triu(diagonal=1),
    ),
    ("causal_mask", "the diagonal left out", _causal_no_diagonal),
    (
        "causal_mask",
        "the upper triangle (future allowed, past hidden)",
        lambda T: torch.ones(T, T, dtype=torch.bool).triu(),
    ),
    ("masked_softmax", "an inverted mask", lambda s, m: _softmax(np.where(m, -np.inf, s))),
    ("masked_softmax", "NaN from 0 * -inf", _masked_softmax_multiply),
    (
        "masked_softmax",
        "a whole row of -inf giving NaN",
        lambda s, m: _softmax_no_masked_row(np.where(m, s, -np.inf)),
    ),
    (
        "masked_softmax",
        "masked positions set to 0 instead of -inf",
        lambda s, m: _softmax(np.where(m, s, 0.0)),
    ),
    ("kv_step", "the new key and value not appended", _kv_step_no_append),
    ("kv_step", "the old cache returned", _kv_step_old_cache),
    ("kv_step", "the new key and value put before the cache", _kv_step_prepended),
    ("kv_step", "is_causal=True with one query (top-left alignment)", _kv_step_is_causal),
]


def test_fix_inverted_mask_reports_the_learners_error_and_raises_when_asked(capsys):
    def broken(q, k, v, lengths):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(3, 3, dtype=torch.bool))

    result = check.fix_inverted_mask(broken)
    assert not result.passed and result.mistake == "raised an error"
    assert "Traceback" not in capsys.readouterr().out
    with pytest.raises(check.CheckError):
        check.fix_inverted_mask(bad_unchanged, raise_on_fail=True)


def test_fix_inverted_mask_stops_an_unwritten_exercise_with_its_hint():
    def unwritten(q, k, v, lengths):
        raise NotImplementedError("negate the mask")

    with pytest.raises(NotImplementedError, match="negate the mask"):
        check.fix_inverted_mask(unwritten)
