"""Masks: shapes, polarity (True = attend), alignment, and agreement with torch's own masks."""

from __future__ import annotations

import pytest
import torch
from _helpers import (
    assert_close,
    one_thread,  # noqa: F401 (autouse: one thread per module)
    torch_sdpa,
)

from selfattention import masks
from selfattention.multihead import scaled_dot_product_attention


def test_causal_mask_square():
    m = masks.causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    assert torch.equal(m, torch.ones(4, 4, dtype=torch.bool).tril())


@pytest.mark.parametrize("T,S", [(2, 5), (5, 2), (1, 4), (3, 3)])
def test_causal_mask_alignments(T, S):
    tl = masks.causal_mask(T, S)
    br = masks.causal_mask(T, S, align="bottom_right")
    for i in range(T):
        for j in range(S):
            assert tl[i, j] == (j <= i)
            assert br[i, j] == (j <= i + S - T)
    if T == S:
        assert torch.equal(tl, br)


def test_top_left_is_torchs_is_causal_and_bottom_right_is_causal_lower_right():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 7, 4), torch.randn(2, 7, 5)
    assert_close(torch_sdpa(q, k, v, attn_mask=masks.causal_mask(3, 7)),
                 torch_sdpa(q, k, v, is_causal=True), torch.float32)
    from torch.nn.attention.bias import causal_lower_right

    ref = torch_sdpa(q, k, v, attn_mask=causal_lower_right(3, 7))
    out, _ = scaled_dot_product_attention(q, k, v, attn_mask=masks.causal_mask(3, 7, align="bottom_right"))
    assert_close(out, ref, torch.float32)


def test_padding_mask():
    m = masks.padding_mask([3, 0, 5], 5)
    assert m.dtype == torch.bool and m.shape == (3, 5)
    assert m.sum(1).tolist() == [3, 0, 5]
    assert m[0].tolist() == [True, True, True, False, False]
    assert torch.equal(masks.padding_mask(torch.tensor([2]), 3), torch.tensor([[True, True, False]]))
    assert masks.padding_mask([], 4).shape == (0, 4)


def test_sliding_window_mask():
    m = masks.sliding_window_mask(5, 2)
    for i in range(5):
        for j in range(5):
            assert m[i, j] == (i - 2 < j <= i)
    assert torch.equal(masks.sliding_window_mask(4, 10), masks.causal_mask(4))
    assert torch.equal(masks.sliding_window_mask(3, 1), torch.eye(3, dtype=torch.bool))


def test_to_additive_gives_the_same_attention():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 4, 3, dtype=torch.float64) for _ in range(3))
    m = masks.causal_mask(4)
    add = masks.to_additive(m, dtype=torch.float64)
    assert add.dtype == torch.float64 and add[0, 1] == float("-inf") and add[1, 0] == 0
    a, _ = scaled_dot_product_attention(q, k, v, attn_mask=m)
    b, _ = scaled_dot_product_attention(q, k, v, attn_mask=add)
    assert_close(a, b, torch.float64)


def test_inverted_padding_polarity_is_wrong():
    """The chapter-6 trap: passing torch's key_padding_mask polarity to SDPA attends to padding."""
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 1, 4, 3, dtype=torch.float64) for _ in range(3))
    pm = masks.padding_mask([2], 4)
    good, w_good = scaled_dot_product_attention(q, k, v, attn_mask=pm[:, None, None, :])
    bad, w_bad = scaled_dot_product_attention(q, k, v, attn_mask=~pm[:, None, None, :])
    assert torch.all(w_good[..., 2:] == 0) and torch.all(w_bad[..., :2] == 0)
    assert not torch.allclose(good, bad)
