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

import torch

from ._validate import require_int

__all__ = ["check_sampling", "filter_logits", "sample_next", "top_k_filter", "top_p_filter"]


def check_sampling(temperature, top_k, top_p) -> None:
    """Raise ValueError/TypeError, with the value, for a temperature that is not a number > 0 (NaN
    included), top_k <= 0 or a top_p outside (0, 1]. None means "not used"."""
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"{name} must be a float or None, got {type(value).__name__}.")
    if top_k is not None:
        top_k = require_int("top_k", top_k, minimum=None)  # NumPy integers are fine
    if temperature is not None and not temperature > 0:  # also catches NaN
        raise ValueError(
            f"temperature must be > 0, got temperature={temperature}; for greedy decoding leave "
            "temperature, top_k and top_p as None."
        )
    if top_k is not None and top_k <= 0:
        raise ValueError(f"top_k must be >= 1 (the number of tokens kept), got top_k={top_k}.")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1] (a probability mass), got top_p={top_p}.")


def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """logits (..., V) -> a copy with all but the ``top_k`` largest set to -inf (ties kept).

    A ``top_k`` larger than V keeps everything.
    """
    check_sampling(None, top_k, None)
    return _top_k(logits, top_k)


def _top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    k = min(top_k, logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest logit
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """logits (..., V) -> a copy keeping the fewest most likely tokens whose mass reaches top_p.

    The most likely token is always kept, and so is every token tied with the last one kept
    (as in :func:`top_k_filter`); the others are set to -inf.
    """
    check_sampling(None, None, top_p)
    return _top_p(logits, top_p)


def _top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_logits, _ = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    # A token is dropped when the tokens before it already reach top_p.
    drop_sorted = probs.cumsum(dim=-1) - probs >= top_p  # (..., V), False for the first
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
        logits = (logits - top.masked_fill(~torch.isfinite(top), 0.0)) / temperature
    if top_k is not None:
        logits = _top_k(logits, top_k)
    if top_p is not None:
        logits = _top_p(logits, top_p)
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
