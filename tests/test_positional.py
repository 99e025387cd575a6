"""Positional encodings: sinusoidal values and rotation property; learned table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import one_thread  # noqa: F401 (autouse: one thread per module)

from selfattention.positional import LearnedPositionalEmbedding, sinusoidal_encoding


def test_sinusoidal_shape_values_and_bounds():
    pe = sinusoidal_encoding(50, 16)
    assert pe.shape == (50, 16) and pe.dtype == np.float64
    np.testing.assert_array_equal(pe[0, 0::2], 0.0)
    np.testing.assert_array_equal(pe[0, 1::2], 1.0)
    t = np.arange(50)
    np.testing.assert_allclose(pe[:, 0], np.sin(t), atol=1e-15)
    np.testing.assert_allclose(pe[:, 1], np.cos(t), atol=1e-15)
    np.testing.assert_allclose(pe[:, 14], np.sin(t / 10000 ** (14 / 16)), atol=1e-15)
    assert np.all(np.abs(pe) <= 1)
    assert len({tuple(np.round(r, 12)) for r in pe}) == 50  # every position distinct


def test_sinusoidal_offset_is_a_rotation():
    pe = sinusoidal_encoding(40, 8)
    k = 5
    freqs = 10000.0 ** (-np.arange(0, 8, 2) / 8)
    for i, w in enumerate(freqs):
        c, s = np.cos(k * w), np.sin(k * w)
        R = np.array([[c, -s], [s, c]])  # [sin, cos](t + k) = [sin, cos](t) @ R, same R for all t
        pair = pe[:, 2 * i : 2 * i + 2]
        np.testing.assert_allclose(pair[:-k] @ R, pair[k:], atol=1e-12)


def test_sinusoidal_base_and_errors():
    assert not np.allclose(sinusoidal_encoding(4, 4, base=100.0), sinusoidal_encoding(4, 4))
    with pytest.raises(ValueError, match=r"T must be >= 1, got T=0"):
        sinusoidal_encoding(0, 4)
    with pytest.raises(ValueError, match=r"d_model must be even and >= 2.*got 7"):
        sinusoidal_encoding(3, 7)


def test_learned_positional_embedding():
    torch.manual_seed(0)
    emb = LearnedPositionalEmbedding(10, 6)
    p = emb(4)
    assert p.shape == (4, 6)
    assert torch.equal(emb(3, offset=2), emb.table.weight[2:5])
    assert p.requires_grad
    with pytest.raises(ValueError, match=r"positions up to 10 requested but max_len is 10"):
        emb(5, offset=6)
    with pytest.raises(ValueError, match=r"T must be >= 1 and offset >= 0, got T=0"):
        emb(0)
    with pytest.raises(ValueError, match=r"offset=-1"):
        emb(2, offset=-1)
    with pytest.raises(ValueError, match=r"max_len and d_model must be >= 1, got 0, 6"):
        LearnedPositionalEmbedding(0, 6)
