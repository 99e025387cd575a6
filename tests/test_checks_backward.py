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


def block_backward(Q, K, V, dO, O, L, mask, wrong=""):
    scale = 1 / np.sqrt(Q.shape[1])
    S = Q @ K.T * scale  # (T, S_j)
    S[~mask] = -np.inf
    if wrong != "nan":
        L = np.where(np.isneginf(L), 0.0, L)  # a row that sees no key: P = exp(-inf) = 0
    P = np.exp(S - L) if wrong == "L row" else np.exp(S - L[:, None])  # (T, S_j)
    dV = P @ dO if wrong == "P" else P.T @ dO  # (S_j, d_v)
    dP = dO @ V.T  # (T, S_j)
    if wrong == "rowsum":
        D = (dP * P).sum(axis=1, keepdims=True)
    else:
        D = (dO * O).sum(axis=0 if wrong == "axis" else 1, keepdims=wrong != "keepdims")
    dS = P * (dP - D)
    dQ = dS @ K if wrong in ("dQ", "both") else scale * dS @ K
    dK = dS.T @ Q if wrong in ("dK", "both") else scale * dS.T @ Q
    return dQ, dK, dV


def block_backward_einsum(Q, K, V, dO, O, L, mask):
    """The same block with einsum and a boolean-indexed P: another right way to write it."""
    scale = Q.shape[1] ** -0.5
    P = np.zeros(mask.shape)
    rows, cols = np.nonzero(mask)
    P[rows, cols] = np.exp(scale * np.einsum("td,td->t", Q[rows], K[cols]) - L[rows])
    D = np.einsum("tv,tv->t", dO, O)[:, None]
    dS = P * (np.einsum("tv,sv->ts", dO, V) - D)
    return scale * np.einsum("ts,sd->td", dS, K), scale * np.einsum("ts,td->sd", dS, Q), P.T @ dO


def block_softmax(Q, K, V, dO, O, L, mask, use_D=False):
    """A softmax over the block's own keys (ignoring L); with use_D, D is still the whole row's."""
    S = np.where(mask, Q @ K.T / np.sqrt(Q.shape[1]), -np.inf)
    m = S.max(axis=1, keepdims=True)
    e = np.exp(S - np.where(np.isneginf(m), 0.0, m))
    P = e / np.maximum(e.sum(axis=1, keepdims=True), 1e-300)
    dP = dO @ V.T
    D = (dO * O).sum(axis=1, keepdims=True) if use_D else (dP * P).sum(axis=1, keepdims=True)
    dS = P * (dP - D) / np.sqrt(Q.shape[1])
    return dS @ K, dS.T @ Q, P.T @ dO


def block_backward_torch(Q, K, V, dO, O, L, mask):
    """Autograd through SDPA over this block's keys only: attention over the block alone."""
    q, k, v = (torch.from_numpy(a).requires_grad_() for a in (Q, K, V))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=torch.from_numpy(mask))
    return torch.autograd.grad(out, (q, k, v), torch.from_numpy(dO))


CORRECT = {
    "softmax_backward": softmax_backward_vector,
    "attention_block_backward": block_backward,
}
MORE_CORRECT = [
    ("softmax_backward", softmax_backward_jacobian),
    ("attention_block_backward", block_backward_einsum),
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
    ("softmax_backward", "only the diagonal of the Jacobian", lambda P, dP: P * (1 - P) * dP),
    ("softmax_backward", "a sum over the whole matrix (no axis)", lambda P, dP: P * (dP - np.sum(dP * P))),
    (
        "softmax_backward",
        "rowsum(dP) instead of rowsum(dP * P)",
        lambda P, dP: P * (dP - dP.sum(axis=1, keepdims=True)),
    ),
    ("attention_block_backward", "the scale forgotten in dQ", lambda *a: block_backward(*a, wrong="dQ")),
    ("attention_block_backward", "the scale forgotten in dK", lambda *a: block_backward(*a, wrong="dK")),
    (
        "attention_block_backward",
        "the scale forgotten in dQ and dK",
        lambda *a: block_backward(*a, wrong="both"),
    ),
    ("attention_block_backward", "D without keepdims", lambda *a: block_backward(*a, wrong="keepdims")),
    (
        "attention_block_backward",
        "L subtracted along the keys (L instead of L[:, None])",
        lambda *a: block_backward(*a, wrong="L row"),
    ),
    ("attention_block_backward", "P where P^T belongs in dV", lambda *a: block_backward(*a, wrong="P")),
    ("attention_block_backward", "rowsum over the wrong axis", lambda *a: block_backward(*a, wrong="axis")),
    (
        "attention_block_backward",
        "rowsum(dP * P) over this block instead of D",
        lambda *a: block_backward(*a, wrong="rowsum"),
    ),
    (
        "attention_block_backward",
        "a softmax over this block instead of P = exp(S - L)",
        lambda *a: block_softmax(*a, use_D=True),
    ),
    ("attention_block_backward", "this block treated as the whole row", block_softmax),
    ("attention_block_backward", "this block treated as the whole row", block_backward_torch),
    (
        "attention_block_backward",
        "a fully masked row that yields NaN",
        lambda *a: block_backward(*a, wrong="nan"),
    ),
]


def test_a_transposed_P_crashes_on_a_non_square_block_but_is_still_named(capsys):
    """P dO raises when T differs from the block's key count; the check still names the mistake,
    from the case where the two agree (checked first)."""
    result = check.attention_block_backward(lambda *a: block_backward(*a, wrong="P"))
    assert result.mistake == "P where P^T belongs in dV"
    assert "T=4, keys 3..6 of 7" in result.message


def test_the_block_is_a_slice_of_the_row():
    """The whole-row solution of an unblocked backward (softmax and rowsum(dP * P) inside) must
    fail: in every case the block leaves out keys that some row sees."""
    result = check.attention_block_backward(block_backward_torch)
    assert not result.passed and result.mistake == "this block treated as the whole row"


def test_the_message_names_the_gradient_that_is_wrong():
    """A wrong dK alone is reported as dK, with dQ and dV said to be right; a transposed dK is a
    shape error on dK, not 'the numbers differ'."""

    def bad_dK(*a):
        dQ, dK, dV = block_backward(*a)
        return dQ, dK + 1.0, dV

    result = check.attention_block_backward(bad_dK)
    assert not result.passed
    assert result.message.startswith("dK is wrong, dQ and dV are right. dK:")

    def transposed_dK(*a):
        dQ, dK, dV = block_backward(*a)
        return dQ, dK.T, dV

    result = check.attention_block_backward(transposed_dK)
    assert result.mistake == "wrong shape" and "dK is wrong" in result.message
    assert "expected (4, 3), obtained (3, 4)" in result.message

    result = check.attention_block_backward(lambda *a: block_backward(*a)[:2])
    assert result.mistake == "wrong number of results"
    assert "should return 3 results, (dQ, dK, dV), but it returned a tuple of 2 items" in result.message
