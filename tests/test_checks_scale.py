"""The checks of ``selfattention.checks.scale`` (chapter 7: ``attention_flops``,
``online_softmax_update``): each passes a right answer and names each classic mistake it knows
(one wrong implementation per mistake)."""

from __future__ import annotations

import numpy as np

from selfattention import checks as check


def _flops(B, H, T, S, d, causal):
    f = 2 * 2 * B * H * T * S * d  # two matmuls, a multiply-add is two FLOPs
    return f // 2 if causal else f


def _online_update(m, l, acc, s, v, rescale=True):
    m_new = np.maximum(m, s.max(axis=-1))
    corr = np.exp(m - m_new) if rescale else np.ones_like(m)
    p = np.exp(s - m_new[:, None])
    return m_new, l * corr + p.sum(axis=-1), acc * corr[:, None] + p @ v


def _online_update_block_max(m, l, acc, s, v):  # forgets that the running max can stay
    m_new = s.max(axis=-1)
    corr = np.exp(m - m_new)
    p = np.exp(s - m_new[:, None])
    return m_new, l * corr + p.sum(axis=-1), acc * corr[:, None] + p @ v


CORRECT = {
    "attention_flops": _flops,
    "online_softmax_update": _online_update,
}
MISTAKES = [
    (
        "attention_flops",
        "half the FLOPs (multiply-adds counted once, or one matmul forgotten)",
        lambda B, H, T, S, d, c: _flops(B, H, T, S, d, c) // 2,
    ),
    (
        "attention_flops",
        "the causal mask not halving the work",
        lambda B, H, T, S, d, c: 4 * B * H * T * S * d,
    ),
    ("attention_flops", "batch or heads forgotten", lambda B, H, T, S, d, c: _flops(1, 1, T, S, d, c)),
    (
        "online_softmax_update",
        "the old sums not rescaled",
        lambda m, l, a, s, v: _online_update(m, l, a, s, v, rescale=False),
    ),
    (
        "online_softmax_update",
        "the running maximum replaced by the block's maximum",
        _online_update_block_max,
    ),
]


def test_online_update_tries_a_block_that_keeps_the_maximum(capsys):
    """The wrong update above is right on a block that raises every row's maximum: only the cases
    where the maximum stays catch it."""
    m0 = np.array([0.0, 1.0])
    l0, acc0, v = np.ones(2), np.ones((2, 1)), np.ones((3, 1))
    s_up = np.array([[2.0, 3.0, 1.0], [4.0, 2.0, 0.0]])
    for got, want in zip(
        _online_update_block_max(m0, l0, acc0, s_up, v),
        CORRECT["online_softmax_update"](m0, l0, acc0, s_up, v),
    ):
        np.testing.assert_allclose(got, want)
    assert not check.online_softmax_update(_online_update_block_max).passed
