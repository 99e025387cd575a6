"""The chapter 8 checks (``selfattention.checks.backward``): each passes right answers, however the
learner writes them, and names each classic mistake it declares (one wrong implementation per
mistake, written the way a learner would write it).

``CORRECT`` and ``MISTAKES`` are merged into the registries of ``tests/test_checks.py``, whose
generic tests (every check has a right answer, every declared mistake has a test) cover all checks.
"""

from __future__ import annotations

import numpy as np
import torch

from selfattention import checks as check

# ---------------------------------------------------------------------------------------------
# Right answers, written the way a learner would write them.
# ---------------------------------------------------------------------------------------------


def softmax_backward_vector(P, dP):
    return P * (dP - (dP * P).sum(axis=-1, keepdims=True))


def softmax_backward_jacobian(P, dP):
    """Row by row with the full Jacobian diag(p) - p p^T: slower, the same numbers."""
    return np.stack([(np.diag(p) - np.outer(p, p)) @ g for p, g in zip(P, dP)])


def block_backward(Q, K, V, dO, L, mask, wrong=""):
    scale = 1 / np.sqrt(Q.shape[1])
    S = Q @ K.T * scale  # (T, S)
    S[~mask] = -np.inf
    if wrong != "nan":
        L = np.where(np.isneginf(L), 0.0, L)  # a row that sees no key: P = exp(-inf) = 0
    P = np.exp(S - L[:, None])  # (T, S)
    dV = P @ dO if wrong == "P" else P.T @ dO  # (S, d_v)
    dP = dO @ V.T  # (T, S)
    D = (dP * P).sum(axis=0 if wrong == "axis" else 1, keepdims=True)
    dS = P * (dP - D)
    dQ = dS @ K if wrong == "dQ" else scale * dS @ K
    dK = dS.T @ Q if wrong == "dK" else scale * dS.T @ Q
    return dQ, dK, dV


def block_backward_torch(Q, K, V, dO, L, mask):
    """Through torch.autograd, with the D = rowsum(dO * O) form nowhere: the check accepts it."""
    q, k, v = (torch.from_numpy(a).requires_grad_() for a in (Q, K, V))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=torch.from_numpy(mask))
    return torch.autograd.grad(out, (q, k, v), torch.from_numpy(dO))


CORRECT = {
    "softmax_backward": softmax_backward_vector,
    "attention_block_backward": block_backward,
}
MORE_CORRECT = [
    ("softmax_backward", softmax_backward_jacobian),
    ("attention_block_backward", block_backward_torch),
]

# ---------------------------------------------------------------------------------------------
# Wrong answers: (check, the mistake it must name, the wrong function).
# ---------------------------------------------------------------------------------------------

MISTAKES = [
    (
        "softmax_backward",
        "rowsum over the wrong axis",
        lambda P, dP: P * (dP - (dP * P).sum(axis=0, keepdims=True)),
    ),
    ("softmax_backward", "the -p p^T part of the Jacobian forgotten", lambda P, dP: P * dP),
    (
        "softmax_backward",
        "rowsum(dP) instead of rowsum(dP * P)",
        lambda P, dP: P * (dP - dP.sum(axis=1, keepdims=True)),
    ),
    ("attention_block_backward", "the scale forgotten in dQ", lambda *a: block_backward(*a, wrong="dQ")),
    ("attention_block_backward", "the scale forgotten in dK", lambda *a: block_backward(*a, wrong="dK")),
    ("attention_block_backward", "P where P^T belongs in dV", lambda *a: block_backward(*a, wrong="P")),
    ("attention_block_backward", "rowsum over the wrong axis", lambda *a: block_backward(*a, wrong="axis")),
    (
        "attention_block_backward",
        "a fully masked row that yields NaN",
        lambda *a: block_backward(*a, wrong="nan"),
    ),
]


def test_a_transposed_P_crashes_on_a_non_square_block_but_is_still_named(capsys):
    """P dO raises for T != S; the check still names the mistake, from the square case first."""
    result = check.attention_block_backward(lambda *a: block_backward(*a, wrong="P"))
    assert result.mistake == "P where P^T belongs in dV"
    assert "T=4, S=4" in result.message
