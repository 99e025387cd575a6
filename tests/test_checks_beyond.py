"""The chapter 11 checks (``selfattention.checks.beyond``): each passes right answers, however the
learner writes them, and names each classic mistake it declares (one wrong implementation per
mistake), so a learner's wrong code gets the right diagnosis.

``CORRECT`` and ``MISTAKES`` are also merged into the registries of ``tests/test_checks.py``, whose
generic tests (every check has a right answer, every declared mistake has a test) cover all checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfattention import checks as check
from selfattention import masks

# ---------------------------------------------------------------------------------------------
# Right answers, written the way a learner would write them.
# ---------------------------------------------------------------------------------------------


def _softmax(s, axis=-1):
    e = np.exp(s - s.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def cross_numpy(X_dec, X_enc, W_q, W_k, W_v):
    Q, K, V = X_dec @ W_q, X_enc @ W_k, X_enc @ W_v  # (T, d_k), (S, d_k), (S, d_v)
    return _softmax(Q @ K.T / np.sqrt(K.shape[1])) @ V


def cross_torch(X_dec, X_enc, W_q, W_k, W_v):
    """With torch's SDPA, returning a tensor: the check accepts it."""
    t = [torch.from_numpy(a) for a in (X_dec, X_enc, W_q, W_k, W_v)]
    return torch.nn.functional.scaled_dot_product_attention(t[0] @ t[2], t[1] @ t[3], t[1] @ t[4])


def window_compare(T, window):
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return (j <= i) & (j > i - window)


def window_tril(T, window):
    ones = torch.ones(T, T, dtype=torch.bool)
    return ones.tril() & ~ones.tril(diagonal=-window)


def _phi(x):
    return np.where(x > 0, x + 1, np.exp(np.minimum(x, 0)))


def linear_reordered(Q, K, V):
    q, k = _phi(Q), _phi(K)
    return (q @ (k.T @ V)) / (q @ k.sum(axis=0))[:, None]


def linear_quadratic(Q, K, V):
    """The quadratic way is slower but computes the same numbers: the check accepts it."""
    w = _phi(Q) @ _phi(K).T  # (T, S)
    return (w / w.sum(axis=1, keepdims=True)) @ V


def penalty_numpy(A):
    return np.sum((A @ A.T - np.eye(A.shape[0])) ** 2)


def penalty_torch(A):
    A = torch.as_tensor(A)
    return torch.linalg.matrix_norm(A @ A.T - torch.eye(A.shape[0], dtype=A.dtype)) ** 2


CORRECT = {
    "cross_attention": cross_numpy,
    "sliding_window_mask": window_compare,
    "linear_attention": linear_reordered,
    "structured_penalty": penalty_numpy,
}
MORE_CORRECT = [
    ("cross_attention", cross_torch),
    ("sliding_window_mask", window_tril),
    ("sliding_window_mask", lambda T, w: masks.sliding_window_mask(T, w)),
    ("linear_attention", linear_quadratic),
    ("structured_penalty", penalty_torch),
    ("structured_penalty", lambda A: float(np.linalg.norm(A @ A.T - np.eye(len(A))) ** 2)),
]


# ---------------------------------------------------------------------------------------------
# One wrong implementation per declared mistake, as a learner would write it.
# ---------------------------------------------------------------------------------------------


def _cross_with(X_dec, X_enc, W_q, W_k, W_v, q_src, k_src, v_src, scale=True, axis=-1, causal=False):
    Q, K, V = q_src @ W_q, k_src @ W_k, v_src @ W_v
    s = Q @ K.T / (np.sqrt(K.shape[1]) if scale else 1.0)
    if causal:
        s = np.where(np.tri(*s.shape, dtype=bool), s, -np.inf)
    return _softmax(s, axis=axis) @ V


def _linear_with(Q, K, V, phi=_phi, normalise=True, scale=1.0):
    q, k = phi(Q * scale), phi(K)
    num = q @ (k.T @ V)
    return num / (q @ k.sum(axis=0))[:, None] if normalise else num


MISTAKES = [
    # cross_attention
    ("cross_attention", "keys and values from the decoder (that is self-attention)",
     lambda Xd, Xe, a, b, c: _cross_with(Xd, Xe, a, b, c, Xd, Xd, Xd)),
    ("cross_attention", "queries from the encoder and keys from the decoder (roles swapped)",
     lambda Xd, Xe, a, b, c: _cross_with(Xd, Xe, a, b, c, Xe, Xd, Xd)),
    ("cross_attention", "values from the decoder",
     lambda Xd, Xe, a, b, c: _cross_with(Xd, Xe, a, b, c, Xd, Xe, Xd)),
    ("cross_attention", "softmax over the wrong axis",
     lambda Xd, Xe, a, b, c: _cross_with(Xd, Xe, a, b, c, Xd, Xe, Xe, axis=0)),
    ("cross_attention", "no 1/sqrt(d_k) scaling",
     lambda Xd, Xe, a, b, c: _cross_with(Xd, Xe, a, b, c, Xd, Xe, Xe, scale=False)),
    ("cross_attention", "a causal mask on cross-attention",
     lambda Xd, Xe, a, b, c: _cross_with(Xd, Xe, a, b, c, Xd, Xe, Xe, causal=True)),
    # sliding_window_mask
    ("sliding_window_mask", "one key too many (window + 1 keys)",
     lambda T, w: window_compare(T, w + 1)),
    ("sliding_window_mask", "one key too few (the window leaves out the query itself)",
     lambda T, w: window_compare(T, w + 1) & ~torch.eye(T, dtype=torch.bool)),
    ("sliding_window_mask", "an inverted mask (True = hide)", lambda T, w: ~window_compare(T, w)),
    ("sliding_window_mask", "a symmetric band (the future is visible)",
     lambda T, w: (torch.arange(T)[:, None] - torch.arange(T)[None, :]).abs() < w),
    ("sliding_window_mask", "the causal mask without the window",
     lambda T, w: torch.ones(T, T, dtype=torch.bool).tril()),
    ("sliding_window_mask", "the window of keys j <= window - 1 (fixed, not sliding)",
     lambda T, w: torch.ones(T, T, dtype=torch.bool).tril() & (torch.arange(T) < w)),
    # linear_attention
    ("linear_attention", "no normalisation (the denominator forgotten)",
     lambda Q, K, V: _linear_with(Q, K, V, normalise=False)),
    ("linear_attention", "no feature map (raw Q and K)",
     lambda Q, K, V: _linear_with(Q, K, V, phi=lambda x: x)),
    ("linear_attention", "softmax attention instead of linear attention",
     lambda Q, K, V: _softmax(Q @ K.T / np.sqrt(Q.shape[1])) @ V),
    ("linear_attention", "queries scaled by 1/sqrt(d_k)",
     lambda Q, K, V: _linear_with(Q, K, V, scale=1 / np.sqrt(Q.shape[1]))),
    # structured_penalty
    ("structured_penalty", "the identity not subtracted", lambda A: np.sum((A @ A.T) ** 2)),
    ("structured_penalty", "A^T A instead of A A^T",
     lambda A: np.sum((A.T @ A - np.eye(A.shape[1])) ** 2)),
    ("structured_penalty", "the norm not squared",
     lambda A: np.linalg.norm(A @ A.T - np.eye(A.shape[0]))),
    ("structured_penalty", "1 subtracted from every entry instead of the identity",
     lambda A: np.sum((A @ A.T - 1) ** 2)),
]


def test_a_float_window_mask_is_named(capsys):
    result = check.sliding_window_mask(lambda T, w: window_compare(T, w).float())
    assert result.mistake == "a float mask instead of a boolean one", result.message


def test_the_penalty_of_orthogonal_one_hot_hops_is_the_first_case():
    """The first case is the one the chapter's exercise text promises: one-hot hops give 0."""
    seen = []

    def spy(A):
        seen.append(np.array(A))
        return penalty_numpy(A)

    assert check.structured_penalty(spy, raise_on_fail=True)
    np.testing.assert_array_equal(seen[0], np.eye(3, 5))


def test_raise_on_fail():
    with pytest.raises(check.CheckError):
        check.linear_attention(lambda Q, K, V: Q, raise_on_fail=True)
