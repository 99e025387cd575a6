"""Autoregressive decoding with a key/value cache.

When a model generates one token at a time with a causal mask, the keys and values of earlier
tokens never change. A cache keeps them, so each step projects only the new token(s) and attends
from them to everything cached: O(S) work per step instead of recomputing O(S^2).

The new queries are the *last* T_new positions of S, so the causal mask must be aligned
bottom-right (query i of the new block sees keys j <= S - T_new + i). torch's ``is_causal`` aligns
top-left, which would let the single new query see key 0 only: a classic bug.

With grouped-query attention the cache stores the layer's ``num_kv_heads`` key/value heads, not
``num_heads``: that is the memory it saves. :class:`SlidingWindowCache` keeps only the last W
positions in a ring buffer, for a layer whose queries see a window of W keys: its memory stays
the same however long the sequence grows.

Both caches have ``update(k, v)``, which stores the new keys and values and returns what the new
queries attend to: ``(keys, values, mask, key_positions)``. The attention itself lives once, in
``MultiHeadSelfAttention.step``.
"""

from __future__ import annotations

import torch

from ._validate import require_int, require_tensor, shape_str
from .masks import causal_mask
from .multihead import MultiHeadSelfAttention


def _buffer_kw(mha: MultiHeadSelfAttention) -> dict:
    """dtype and device of the keys ``mha`` projects, for a cache made for it."""
    w = mha.W_k.weight
    return {"dtype": w.dtype, "device": w.device}


class KVCache:
    """Preallocated key and value buffers of shape (B, H_kv, max_len, d_head).

    Args:
        batch, num_heads, max_len, d_head: the buffer sizes (each >= 1); ``num_heads`` is the
            number of key/value heads H_kv the layer projects to (``mha.num_kv_heads``).
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
        """A cache sized for ``mha`` (its key/value heads, d_head, dtype and device)."""
        return cls(batch, mha.num_kv_heads, max_len, mha.d_head, **_buffer_kw(mha))

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
        self._check(k, v)
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

    def _check(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Raise unless k and v are (B, H_kv, T_new, d_head) tensors of this cache's sizes."""
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

    def update(self, k: torch.Tensor, v: torch.Tensor):
        """Append k, v (B, H_kv, T_new, d_head); return (keys, values, mask, key_positions).

        keys and values are (B, H_kv, S, d_head) with S = the length after the step; mask
        (T_new, S) is causal aligned bottom-right (the new queries are the last T_new positions);
        key_positions (S,) is 0 .. S-1.
        """
        k_all, v_all = self.append(k, v)
        S, T_new = self.length, k.shape[2]
        mask = causal_mask(T_new, S, device=k.device, align="bottom_right")
        return k_all, v_all, mask, torch.arange(S, device=k.device)


class SlidingWindowCache:
    """A ring buffer of the last ``window`` keys and values, (B, H_kv, window, d_head).

    Position p lives in slot p % window, so a new token overwrites the one ``window`` positions
    before it, which no later query can see. ``length`` counts every position seen; the memory is
    fixed at construction, whatever that count grows to.

    Args:
        batch, num_heads, window, d_head: the buffer sizes (each >= 1); ``num_heads`` is H_kv.
        dtype, device: of the buffers.
    Raises:
        TypeError: a size is not an int (NumPy integers are fine).
        ValueError: a size < 1.
    """

    def __init__(
        self,
        batch: int,
        num_heads: int,
        window: int,
        d_head: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        window = require_int("window", window)  # named here, not as the ring's max_len
        self._ring = KVCache(batch, num_heads, window, d_head, dtype=dtype, device=device)
        # The position held by each slot; -1 = empty.
        self._pos = torch.full((window,), -1, dtype=torch.long, device=device)
        self.window = window
        self.length = 0

    @classmethod
    def for_module(cls, mha: MultiHeadSelfAttention, batch: int, window: int) -> SlidingWindowCache:
        """A ring buffer of ``window`` positions sized for ``mha``."""
        return cls(batch, mha.num_kv_heads, window, mha.d_head, **_buffer_kw(mha))

    @property
    def positions(self) -> torch.Tensor:
        """The position held by each slot, (window,) long; -1 marks an empty slot (a copy)."""
        return self._pos.clone()

    @property
    def nbytes(self) -> int:
        """Bytes held by the key/value ring and its position table (fixed)."""
        return self._ring.nbytes + self._pos.numel() * self._pos.element_size()

    def reset(self) -> None:
        """Forget every cached position (the buffers are kept)."""
        self._pos.fill_(-1)
        self.length = 0

    def update(self, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, H_kv, T_new, d_head); return (keys, values, mask, key_positions).

        The new query at position p may see keys p - window + 1 .. p. One new token is written
        into its slot and the ring itself is returned (no copy). Several new tokens (a prompt)
        attend to the ring's contents followed by themselves, and only then is the ring
        overwritten, since the first of them may need keys that the last ones would evict.

        Raises:
            TypeError, ValueError: k or v is not a (B, H_kv, T_new, d_head) tensor of the cache.
        """
        ring = self._ring
        ring._check(k, v)
        T_new, W = k.shape[2], self.window
        q_pos = torch.arange(self.length, self.length + T_new, device=self._pos.device)
        if T_new == 1:
            slot = self.length % W
            ring._k[:, :, slot : slot + 1] = k
            ring._v[:, :, slot : slot + 1] = v
            self._pos[slot] = self.length
            keys, values, key_pos = ring._k, ring._v, self._pos.clone()
        else:
            old = self._pos >= 0
            keys = torch.cat([ring._k[:, :, old], k], dim=2)  # (B, H_kv, n_old + T_new, d_head)
            values = torch.cat([ring._v[:, :, old], v], dim=2)
            key_pos = torch.cat([self._pos[old], q_pos])
            keep = q_pos[-W:]  # the last W new positions stay in the ring
            ring._k[:, :, keep % W] = k[:, :, -W:]
            ring._v[:, :, keep % W] = v[:, :, -W:]
            self._pos[keep % W] = keep
        self.length += T_new
        # causal and within the window; empty slots (position -1) are never seen
        diff = q_pos[:, None] - key_pos[None, :]  # (T_new, S)
        mask = (key_pos[None, :] >= 0) & (diff >= 0) & (diff < W)
        return keys, values, mask, key_pos.clamp(min=0)


def decode_step(
    mha: MultiHeadSelfAttention,
    x_new: torch.Tensor,
    cache: KVCache,
    padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Causal self-attention of new tokens against everything cached: ``mha.step``.

    Args:
        mha: the attention layer.
        x_new: (B, T_new, d_model), the tokens after the ``cache.length`` already seen.
        cache: a :class:`KVCache` (or :class:`SlidingWindowCache`) for ``mha``; it grows by T_new.
        padding_mask: optional (B, S) bool over all S = cache.length + T_new positions,
            True = a real token.
        need_weights: also return the weights. With False, torch's fused
            ``scaled_dot_product_attention`` runs instead of the library's SDPA, which builds
            the (B, H, T_new, S) weights: the same output, faster (time decoding this way).
    Returns:
        (out, weights): out (B, T_new, d_model), equal to the last T_new rows of
        ``mha(x_all, is_causal=True)``; weights (B, H, T_new, S), or None when
        ``need_weights=False``.
    Raises:
        TypeError: x_new is not a floating tensor, or padding_mask is not a bool tensor.
        ValueError: x_new is not (B, T_new, d_model) with T_new >= 1, padding_mask is not
            (B, cache.length + T_new), or the cache overflows.
    """
    return mha.step(x_new, cache, padding_mask=padding_mask, need_weights=need_weights)
