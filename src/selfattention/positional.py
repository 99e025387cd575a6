"""Positional encodings: how attention learns where a token is.

Attention without positions is permutation-equivariant: shuffle the tokens and the outputs shuffle
the same way. Adding a position-dependent vector to each token breaks that symmetry.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ._validate import require_tensor, shape_str


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


def rope_frequencies(d: int, base: float = 10000.0) -> torch.Tensor:
    """The d/2 rotation speeds of RoPE, omega_i = base^(-2i/d), fastest first (float64)."""
    return base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)


def _check_rope_input(x, positions) -> torch.Tensor:
    """Validate apply_rope's arguments; return positions as a (T,) or (B, T) tensor."""
    require_tensor("x", x)  # a floating tensor
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., T, d), got shape {shape_str(x.shape)}.")
    T, d = x.shape[-2], x.shape[-1]
    if d % 2:
        raise ValueError(
            f"x's last dimension d must be even for RoPE (it rotates d/2 pairs of features), got "
            f"d={d} (x has shape {shape_str(x.shape)})."
        )
    if positions is None:
        return torch.arange(T, device=x.device)
    require_tensor("positions", positions, floating=False)
    if positions.dtype == torch.bool or positions.is_floating_point() or positions.is_complex():
        raise TypeError(
            f"positions must hold integers (e.g. torch.long), got dtype {positions.dtype}."
        )
    if positions.ndim == 1 and positions.shape[0] == T:
        return positions
    if positions.ndim == 2 and x.ndim >= 3 and tuple(positions.shape) == (x.shape[0], T):
        return positions
    allowed = f"(T,) with T = {T}"
    if x.ndim >= 3:
        allowed += f", or (B, T) = ({x.shape[0]}, {T})"
    raise ValueError(
        f"positions must have shape {allowed}, for x of shape {shape_str(x.shape)}, got shape "
        f"{shape_str(positions.shape)}."
    )


def apply_rope(
    x: torch.Tensor, positions: torch.Tensor | None = None, base: float = 10000.0
) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021): rotate each pair of features by its position.

    Pair i is the features (2i, 2i+1) (the *interleaved* convention of the RoFormer paper and of
    chapter 4's R(k)); at position m it turns by the angle m * omega_i with
    omega_i = base^(-2i/d). Applied to queries and keys (never to values), it makes
    q_m . k_n depend on m - n only: R(m)^T R(n) = R(n - m).

    Args:
        x: (..., T, d) floating tensor, d even; typically q or k of shape (B, H, T, d_head).
        positions: integer positions, (T,) shared by every sequence, or (B, T) with
            B = x.shape[0], one row per sequence; default ``arange(T)``.
        base: the wavelength scale (10000 in most models).
    Returns:
        A tensor of x's shape and dtype.
    Raises:
        TypeError: x is not a floating tensor, or positions is not an integer tensor.
        ValueError: d is odd, or positions is neither (T,) nor (B, T).
    """
    pos = _check_rope_input(x, positions)
    d = x.shape[-1]
    # Angles in float64: positions times small frequencies lose digits in float32.
    angles = pos.to(torch.float64)[..., None] * rope_frequencies(d, base).to(x.device)  # (.., T, d/2)
    if pos.ndim == 2:  # (B, T, d/2) -> (B, 1, .., 1, T, d/2), broadcast over heads
        angles = angles.reshape(angles.shape[0], *([1] * (x.ndim - 3)), *angles.shape[1:])
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., T, d/2): the two features of each pair
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out


def rope_halves(
    x: torch.Tensor, positions: torch.Tensor | None = None, base: float = 10000.0
) -> torch.Tensor:
    """RoPE in the *halves* convention (GPT-NeoX, Llama in Hugging Face): pair i is (i, i + d/2).

    It is :func:`apply_rope` on features reordered by a fixed permutation; q and k are reordered
    alike, so every score q . k is the same, and a model trained with one convention learns
    W_Q, W_K with permuted columns. Same arguments, shapes and errors as :func:`apply_rope`.
    """
    d = x.shape[-1] if isinstance(x, torch.Tensor) else 0
    _check_rope_input(x, positions)
    # interleave the halves, rotate, then undo the reordering
    perm = torch.arange(d, device=x.device).view(2, d // 2).t().reshape(-1)  # 0, d/2, 1, d/2+1, ..
    inv = torch.argsort(perm)
    return apply_rope(x[..., perm], positions, base)[..., inv]
