"""Positional encodings: how attention learns where a token is.

Attention without positions is permutation-equivariant: shuffle the tokens and the outputs shuffle
the same way. Adding a position-dependent vector to each token breaks that symmetry.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def sinusoidal_encoding(T: int, d_model: int, base: float = 10000.0) -> np.ndarray:
    """Sinusoidal encodings of Vaswani et al. (2017), shape (T, d_model), float64.

    PE[t, 2i] = sin(t / base^(2i/d_model)), PE[t, 2i+1] = cos(t / base^(2i/d_model)).
    Low dimensions turn fast (tell neighbours apart), high ones slowly (tell far positions apart),
    and PE[t + k] is a fixed rotation of PE[t], so relative offsets are easy to read.

    Raises:
        ValueError: T < 1, or d_model < 2 or odd.
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got T={T}.")
    if d_model < 2 or d_model % 2:
        raise ValueError(f"d_model must be even and >= 2 (sines and cosines pair up), got {d_model}.")
    positions = np.arange(T)[:, None]  # (T, 1)
    freqs = base ** (-np.arange(0, d_model, 2) / d_model)  # (d_model/2,)
    angles = positions * freqs[None, :]  # (T, d_model/2)
    pe = np.empty((T, d_model))
    pe[:, 0::2] = np.sin(angles)
    pe[:, 1::2] = np.cos(angles)
    return pe


class LearnedPositionalEmbedding(nn.Module):
    """One trainable d_model vector per position 0 .. max_len-1 (as in GPT-2)."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        if max_len < 1 or d_model < 1:
            raise ValueError(f"max_len and d_model must be >= 1, got {max_len}, {d_model}.")
        self.table = nn.Embedding(max_len, d_model)

    def forward(self, T: int, offset: int = 0) -> torch.Tensor:
        """Embeddings of positions offset .. offset+T-1, shape (T, d_model).

        Raises:
            ValueError: T < 1, offset < 0, or offset + T > max_len.
        """
        if T < 1 or offset < 0:
            raise ValueError(f"T must be >= 1 and offset >= 0, got T={T}, offset={offset}.")
        if offset + T > self.table.num_embeddings:
            raise ValueError(
                f"positions up to {offset + T - 1} requested but max_len is "
                f"{self.table.num_embeddings}."
            )
        pos = torch.arange(offset, offset + T, device=self.table.weight.device)
        return self.table(pos)
