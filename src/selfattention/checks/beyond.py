"""Checks for chapter 11: cross-attention, the sliding-window mask, linear attention and the
penalty of the structured self-attentive sentence embedding."""

from __future__ import annotations

import numpy as np
import torch

from .. import masks
from .. import vectorized as vz
from ._core import Case, CheckResult, Mistake, run_check


def _rng() -> np.random.Generator:
    """A fresh generator per check, so its cases do not depend on which checks ran before."""
    return np.random.default_rng(9009)


# ---------------------------------------------------------------------------------------------
# Cross-attention
# ---------------------------------------------------------------------------------------------


def _cross(X_dec, X_enc, W_q, W_k, W_v, *, q_from=None, kv_from=None, v_from=None, scale=True,
           axis=-1, causal=False):
    """Cross-attention, or one of its classic mistakes (all in NumPy)."""
    Q = (X_dec if q_from is None else q_from) @ W_q  # (T, d_k)
    K = (X_enc if kv_from is None else kv_from) @ W_k  # (S, d_k)
    V = (X_enc if v_from is None and kv_from is None else
         (v_from if v_from is not None else kv_from)) @ W_v  # (S, d_v)
    s = Q @ K.T  # (T, S)
    if scale:
        s = s / np.sqrt(Q.shape[-1])
    if causal:
        s = np.where(np.tri(*s.shape, dtype=bool), s, -np.inf)
    return vz.softmax(s, axis=axis) @ V


def cross_attention(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(X_dec, X_enc, W_q, W_k, W_v) -> out``: queries from X_dec, keys/values from X_enc.

    X_dec: (T, d_model) the sequence that asks (e.g. the decoder); X_enc: (S, d_model) the
    sequence that is read (e.g. the encoder's output); W_q, W_k: (d_model, d_k); W_v:
    (d_model, d_v). Returns out (T, d_v) = softmax(Q K^T / sqrt(d_k)) V, no mask.
    """
    r = _rng()
    cases = []
    for T, S in ((3, 5), (6, 2)):
        X_dec, X_enc = r.normal(size=(T, 8)), r.normal(size=(S, 8))
        W_q, W_k, W_v = (r.normal(size=(8, 4)) / np.sqrt(8) for _ in range(3))
        args = (X_dec, X_enc, W_q, W_k, W_v)
        cases.append(Case(args, _cross(*args), f"T={T} queries, S={S} keys, d_model=8, d_k=4"))
    mistakes = [
        Mistake("keys and values from the decoder (that is self-attention)",
                "in cross-attention only the QUERIES come from the sequence that asks (X_dec); "
                "the keys and the values both come from the sequence that is read: "
                "K = X_enc W_k, V = X_enc W_v.",
                lambda Xd, Xe, a, b, c: _cross(Xd, Xe, a, b, c, kv_from=Xd)),
        Mistake("queries from the encoder and keys from the decoder (roles swapped)",
                "the output has one row per QUERY, and the queries come from X_dec (T rows), so "
                "the output is (T, d_v); here it has one row per encoder token.",
                lambda Xd, Xe, a, b, c: _cross(Xe, Xd, a, b, c)),
        Mistake("values from the decoder",
                "the weights (T, S) average the S encoder tokens, so the values must come from "
                "the encoder as well: V = X_enc W_v, shape (S, d_v).",
                lambda Xd, Xe, a, b, c: _cross(Xd, Xe, a, b, c, v_from=Xd)),
        Mistake("softmax over the wrong axis",
                "each query's weights over the S keys must sum to 1: softmax along the last "
                "axis (axis=-1) of the (T, S) scores.",
                lambda Xd, Xe, a, b, c: _cross(Xd, Xe, a, b, c, axis=0)),
        Mistake("no 1/sqrt(d_k) scaling",
                "divide the scores by sqrt(d_k), as in self-attention.",
                lambda Xd, Xe, a, b, c: _cross(Xd, Xe, a, b, c, scale=False)),
        Mistake("a causal mask on cross-attention",
                "the whole source sequence exists before the decoder starts, so cross-attention "
                "needs no causal mask: every query may read every encoder token.",
                lambda Xd, Xe, a, b, c: _cross(Xd, Xe, a, b, c, causal=True)),
    ]
    return run_check("cross_attention", fn, cases, "(X_dec, X_enc, W_q, W_k, W_v)", mistakes,
                     raise_on_fail=raise_on_fail)


# ---------------------------------------------------------------------------------------------
# The sliding-window mask
# ---------------------------------------------------------------------------------------------


def _band(T, lo, hi):
    """(T, T) bool tensor, True where lo <= i - j <= hi."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    return (i - j >= lo) & (i - j <= hi)


def sliding_window_mask(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(T, window) -> (T, T)`` bool mask, True = attend: query i sees keys
    i - window + 1 .. i (``window`` keys, itself included, none from the future)."""
    cases = [Case((T, w), masks.sliding_window_mask(T, w), f"T={T}, window={w}")
             for T, w in ((6, 3), (5, 1), (7, 2), (4, 6))]
    mistakes = [
        Mistake("one key too many (window + 1 keys)",
                "query i sees `window` keys counting itself: i - window + 1 .. i, so i - j must be "
                "< window (not <= window).",
                lambda T, w: _band(T, 0, w)),
        Mistake("one key too few (the window leaves out the query itself)",
                "a token may attend to itself: keep the diagonal, i - j from 0 to window - 1.",
                lambda T, w: _band(T, 1, w)),
        Mistake("an inverted mask (True = hide)",
                "True means 'may attend', as in SDPA: True inside the window, False elsewhere.",
                lambda T, w: ~masks.sliding_window_mask(T, w)),
        Mistake("a symmetric band (the future is visible)",
                "this window is causal: keys after the query stay hidden (i - j >= 0).",
                lambda T, w: _band(T, -(w - 1), w - 1)),
        Mistake("the causal mask without the window",
                "keys further back than window - 1 positions must be hidden too.",
                lambda T, w: masks.causal_mask(T)),
        Mistake("the window of keys j <= window - 1 (fixed, not sliding)",
                "the window moves with the query: it covers i - window + 1 .. i, not 0 .. "
                "window - 1.",
                lambda T, w: masks.causal_mask(T) & (torch.arange(T)[None, :] < w)),
    ]
    return run_check("sliding_window_mask", fn, cases, "(T, window)", mistakes,
                     raise_on_fail=raise_on_fail)


# ---------------------------------------------------------------------------------------------
# Linear attention
# ---------------------------------------------------------------------------------------------


def _phi(x):
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def _linear(Q, K, V, phi=_phi, normalise=True, scale=1.0):
    q, k = phi(Q * scale), phi(K)  # (T, d_k), (S, d_k)
    num = q @ (k.T @ V)  # (T, d_v)
    if not normalise:
        return num
    return num / (q @ k.sum(axis=0))[:, None]


def linear_attention(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(Q, K, V) -> out``: non-causal linear attention with phi(x) = elu(x) + 1.

    Q (T, d_k), K (S, d_k), V (S, d_v), NumPy. out_i = phi(q_i) (phi(K)^T V) /
    (phi(q_i) . sum_j phi(k_j)), shape (T, d_v).
    """
    r = _rng()
    cases = []
    for T, S, d in ((5, 5, 3), (4, 6, 2)):
        args = (r.normal(size=(T, d)), r.normal(size=(S, d)), r.normal(size=(S, d + 1)))
        cases.append(Case(args, _linear(*args), f"T={T}, S={S}, d_k={d}"))
    mistakes = [
        Mistake("no normalisation (the denominator forgotten)",
                "the weights phi(q_i) . phi(k_j) must sum to 1 over j: divide by "
                "phi(q_i) . sum_j phi(k_j), a (T, 1) column.",
                lambda Q, K, V: _linear(Q, K, V, normalise=False)),
        Mistake("no feature map (raw Q and K)",
                "apply phi(x) = elu(x) + 1 to Q and K first: raw dot products can be negative or "
                "zero, and the 'weights' are then not weights at all.",
                lambda Q, K, V: _linear(Q, K, V, phi=lambda x: x)),
        Mistake("softmax attention instead of linear attention",
                "linear attention never computes exp(q . k): it uses the kernel "
                "phi(q) . phi(k) so that phi(K)^T V can be computed first.",
                lambda Q, K, V: vz.attention(Q, K, V)[0]),
        Mistake("queries scaled by 1/sqrt(d_k)",
                "the kernel replaces the softmax entirely; there is no 1/sqrt(d_k) in linear "
                "attention.",
                lambda Q, K, V: _linear(Q, K, V, scale=1 / np.sqrt(Q.shape[-1]))),
    ]
    return run_check("linear_attention", fn, cases, "(Q, K, V)", mistakes,
                     raise_on_fail=raise_on_fail)


# ---------------------------------------------------------------------------------------------
# The penalty of Lin et al. (2017)
# ---------------------------------------------------------------------------------------------


def _pen(A, sub="eye", gram="AAt", squared=True):
    A = np.asarray(A, dtype=float)
    G = A @ A.T if gram == "AAt" else A.T @ A
    n = G.shape[0]
    target = {"eye": np.eye(n), "none": 0.0, "ones": np.ones((n, n))}[sub]
    f2 = float(((G - target) ** 2).sum())
    return f2 if squared else float(np.sqrt(f2))


def structured_penalty(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(A) -> float``: ||A A^T - I||_F^2 for hops A (r, T), a NumPy array."""
    r = _rng()
    one_hot = np.eye(3, 5)  # three hops on three different tokens
    soft = vz.softmax(2.0 * r.normal(size=(3, 5)))
    collapsed = np.tile(vz.softmax(3.0 * r.normal(size=(1, 6))), (2, 1))  # 2 identical hops
    cases = [
        Case((one_hot,), 0.0, "3 one-hot hops on different tokens, r=3, T=5"),
        Case((soft,), _pen(soft), "3 soft hops, r=3, T=5"),
        Case((collapsed,), _pen(collapsed), "2 identical hops, r=2, T=6"),
    ]
    mistakes = [
        Mistake("the identity not subtracted",
                "the penalty is ||A A^T - I||^2: without - I it punishes every hop, even a "
                "perfect one-hot hop (whose diagonal entry is 1).",
                lambda A: _pen(A, sub="none")),
        Mistake("A^T A instead of A A^T",
                "A is (r, T): A A^T is (r, r) and compares hops with hops; A^T A is (T, T) and "
                "compares tokens.",
                lambda A: _pen(A, gram="AtA")),
        Mistake("the norm not squared",
                "the penalty is the SQUARED Frobenius norm: the sum of the squared entries, "
                "without a square root.",
                lambda A: _pen(A, squared=False)),
        Mistake("1 subtracted from every entry instead of the identity",
                "subtract the identity matrix (np.eye(r)): ones on the diagonal only.",
                lambda A: _pen(A, sub="ones")),
    ]
    return run_check("structured_penalty", fn, cases, "(A)", mistakes, rtol=1e-6, atol=1e-9,
                     raise_on_fail=raise_on_fail)
