"""Checks for attention as current models use it: RoPE (chapter 4) and top-k sampling (chapter 10)."""

from __future__ import annotations

import math

import torch

from .. import positional, sampling
from ._core import Case, CheckResult, Mistake, guard_in_place, in_place_mistake, run_check


def _attend(Q, K, V):
    """softmax(Q K^T / sqrt(d)) V for (B, T, d) tensors, no mask."""
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])  # (B, T, T)
    return scores.softmax(dim=-1) @ V  # (B, T, d)


def _rope_reversed(x, positions):
    """RoPE with the frequencies in the wrong order: the slowest pair first."""
    d = x.shape[-1]
    freqs = positional.rope_frequencies(d).flip(0)  # (d/2,)
    angles = positions.double()[..., None] * freqs  # (B, T, d/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    out = torch.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * cos - x[..., 1::2] * sin
    out[..., 1::2] = x[..., 0::2] * sin + x[..., 1::2] * cos
    return out


def _rope_attention(x, W_q, W_k, W_v, positions, rope=positional.apply_rope, rotate_v=False, before=False):
    if before:
        xr = rope(x, positions)
        return _attend(xr @ W_q, xr @ W_k, x @ W_v)
    Q, K, V = x @ W_q, x @ W_k, x @ W_v  # (B, T, d)
    V = rope(V, positions) if rotate_v else V
    return _attend(rope(Q, positions), rope(K, positions), V)


def rope_attention(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(x, W_q, W_k, W_v, positions) -> out`` (B, T, d): attention with RoPE.

    x (B, T, d); W_q, W_k, W_v (d, d) with Q = x @ W_q; positions (B, T) integers, one row per
    sequence (rows may restart at 0: several short sequences packed into one). The queries and
    keys (not the values) are rotated after the projection, pair i = features (2i, 2i+1) turning
    by positions * base^(-2i/d) with base 10000; no mask.
    """
    g = torch.Generator().manual_seed(4004)
    cases = []
    # Shifting every position of a sequence by one constant changes no score (only m - n counts),
    # so the rows differ in shape: packed sequences whose positions restart, and an offset one.
    # The first rows are not 0 .. T-1, so that ignoring positions and sharing row 0 differ.
    layouts = (
        (8, [[0, 1, 0, 1, 2], [0, 1, 2, 3, 4]]),
        (6, [[5, 6, 0, 1], [0, 1, 2, 3], [0, 1, 0, 1]]),
    )
    for d, rows in layouts:
        B, T = len(rows), len(rows[0])
        x = torch.randn(B, T, d, generator=g, dtype=torch.float64)
        W = [torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d) for _ in range(3)]
        positions = torch.tensor(rows)  # (B, T)
        cases.append(
            Case(
                (x, *W, positions),
                _rope_attention(x, *W, positions),
                f"B={B}, T={T}, d={d}, positions {rows}",
            )
        )
    mistakes = [
        Mistake(
            "the frequency order reversed",
            "pair i turns at omega_i = base^(-2i/d): the first pair (features 0, 1) is the "
            "fastest (omega_0 = 1), the last the slowest.",
            lambda *a: _rope_attention(*a, rope=_rope_reversed),
        ),
        Mistake(
            "rotating the values",
            "RoPE rotates the queries and keys only: their dot product is what must depend on "
            "the offset. The values carry content and are left as they are.",
            lambda *a: _rope_attention(*a, rotate_v=True),
        ),
        Mistake(
            "rotating before the projection",
            "rotate Q = x @ W_q and K = x @ W_k, after the projection; rotating x first lets "
            "W_q and W_k mix the rotated pairs, and q_m . k_n no longer depends on m - n only.",
            lambda *a: _rope_attention(*a, before=True),
        ),
        Mistake(
            "one position shared by the whole batch",
            "each sequence has its own positions (row b of positions): use positions[b] for "
            "sequence b, not the first row for every sequence.",
            lambda x, Wq, Wk, Wv, p: _rope_attention(x, Wq, Wk, Wv, p[0]),
        ),
        Mistake(
            "the halves pairing (rotate_half)",
            "this exercise pairs neighbouring features: pair i is (2i, 2i+1), x[..., 0::2] with "
            "x[..., 1::2]. Pairing feature i with feature i + d/2 (Hugging Face's rotate_half, "
            "GPT-NeoX) is the other convention, a permutation of this one, and gives other "
            "numbers for the same W_q and W_k.",
            lambda *a: _rope_attention(*a, rope=positional.rope_halves),
        ),
        Mistake(
            "positions ignored (0 .. T-1 used)",
            "the sequences here are packed: their positions restart at 0 (and one starts at 5). "
            "Rotate token t of sequence b by positions[b, t], not by t.",
            lambda x, Wq, Wk, Wv, p: _rope_attention(x, Wq, Wk, Wv, torch.arange(x.shape[1])),
        ),
    ]
    return run_check(
        "rope_attention",
        fn,
        cases,
        "(x, W_q, W_k, W_v, positions)",
        mistakes,
        # Loose enough for float32 work (frequencies from torch.arange are float32: errors reach
        # ~3e-7 on outputs of size ~1), far below what any listed mistake changes (> 1e-2).
        rtol=1e-5,
        atol=1e-5,
        raise_on_fail=raise_on_fail,
    )


def _top_k(logits, k, forget=False, fill=float("-inf"), smallest=False, exactly_k=False):
    """Top-k probabilities, right (``sampling.top_k_filter``: ties with the k-th kept) or with
    one classic mistake."""
    if exactly_k:
        # torch.topk's k indices, scattered: of several logits tied at the k-th, some are dropped.
        kept = logits.topk(k, dim=-1).indices  # (B, k)
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, kept, True)
        return logits.masked_fill(~keep, fill).softmax(dim=-1)
    if smallest:
        kth = logits.topk(k, dim=-1, largest=False).values[..., -1:]  # (B, 1): k-th smallest
        return logits.masked_fill(logits > kth, fill).softmax(dim=-1)
    keep = ~torch.isinf(sampling.top_k_filter(logits, k))  # (B, V), True = kept
    if forget:
        return logits.softmax(dim=-1) * keep  # normalised over all V tokens, then cut
    return logits.masked_fill(~keep, fill).softmax(dim=-1)


def top_k_probs(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(logits, k) -> probs``: logits (B, V) -> (B, V), the top-k distribution.

    The rule is ``sampling.top_k_filter``'s: a token is kept when its logit is at least the k-th
    largest of its row (``logits >= logits.topk(k).values[:, -1:]``); the kept tokens share the
    probability, renormalised over them (each row sums to 1), every other token gets 0. Logits
    tied with the k-th largest are all kept, so a row with ties keeps more than k tokens: the
    last case has such ties, and keeping exactly k of them (torch.topk's indices) is named as a
    mistake, since which of the equal logits to keep would be arbitrary.
    """
    g = torch.Generator().manual_seed(1717)
    cases = []
    for B, V, k in ((2, 6, 2), (3, 9, 4)):
        logits = torch.randn(B, V, generator=g, dtype=torch.float64) * 2 - 1  # mostly negative
        cases.append(Case((logits, k), _top_k(logits, k), f"logits of shape ({B}, {V}), k={k}"))
    # Ties at the k-th largest: three logits tie for first (k=2 keeps all three), and three for
    # second (k=2 keeps four tokens).
    tied = torch.tensor(
        [[2.0, 0.5, 2.0, 2.0, -1.0, 0.0], [1.5, 0.3, 0.3, -0.7, 0.3, -2.0]], dtype=torch.float64
    )
    cases.append(
        Case(
            (tied, 2),
            _top_k(tied, 2),
            "logits of shape (2, 6), k=2, with ties at the 2nd largest: every tied logit is kept",
        )
    )
    mistakes = [
        Mistake(
            "a renormalisation that forgets the masked tokens",
            "a softmax over all V logits, then zeroing the others, leaves probabilities that "
            "sum to less than 1. Mask the logits first (-inf outside the top k), then take the "
            "softmax, or divide by the sum over the kept tokens.",
            lambda lg, k: _top_k(lg, k, forget=True),
        ),
        Mistake(
            "masked logits set to 0 instead of -inf",
            "exp(0) = 1 is not 0: a masked logit must be -inf so that its probability is 0.",
            lambda lg, k: _top_k(lg, k, fill=0.0),
        ),
        Mistake(
            "the k smallest logits kept",
            "top-k keeps the k *largest* logits (torch.topk's default, largest=True).",
            lambda lg, k: _top_k(lg, k, smallest=True),
        ),
        Mistake(
            "exactly k kept when logits tie",
            "when several logits tie with the k-th largest, keep them all: mask only the logits "
            "*below* the k-th largest value (logits < logits.topk(k).values[:, -1:]). Keeping "
            "exactly k by torch.topk's indices drops some of the tied tokens, and which ones is "
            "arbitrary (it depends on how topk orders equal values).",
            lambda lg, k: _top_k(lg, k, exactly_k=True),
        ),
        in_place_mistake(
            "logits",
            "masked_fill_ (with the underscore) or logits[...] = -inf writes into the caller's "
            "logits, which generate may still need: use logits.masked_fill(...) (no underscore), "
            "which returns a new tensor.",
        ),
    ]
    return run_check(
        "top_k_probs",
        guard_in_place(fn, ("logits",)),
        cases,
        "(logits, k)",
        mistakes,
        rtol=1e-6,
        atol=1e-9,
        raise_on_fail=raise_on_fail,
    )
