"""Choosing the next token from a model's logits: greedy, temperature, top-k and top-p.

logits (B, V) -> token ids (B,). Greedy takes the argmax. Sampling draws from
softmax(logits / temperature): a temperature below 1 sharpens the distribution and, as it goes to
0, all the probability moves to the argmax, so greedy is the limit of sampling. Top-k keeps the k
most likely tokens, top-p (nucleus) the fewest whose probability adds up to at least p; both set
the other logits to -inf *before* the softmax, so the kept probabilities are renormalised over
the kept tokens only. Both keep every token tied with the last one kept, so the result never
depends on how a sort orders equal logits.
"""

from __future__ import annotations

import math

import torch

from ._validate import require_int, require_real

__all__ = ["check_sampling", "filter_logits", "sample_next", "top_k_filter", "top_p_filter"]


def check_sampling(temperature, top_k, top_p) -> None:
    """Raise for settings that cannot sample; None means "not used" (all three None is greedy).

    Raises:
        TypeError: temperature or top_p is not a real number (Python or NumPy; not a bool), or
            top_k is not an int (NumPy integers are fine).
        ValueError: temperature is not a finite number > 0 (0, inf and NaN included: for greedy
            decoding leave all three None), top_k <= 0, or top_p outside (0, 1].
    """
    if temperature is not None:
        t = require_real("temperature", temperature, "a real number or None")
        # inf would divide every finite logit to 0 and a -inf one to NaN; NaN fails every test.
        if not 0 < t < math.inf:
            raise ValueError(
                f"temperature must be a finite number > 0, got temperature={t}; for greedy "
                "decoding leave temperature, top_k and top_p as None."
            )
    if top_k is not None:
        top_k = require_int("top_k", top_k, minimum=None)  # NumPy integers are fine
        if top_k <= 0:
            raise ValueError(f"top_k must be >= 1 (the number of tokens kept), got top_k={top_k}.")
    if top_p is not None:
        p = require_real("top_p", top_p, "a real number or None")
        if not 0 < p <= 1:  # also catches NaN
            raise ValueError(f"top_p must lie in (0, 1] (a probability mass), got top_p={p}.")


def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """logits (..., V) -> a copy with every logit below the ``top_k``-th largest set to -inf.

    The rule: a token is kept when its logit is at least the k-th largest of its row, so every
    token tied with the k-th largest is kept too, and a row with ties keeps more than k tokens
    (as in Hugging Face's and nanoGPT's top-k). Which k of several equal logits to keep would be
    arbitrary: the result must not depend on how a sort orders them. A ``top_k`` larger than V
    keeps everything.

    Raises:
        TypeError, ValueError: top_k is not an int >= 1 (as :func:`check_sampling`).
    """
    check_sampling(None, top_k, None)
    return _top_k(logits, top_k)


def _top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    k = min(int(top_k), logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest logit
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """logits (..., V) -> a copy keeping the fewest most likely tokens whose mass reaches top_p.

    In the order of decreasing probability, a token is dropped (set to -inf) when the tokens
    strictly before it already reach ``top_p``; so the most likely token is always kept, and so
    is every token tied with the last one kept (as in :func:`top_k_filter`). ``top_p=1`` keeps
    every token.

    Raises:
        TypeError, ValueError: top_p is not a real number in (0, 1] (as :func:`check_sampling`).
    """
    check_sampling(None, None, top_p)
    return _top_p(logits, top_p)


def _top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1:
        # Every token: the masses before the last one sum to less than 1 in exact arithmetic, but
        # a float32 sum of a large vocabulary can reach 1 early and drop thousands of tokens.
        return logits
    sorted_logits, _ = logits.sort(dim=-1, descending=True)
    # Summed in float64: over tens of thousands of tokens a float32 running sum drifts by ~1e-6,
    # which misplaces the cut for a top_p near 1, where the tail holds thousands of tokens of
    # tiny probability (Apple's MPS has no float64: float32 there).
    acc = torch.float32 if logits.device.type == "mps" else torch.float64
    probs = sorted_logits.to(acc).softmax(dim=-1)  # (..., V)
    before = probs.cumsum(dim=-1) - probs  # (..., V): the mass of the tokens strictly before
    drop_sorted = before >= top_p  # False for the first (p - p = 0 exactly): the top token stays
    # The smallest logit kept; every logit at least as large stays (ties with it included).
    last_kept = sorted_logits.masked_fill(drop_sorted, float("inf")).amin(dim=-1, keepdim=True)
    return logits.masked_fill(logits < last_kept, float("-inf"))


def filter_logits(
    logits: torch.Tensor,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """logits / temperature, then the top-k and top-p filters (each only when given).

    The largest logit of each row is subtracted before dividing (the softmax does not change), so
    that a tiny temperature sends the others to -inf instead of overflowing to inf - inf.
    """
    check_sampling(temperature, top_k, top_p)
    return _filter(logits, temperature, top_k, top_p)


def _filter(logits: torch.Tensor, temperature, top_k, top_p) -> torch.Tensor:
    """:func:`filter_logits` on settings already checked (called once per generated token)."""
    if temperature is not None:
        top = logits.amax(dim=-1, keepdim=True)
        logits = (logits - top.masked_fill(~torch.isfinite(top), 0.0)) / float(temperature)
    if top_k is not None:
        logits = _top_k(logits, top_k)
    if top_p is not None:
        logits = _top_p(logits, float(top_p))
    return logits


def sample_next(
    logits: torch.Tensor,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The next token id for each row of logits (B, V) -> (B,) long.

    Greedy (argmax) when temperature, top_k and top_p are all None; otherwise a draw from
    softmax(filter_logits(logits, ...)) with ``generator`` (temperature 1 when not given).

    Raises:
        TypeError, ValueError: as :func:`check_sampling`.
    """
    check_sampling(temperature, top_k, top_p)
    if temperature is None and top_k is None and top_p is None:
        return logits.argmax(dim=-1)
    probs = _filter(logits.float(), temperature, top_k, top_p).softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
