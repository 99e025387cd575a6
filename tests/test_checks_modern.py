"""The modern-practice checks (``check.rope_attention``, ``check.top_k_probs``) accept right answers
and name each classic mistake; the wrong answers are written the way a learner would write them."""

from __future__ import annotations

import math

import torch

from selfattention import checks as check
from selfattention.positional import apply_rope


def rotate(x, positions, base=10000.0, reverse=False):
    """RoPE by hand: pair (2i, 2i+1) turns by positions * base^(-2i/d)."""
    d = x.shape[-1]
    i = torch.arange(d // 2, dtype=torch.float64)
    omega = base ** (-2 * i / d)
    if reverse:
        omega = omega.flip(0)
    angle = positions[..., None].double() * omega  # (B, T, d/2) or (T, d/2)
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.stack([even * angle.cos() - odd * angle.sin(), even * angle.sin() + odd * angle.cos()], -1)
    return out.flatten(-2)  # pairs back to (2i, 2i+1)


def attend(Q, K, V):
    return torch.softmax(Q @ K.transpose(1, 2) / math.sqrt(Q.shape[-1]), dim=-1) @ V


def right_rope(x, W_q, W_k, W_v, positions):
    return attend(rotate(x @ W_q, positions), rotate(x @ W_k, positions), x @ W_v)


def right_rope_library(x, W_q, W_k, W_v, positions):
    return attend(apply_rope(x @ W_q, positions), apply_rope(x @ W_k, positions), x @ W_v)


def right_rope_float32(x, W_q, W_k, W_v, positions):
    """All in float32, frequencies from torch.arange as a learner writes them: rounding errors of
    ~1e-7, not a mistake."""
    x, W_q, W_k, W_v = (t.float() for t in (x, W_q, W_k, W_v))
    d = x.shape[-1]
    omega = 10000.0 ** (-torch.arange(0, d, 2) / d)  # (d/2,) float32

    def rot(t):
        angle = positions[..., None] * omega  # (B, T, d/2) float32
        even, odd = t[..., 0::2], t[..., 1::2]
        rotated = [even * angle.cos() - odd * angle.sin(), even * angle.sin() + odd * angle.cos()]
        return torch.stack(rotated, -1).flatten(-2)

    return attend(rot(x @ W_q), rot(x @ W_k), x @ W_v)


def right_rope_float32_frequencies(x, W_q, W_k, W_v, positions):
    """float64 inputs, float32 frequencies (the reviewer's case: off by 6.8e-8)."""
    d = x.shape[-1]
    omega = 10000.0 ** (-torch.arange(0, d, 2) / d)  # float32
    angle = positions[..., None] * omega
    cos, sin = angle.cos().double(), angle.sin().double()

    def rot(t):
        out = t.clone()
        out[..., 0::2] = t[..., 0::2] * cos - t[..., 1::2] * sin
        out[..., 1::2] = t[..., 0::2] * sin + t[..., 1::2] * cos
        return out

    return attend(rot(x @ W_q), rot(x @ W_k), x @ W_v)


def halves_pairing(x, W_q, W_k, W_v, positions):
    """Hugging Face's rotate_half: feature i turns with feature i + d/2."""
    d = x.shape[-1]
    omega = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angle = positions[..., None].double() * omega  # (B, T, d/2)
    cos, sin = torch.cat([angle.cos()] * 2, -1), torch.cat([angle.sin()] * 2, -1)  # (B, T, d)

    def rotate_half(t):
        return torch.cat([-t[..., d // 2 :], t[..., : d // 2]], -1)

    def rot(t):
        return t * cos + rotate_half(t) * sin

    return attend(rot(x @ W_q), rot(x @ W_k), x @ W_v)


def reversed_frequencies(x, W_q, W_k, W_v, positions):
    return attend(rotate(x @ W_q, positions, reverse=True), rotate(x @ W_k, positions, reverse=True), x @ W_v)


def rotated_values(x, W_q, W_k, W_v, positions):
    return attend(rotate(x @ W_q, positions), rotate(x @ W_k, positions), rotate(x @ W_v, positions))


def rotated_before_projection(x, W_q, W_k, W_v, positions):
    xr = rotate(x, positions)
    return attend(xr @ W_q, xr @ W_k, x @ W_v)


def shared_positions(x, W_q, W_k, W_v, positions):
    p = positions[0]  # (T,): the first sequence's positions for everyone
    return attend(rotate(x @ W_q, p), rotate(x @ W_k, p), x @ W_v)


def ignored_positions(x, W_q, W_k, W_v, positions):
    p = torch.arange(x.shape[1])  # (T,): token t turns by t, whatever positions says
    return attend(rotate(x @ W_q, p), rotate(x @ W_k, p), x @ W_v)


def right_top_k(logits, k):
    kth = logits.topk(k, dim=-1).values[:, -1:]
    return torch.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=-1)


def right_top_k_divided(logits, k):
    p = torch.softmax(logits, -1)
    kth = p.topk(k, -1).values[:, -1:]
    p = torch.where(p >= kth, p, torch.zeros_like(p))
    return p / p.sum(-1, keepdim=True)


def forgets_masked(logits, k):
    p = torch.softmax(logits, -1)
    kth = p.topk(k, -1).values[:, -1:]
    return torch.where(p >= kth, p, torch.zeros_like(p))


def zero_fill(logits, k):
    kth = logits.topk(k, dim=-1).values[:, -1:]
    return torch.softmax(torch.where(logits >= kth, logits, torch.zeros_like(logits)), dim=-1)


def smallest(logits, k):
    kth = logits.topk(k, dim=-1, largest=False).values[:, -1:]
    return torch.softmax(logits.masked_fill(logits > kth, float("-inf")), dim=-1)


def exactly_k_by_indices(logits, k):
    """The k indices of torch.topk, scattered: of logits tied at the k-th, only some are kept."""
    idx = logits.topk(k, dim=-1).indices
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, idx, True)
    return torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)


def test_checks_accept_right_answers():
    assert check.rope_attention(right_rope, raise_on_fail=True)
    assert check.rope_attention(right_rope_library, raise_on_fail=True)
    assert check.top_k_probs(right_top_k, raise_on_fail=True)
    assert check.top_k_probs(right_top_k_divided, raise_on_fail=True)


def test_rope_check_accepts_float32_work():
    """Frequencies from torch.arange are float32 (off by ~1e-7): the check used to reject them."""
    assert check.rope_attention(right_rope_float32, raise_on_fail=True)
    assert check.rope_attention(right_rope_float32_frequencies, raise_on_fail=True)


def test_top_k_check_keeps_ties_like_the_library():
    """The check and ``sampling.top_k_filter`` follow one rule (logits tied with the k-th largest
    are kept), and the check has a case with such ties, so keeping exactly k is told apart."""
    from selfattention.sampling import top_k_filter

    tied = torch.tensor([[2.0, 0.5, 2.0, 2.0, -1.0, 0.0]], dtype=torch.float64)
    assert int((~torch.isinf(top_k_filter(tied, 2))).sum()) == 3
    torch.testing.assert_close(right_top_k(tied, 2), top_k_filter(tied, 2).softmax(-1))
    result = check.top_k_probs(exactly_k_by_indices)
    assert not result.passed and result.mistake == "exactly k kept when logits tie"
    assert "ties at the 2nd largest" in result.message


# Registries read by tests/test_checks.py.
CORRECT = {"rope_attention": right_rope, "top_k_probs": right_top_k}
MORE_CORRECT = [
    ("rope_attention", right_rope_library),
    ("rope_attention", right_rope_float32),
    ("rope_attention", right_rope_float32_frequencies),
    ("top_k_probs", right_top_k_divided),
]
MISTAKES = [
    ("rope_attention", "the frequency order reversed", reversed_frequencies),
    ("rope_attention", "rotating the values", rotated_values),
    ("rope_attention", "rotating before the projection", rotated_before_projection),
    ("rope_attention", "one position shared by the whole batch", shared_positions),
    ("rope_attention", "positions ignored (0 .. T-1 used)", ignored_positions),
    ("rope_attention", "the halves pairing (rotate_half)", halves_pairing),
    ("top_k_probs", "a renormalisation that forgets the masked tokens", forgets_masked),
    ("top_k_probs", "masked logits set to 0 instead of -inf", zero_fill),
    ("top_k_probs", "the k smallest logits kept", smallest),
    ("top_k_probs", "exactly k kept when logits tie", exactly_k_by_indices),
    ("top_k_probs", "`logits` changed in place", lambda lg, k: _top_k_in_place(lg, k)),
]


def _top_k_in_place(logits, k):
    """Right probabilities, but the caller's logits are overwritten (masked_fill_)."""
    kth = logits.topk(k, dim=-1).values[:, -1:]
    return logits.masked_fill_(logits < kth, float("-inf")).softmax(dim=-1)
