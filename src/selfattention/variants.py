"""Beyond softmax attention over all pairs: the variants of chapter 11.

Three families, each next to a plain reference that the tests compare it with:

Sliding-window (local) attention
    Query i sees only the ``window`` keys i - window + 1 .. i (causal, as
    :func:`selfattention.masks.sliding_window_mask`), or, bidirectionally, every key j with
    ``|i - j| < window``. :func:`sliding_window_attention` really does O(T * window) work: it cuts the
    queries into blocks of ``window`` rows and multiplies each block only with the two (causal) or
    three (bidirectional) key blocks it can see, never forming a (T, T) matrix.
    :func:`sliding_window_reference` is full attention with the mask, O(T^2), for testing.

Linear attention (Katharopoulos et al. 2020)
    Replace exp(q . k / sqrt(d)) by phi(q) . phi(k) with a positive feature map phi (elu(x) + 1).
    Then sum_j phi(q_i) . phi(k_j) v_j = phi(q_i) (sum_j phi(k_j)^T v_j), and the (d_k, d_v) sum is
    computed once: O(T d^2) instead of O(T^2 d). :func:`linear_attention` does that (causal: in
    chunks, with running sums); :func:`linear_attention_reference` builds the explicit (T, S)
    weights of the *same* kernel. Neither equals softmax attention: that is the price.

Structured self-attentive sentence embedding (Lin et al. 2017)
    :class:`StructuredSelfAttention` turns T token states H (T, d_in) into r summaries
    ("hops") with A = softmax(W_s2 tanh(W_s1 H^T)) of shape (r, T) and M = A H of shape (r, d_in).
    :func:`penalty` is the paper's ||A A^T - I||_F^2, which pushes the r hops apart.

Shapes: q (..., T, d_k), k (..., S, d_k), v (..., S, d_v) with the same leading dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import masks
from ._validate import check_qkv_tensors, require_int, require_padding_mask, require_tensor, shape_str
from .multihead import scaled_dot_product_attention

__all__ = [
    "StructuredSelfAttention",
    "elu_feature_map",
    "linear_attention",
    "linear_attention_reference",
    "local_mask",
    "penalty",
    "sliding_window_attention",
    "sliding_window_reference",
]


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _check_qkv(q, k, v) -> None:
    check_qkv_tensors(q, k, v, same_leading=True)


def _check_self(q, k, what: str) -> None:
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"{what} needs as many queries as keys (T == S): q has shape {shape_str(q.shape)} "
            f"(T={q.shape[-2]}) but k has shape {shape_str(k.shape)} (S={k.shape[-2]})."
        )


# ---------------------------------------------------------------------------------------------
# Sliding-window attention
# ---------------------------------------------------------------------------------------------


def local_mask(
    T: int, window: int, is_causal: bool = True, device: torch.device | str | None = None
) -> torch.Tensor:
    """(T, T) bool mask, True = attend, for sliding-window attention.

    Causal: query i sees keys i - window + 1 .. i (exactly ``masks.sliding_window_mask``).
    Bidirectional (``is_causal=False``): query i sees keys j with ``|i - j| < window``.

    Raises:
        TypeError: T is not an int.
        ValueError: T or ``window`` < 1.
    """
    causal_band = masks.sliding_window_mask(T, window, device=device)
    if is_causal:
        return causal_band
    return causal_band | causal_band.T


def sliding_window_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    is_causal: bool = True,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sliding-window attention the slow way: full (T, T) scores with :func:`local_mask`.

    O(T^2) time and memory; kept as the reference that :func:`sliding_window_attention` is tested
    against. Returns ``(out, weights)``: out (..., T, d_v), weights (..., T, T).
    """
    _check_qkv(q, k, v)
    _check_self(q, k, "sliding-window attention")
    require_int("window", window)
    mask = local_mask(q.shape[-2], window, is_causal=is_causal, device=q.device)
    return scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def sliding_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    is_causal: bool = True,
    scale: float | None = None,
) -> torch.Tensor:
    """Sliding-window attention in O(T * window) time and memory (banded, never (T, T)).

    The T queries are cut into blocks of w = min(window, T) rows. Under the causal window, block b
    (rows b*w .. b*w + w - 1) can only see keys (b - 1)*w + 1 .. b*w + w - 1, which lie in the key
    blocks b - 1 and b; bidirectionally it also needs block b + 1. So each block multiplies a
    (w, d_k) query block with a (2w or 3w, d_k) slice of keys: T/w blocks of O(w^2 d) work each,
    O(T w d) in all. The slices are views made by ``unfold`` (no copy), the few keys of those
    slices that lie outside the window (or before position 0 / after T - 1) are masked.

    Args:
        q: (..., T, d_k). k: (..., T, d_k). v: (..., T, d_v). Same leading dimensions, T == S.
        window: keys each query sees (>= 1), including itself. ``window >= T`` gives full causal
            (or, bidirectionally, full) attention.
        is_causal: keys i - window + 1 .. i (True, the default, as ``masks.sliding_window_mask``)
            or keys ``|i - j| < window`` (False).
        scale: multiply the scores by this; default 1/sqrt(d_k).
    Returns:
        out (..., T, d_v), equal to :func:`sliding_window_reference`'s output.
    Raises:
        TypeError: an input is not a floating tensor, or dtypes differ.
        ValueError: shapes disagree (the message gives them), T != S, an empty sequence, or
            ``window`` < 1.
    """
    _check_qkv(q, k, v)
    _check_self(q, k, "sliding-window attention")
    require_int("window", window)
    *lead, T, d_k = q.shape
    d_v = v.shape[-1]
    w = min(window, T)
    n_blocks = -(-T // w)
    pad_end = n_blocks * w - T
    after = 0 if is_causal else w  # a bidirectional block also sees the next key block
    span = 2 * w + after  # keys per query block
    if scale is None:
        scale = 1.0 / math.sqrt(d_k)

    qb = F.pad(q * scale, (0, 0, 0, pad_end)).reshape(*lead, n_blocks, w, d_k)
    # Keys and values with w zero rows in front (block b - 1 of block 0) and zeros at the end.
    kp = F.pad(k, (0, 0, w, pad_end + after))  # (..., w + n_blocks * w + after, d_k)
    vp = F.pad(v, (0, 0, w, pad_end + after))
    kb = kp.unfold(-2, span, w).transpose(-1, -2)  # (..., n_blocks, span, d_k), a view
    vb = vp.unfold(-2, span, w).transpose(-1, -2)  # (..., n_blocks, span, d_v)

    scores = qb @ kb.transpose(-1, -2)  # (..., n_blocks, w, span)
    # Query a of block b is position b*w + a; key c of its slice is position (b - 1)*w + c.
    blk = torch.arange(n_blocks, device=q.device)[:, None, None]
    qpos = blk * w + torch.arange(w, device=q.device)[None, :, None]  # (n_blocks, w, 1)
    kpos = (blk - 1) * w + torch.arange(span, device=q.device)[None, None, :]  # (n_blocks, 1, span)
    offset = qpos - kpos  # i - j
    allowed = (offset < window) & (kpos >= 0) & (kpos < T)
    allowed &= (offset >= 0) if is_causal else (offset > -window)
    scores.masked_fill_(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # every real query sees at least itself
    out = (weights @ vb).reshape(*lead, n_blocks * w, d_v)
    return out[..., :T, :]


# ---------------------------------------------------------------------------------------------
# Linear attention
# ---------------------------------------------------------------------------------------------


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1, the positive feature map of Katharopoulos et al. (2020).

    elu(x) + 1 is x + 1 for x > 0 and exp(x) for x <= 0: always > 0, so every weight
    phi(q) . phi(k) is positive and the normalising sum never vanishes.
    """
    return F.elu(x) + 1.0


def linear_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    is_causal: bool = False,
    feature_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernelised attention computed the quadratic way, with explicit (T, S) weights.

    weights[i, j] = phi(q_i) . phi(k_j) / sum_l phi(q_i) . phi(k_l) (over l <= i when causal), and
    out = weights @ v. The same numbers as :func:`linear_attention`, at O(T S d) cost; it exists to
    test that function and to draw the kernel's weights next to softmax's.

    Returns:
        (out, weights): out (..., T, d_v), weights (..., T, S).
    Raises:
        see :func:`linear_attention`.
    """
    _check_qkv(q, k, v)
    if is_causal:
        _check_self(q, k, "causal linear attention")
    phi = elu_feature_map if feature_map is None else feature_map
    sim = phi(q) @ phi(k).transpose(-1, -2)  # (..., T, S), all > 0
    if is_causal:
        sim = sim.tril()
    weights = sim / sim.sum(dim=-1, keepdim=True)
    return weights @ v, weights


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    is_causal: bool = False,
    feature_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Linear attention (Katharopoulos et al. 2020): O(T d_k d_v) instead of O(T S d).

    Non-causal: out_i = phi(q_i) (phi(K)^T V) / (phi(q_i) . sum_j phi(k_j)); the (d_k, d_v) matrix
    phi(K)^T V and the (d_k,) vector sum_j phi(k_j) are computed once for all queries.

    Causal: query i may only use the sums over j <= i. The sequence is cut into chunks of
    ``chunk_size``; each chunk uses the running sums of all earlier chunks (a cumulative sum over
    chunks of (d_k, d_v) matrices) plus a small masked (chunk, chunk) product inside the chunk.
    Work O(T * chunk * d + T * d_k * d_v), memory O(T * d_k * d_v / chunk): linear in T.

    Args:
        q: (..., T, d_k). k: (..., S, d_k). v: (..., S, d_v). Same leading dimensions; causal
            needs T == S.
        is_causal: query i uses keys j <= i only.
        feature_map: phi, applied to q and k; must return positive numbers. Default
            :func:`elu_feature_map`. (No 1/sqrt(d_k): the kernel replaces the softmax entirely.)
        chunk_size: chunk length of the causal computation (>= 1); does not change the result.
    Returns:
        out (..., T, d_v), equal to :func:`linear_attention_reference`'s output.
    Raises:
        TypeError: an input is not a floating tensor, or dtypes differ.
        ValueError: shapes disagree (the message gives them), an empty sequence, T != S when
            causal, or ``chunk_size`` < 1.
    """
    _check_qkv(q, k, v)
    require_int("chunk_size", chunk_size)
    phi = elu_feature_map if feature_map is None else feature_map
    qf, kf = phi(q), phi(k)  # (..., T, d_k), (..., S, d_k)
    if not is_causal:
        kv = kf.transpose(-1, -2) @ v  # (..., d_k, d_v): computed once
        z = kf.sum(dim=-2)  # (..., d_k)
        return (qf @ kv) / (qf @ z.unsqueeze(-1))  # (..., T, d_v) / (..., T, 1)

    _check_self(q, k, "causal linear attention")
    *lead, T, d_k = q.shape
    d_v = v.shape[-1]
    C = min(chunk_size, T)
    n = -(-T // C)
    pad = n * C - T  # padded keys come last, so no real (causal) query ever sees them
    qc = F.pad(qf, (0, 0, 0, pad)).reshape(*lead, n, C, d_k)
    kc = F.pad(kf, (0, 0, 0, pad)).reshape(*lead, n, C, d_k)
    vc = F.pad(v, (0, 0, 0, pad)).reshape(*lead, n, C, d_v)

    chunk_kv = kc.transpose(-1, -2) @ vc  # (..., n, d_k, d_v): each chunk's sum of phi(k)^T v
    chunk_z = kc.sum(dim=-2)  # (..., n, d_k)
    # Sums over all EARLIER chunks: an exclusive cumulative sum (shift by one chunk, zeros first).
    # Not cumsum - chunk_kv: (a + b) - b is not exactly a, and the future would leak in as noise.
    before_kv = F.pad(chunk_kv.cumsum(dim=-3), (0, 0, 0, 0, 1, 0))[..., :-1, :, :]
    before_z = F.pad(chunk_z.cumsum(dim=-2), (0, 0, 1, 0))[..., :-1, :]
    inside = (qc @ kc.transpose(-1, -2)).tril()  # (..., n, C, C): j <= i within the chunk
    num = qc @ before_kv + inside @ vc  # (..., n, C, d_v)
    den = (qc @ before_z.unsqueeze(-1)) + inside.sum(dim=-1, keepdim=True)  # (..., n, C, 1)
    return (num / den).reshape(*lead, n * C, d_v)[..., :T, :]


# ---------------------------------------------------------------------------------------------
# Structured self-attentive sentence embedding (Lin et al. 2017)
# ---------------------------------------------------------------------------------------------


class StructuredSelfAttention(nn.Module):
    """r attention "hops" over token states, as in Lin et al. (2017).

    A = softmax(W_s2 tanh(W_s1 H^T)), one row per hop, the softmax over the T tokens;
    M = A H, one d_in-wide summary of the sentence per hop.

    Args:
        d_in: width of the token states H (2u in the paper, for a BiLSTM of u units).
        d_a: hidden width of the scoring MLP (W_s1 is d_a x d_in).
        r: number of hops (W_s2 is r x d_a).
    Raises:
        ValueError: an argument is not an int >= 1.
    """

    def __init__(self, d_in: int, d_a: int, r: int) -> None:
        super().__init__()
        for name, n in (("d_in", d_in), ("d_a", d_a), ("r", r)):
            require_int(name, n)
        self.d_in, self.d_a, self.r = d_in, d_a, r
        # nn.Linear computes x W^T, so W_s1.weight is the paper's W_s1 (d_a, d_in).
        self.W_s1 = nn.Linear(d_in, d_a, bias=False)
        self.W_s2 = nn.Linear(d_a, r, bias=False)

    def forward(
        self, H: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """H (..., T, d_in) -> (M, A): M (..., r, d_in), A (..., r, T), rows of A sum to 1.

        Args:
            H: token states.
            padding_mask: optional (..., T) bool, True = a real token; padded tokens get weight 0.
        Raises:
            TypeError: H is not a floating tensor, or padding_mask is not a bool tensor.
            ValueError: H is not (..., T, d_in), T is 0, or padding_mask is not (..., T).
        """
        require_tensor("H", H)
        if H.ndim < 2 or H.shape[-1] != self.d_in:
            raise ValueError(
                f"H must have shape (..., T, d_in) = (..., T, {self.d_in}), got shape "
                f"{shape_str(H.shape)}."
            )
        if H.shape[-2] == 0:
            raise ValueError(f"H has an empty sequence (shape {shape_str(H.shape)}).")
        scores = self.W_s2(torch.tanh(self.W_s1(H))).transpose(-1, -2)  # (..., r, T)
        if padding_mask is not None:
            require_padding_mask(padding_mask, tuple(H.shape[:-1]), "(..., T)")
            scores = scores.masked_fill(~padding_mask.unsqueeze(-2), float("-inf"))
        A = torch.softmax(scores, dim=-1)  # (..., r, T)
        return A @ H, A

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_a={self.d_a}, r={self.r}"


def penalty(A: torch.Tensor) -> torch.Tensor:
    """Lin et al.'s penalty ||A A^T - I||_F^2 for hops A (..., r, T); returns shape (...).

    A A^T is (r, r): its diagonal holds each hop's sum of squared weights (1 only for a one-hot
    hop) and its off-diagonal entries the overlap of two hops (0 only when they share no token).
    So the penalty is 0 exactly when the hops are one-hot on r different tokens, and it grows when
    hops spread out or pile onto the same tokens. Averaged over a batch, it is added to the loss
    with a coefficient.

    Raises:
        TypeError: A is not a floating tensor.
        ValueError: A has fewer than 2 dimensions.
    """
    require_tensor("A", A)
    if A.ndim < 2:
        raise ValueError(f"A must have shape (..., r, T), got shape {shape_str(A.shape)}.")
    r = A.shape[-2]
    eye = torch.eye(r, dtype=A.dtype, device=A.device)
    return ((A @ A.transpose(-1, -2) - eye) ** 2).sum(dim=(-2, -1))
