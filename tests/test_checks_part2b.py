"""The chapter 6 check added with the chapter, ``check.fix_inverted_mask``: it passes right answers
(however the learner spells the mask) and names each classic mistake it knows (one test per
mistake), so a learner's wrong code gets the right diagnosis."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

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
CORRECT = {"fix_inverted_mask": good_real_tokens}
MORE_CORRECT = [("fix_inverted_mask", good_negated), ("fix_inverted_mask", good_additive_with_weights)]
MISTAKES = [
    ("fix_inverted_mask", "the inverted mask left in (True = padding)", bad_unchanged),
    ("fix_inverted_mask", "the mask put on the queries instead of the keys", bad_on_queries),
    ("fix_inverted_mask", "a boolean mask turned into a 0/1 float mask", bad_float_01),
    ("fix_inverted_mask", "one padded key let through (<= instead of <)", bad_off_by_one),
    ("fix_inverted_mask", "no mask at all", bad_no_mask),
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
