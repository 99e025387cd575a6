"""Autoregressive decoding with a key/value cache.

When a model generates one token at a time with a causal mask, the keys and values of earlier
tokens never change. A cache keeps them, so each step projects only the new token(s) and attends
from them to everything cached: O(S) work per step instead of recomputing O(S^2).

The new queries are the *last* T_new positions of S, so the causal mask must be aligned
bottom-right (query i of the new block sees keys j <= S - T_new + i). torch's ``is_causal`` aligns
top-left, which would let the single new query see key 0 only: a classic bug.
"""

from __future__ import annotations

import torch

from ._validate import require_input_dtype, require_int, require_padding_mask, require_tensor, shape_str
from .masks import causal_mask
from .multihead import MultiHeadSelfAttention, merge_heads, scaled_dot_product_attention


class KVCache:
    """Preallocated key and value buffers of shape (B, H, max_len, d_head).

    Args:
        batch, num_heads, max_len, d_head: the buffer sizes (each >= 1).
        dtype, device: of the buffers.
    Raises:
        TypeError: a size is not an int (NumPy integers are fine).
        ValueError: a size < 1.
    """

    def __init__(
        self,
        batch: int,
        num_heads: int,
        max_len: int,
        d_head: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        shape = tuple(require_int(name, n) for name, n in (("batch", batch), ("num_heads", num_heads),
                                                           ("max_len", max_len), ("d_head", d_head)))
        self._k = torch.zeros(shape, dtype=dtype, device=device)
        self._v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0

    @classmethod
    def for_module(cls, mha: MultiHeadSelfAttention, batch: int, max_len: int) -> KVCache:
        """A cache sized for ``mha`` (its heads, d_head, dtype and device)."""
        w = mha.W_k.weight
        return cls(batch, mha.num_heads, max_len, mha.d_head, dtype=w.dtype, device=w.device)

    @property
    def max_len(self) -> int:
        return self._k.shape[2]

    @property
    def keys(self) -> torch.Tensor:
        """Cached keys so far, (B, H, length, d_head) (a view, no copy)."""
        return self._k[:, :, : self.length]

    @property
    def values(self) -> torch.Tensor:
        """Cached values so far, (B, H, length, d_head) (a view, no copy)."""
        return self._v[:, :, : self.length]

    @property
    def nbytes(self) -> int:
        """Bytes held by the two buffers (allocated up front for max_len positions)."""
        return self._k.numel() * self._k.element_size() * 2

    def reset(self) -> None:
        """Forget every cached position (the buffers are kept)."""
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new keys/values (B, H, T_new, d_head); return all keys and values so far.

        Raises:
            TypeError: k or v is not a tensor.
            ValueError: k or v does not have shape (B, H, T_new, d_head) matching the cache, or the
                cache would overflow ``max_len``.
        """
        require_tensor("k", k)
        require_tensor("v", v)
        B, H, _, d = self._k.shape
        for name, t in (("k", k), ("v", v)):
            if t.ndim != 4 or (t.shape[0], t.shape[1], t.shape[3]) != (B, H, d):
                raise ValueError(
                    f"{name} must have shape (B, H, T_new, d_head) = ({B}, {H}, T_new, {d}), got "
                    f"shape {shape_str(t.shape)}."
                )
        if k.shape != v.shape:
            raise ValueError(
                f"k and v must have the same shape, got {shape_str(k.shape)} and "
                f"{shape_str(v.shape)}."
            )
        n = k.shape[2]
        if self.length + n > self.max_len:
            raise ValueError(
                f"the cache holds {self.length} of max_len={self.max_len} positions and cannot take "
                f"{n} more; make a larger KVCache."
            )
        self._k[:, :, self.length : self.length + n] = k
        self._v[:, :, self.length : self.length + n] = v
        self.length += n
        return self.keys, self.values


def decode_step(
    mha: MultiHeadSelfAttention,
    x_new: torch.Tensor,
    cache: KVCache,
    padding_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal self-attention of new tokens against everything cached, updating the cache.

    Args:
        mha: the attention layer.
        x_new: (B, T_new, d_model), the tokens after the ``cache.length`` already seen.
        cache: a :class:`KVCache` for ``mha``; it grows by T_new.
        padding_mask: optional (B, S) bool over all S = cache.length + T_new positions,
            True = a real token.
    Returns:
        (out, weights): out (B, T_new, d_model), equal to the last T_new rows of
        ``mha(x_all, is_causal=True)``; weights (B, H, T_new, S).
    Raises:
        TypeError: x_new is not a floating tensor, or padding_mask is not a bool tensor.
        ValueError: x_new is not (B, T_new, d_model) with T_new >= 1, padding_mask is not
            (B, cache.length + T_new), or the cache overflows.
    """
    require_tensor("x_new", x_new)
    if x_new.ndim != 3 or x_new.shape[-1] != mha.d_model or x_new.shape[1] == 0:
        raise ValueError(
            f"x_new must have shape (B, T_new, d_model) = (B, T_new, {mha.d_model}) with "
            f"T_new >= 1, got shape {shape_str(x_new.shape)}."
        )
    require_input_dtype("x_new", x_new, mha.W_q.weight.dtype)
    T_new = x_new.shape[1]
    if padding_mask is not None:
        # Checked before the cache grows, so a bad mask leaves the cache as it was.
        B, S_after = x_new.shape[0], cache.length + T_new
        require_padding_mask(padding_mask, (B, S_after), "(B, cache.length + T_new)")
    q, k, v = mha.project(x_new)  # each (B, H, T_new, d_head)
    k_all, v_all = cache.append(k, v)  # (B, H, S, d_head)
    S = cache.length
    # Bottom-right: the new queries are positions S - T_new .. S - 1 of the sequence.
    mask = causal_mask(T_new, S, device=x_new.device, align="bottom_right")
    if padding_mask is not None:
        mask = mask & padding_mask[:, None, None, :]
    out, weights = scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)
    return mha.W_o(merge_heads(out)), weights
