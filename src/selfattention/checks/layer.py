"""Checks for Part II: projections, positions, multi-head attention, masks and the KV cache."""

from __future__ import annotations

import numpy as np
import torch

from .. import data, positional
from .. import multihead as mh
from ._core import Case, CheckResult, Mistake, run_check


def _rng() -> np.random.Generator:
    """A fresh generator per check, so its cases do not depend on which checks ran before."""
    return np.random.default_rng(4321)


def projections(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(X, W_q, W_k, W_v) -> (Q, K, V)`` with Q = X @ W_q etc. (W is (d_model, d))."""
    r = _rng()
    X = data.embeddings()
    Ws = data.example_projections(d_k=8)  # square, so a transposed W still has the right shape
    X2 = r.normal(size=(2, 5, 8))
    Ws2 = tuple(r.normal(size=(8, 8)) for _ in range(3))

    def right(X, W_q, W_k, W_v):
        return np.stack([X @ W_q, X @ W_k, X @ W_v])

    cases = [
        Case((X, *Ws), right(X, *Ws), "the running example, W (8, 8)"),
        Case((X2, *Ws2), right(X2, *Ws2), "a batch X (2, 5, 8)"),
    ]
    mistakes = [
        Mistake(
            "a transposed projection",
            "the book writes Q = X W_Q with W_Q of shape (d_model, d_k): use X @ W_q. "
            "(nn.Linear stores the transpose and computes x @ weight.T.)",
            lambda X, a, b, c: np.stack([X @ a.T, X @ b.T, X @ c.T]),
        ),
        Mistake(
            "W_k and W_q swapped",
            "Q comes from W_q and K from W_k.",
            lambda X, a, b, c: np.stack([X @ b, X @ a, X @ c]),
        ),
    ]
    return run_check(
        "projections",
        fn,
        cases,
        "(X, W_q, W_k, W_v)",
        mistakes,
        postprocess=lambda out: (
            np.stack([np.asarray(t, dtype=float) for t in out])
            if isinstance(out, (tuple, list)) and len(out) == 3
            else out
        ),
        raise_on_fail=raise_on_fail,
    )


def sinusoidal(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(T, d_model) -> (T, d_model)`` sinusoidal positional encodings."""
    cases = [
        Case((6, 8), positional.sinusoidal_encoding(6, 8), "T=6, d_model=8"),
        Case((50, 16), positional.sinusoidal_encoding(50, 16), "T=50, d_model=16"),
    ]

    def swapped(T, d):
        pe = positional.sinusoidal_encoding(T, d)
        return (
            np.concatenate([pe[:, 1::2], pe[:, 0::2]], axis=1)
            .reshape(T, 2, d // 2)
            .transpose(0, 2, 1)
            .reshape(T, d)
        )

    def no_pairing(T, d):
        pos = np.arange(T)[:, None]
        i = np.arange(d)[None, :]
        ang = pos / 10000 ** (i / d)
        return np.where(i % 2 == 0, np.sin(ang), np.cos(ang))

    def pair_index_exponent(T, d):
        pos = np.arange(T)[:, None]
        i = np.arange(d // 2)[None, :]  # the pair index, 0 .. d/2 - 1
        ang = pos / 10000 ** (i / d)
        pe = np.empty((T, d))
        pe[:, 0::2], pe[:, 1::2] = np.sin(ang), np.cos(ang)
        return pe

    mistakes = [
        Mistake(
            "sin and cos swapped", "even dimensions 2i take the sine, odd ones 2i+1 the cosine.", swapped
        ),
        Mistake(
            "each dimension j with its own exponent j/d_model (pairs not sharing a frequency)",
            "dimensions 2i and 2i+1 share one frequency 1/10000^(2i/d_model): compute the angle "
            "once per pair i and take its sine for dimension 2i and its cosine for 2i+1.",
            no_pairing,
        ),
        Mistake(
            "an exponent of i/d_model instead of 2i/d_model (i the pair index)",
            "with i counting pairs (0 .. d_model/2 - 1), the exponent is 2i/d_model: the "
            "frequencies must reach down to 1/10000 at the last pair, not stop at 1/100.",
            pair_index_exponent,
        ),
    ]
    return run_check("sinusoidal", fn, cases, "(T, d_model)", mistakes, raise_on_fail=raise_on_fail)


def split_heads(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(x, num_heads) -> (B, H, T, d_head)`` for x a tensor (B, T, d_model)."""
    torch.manual_seed(0)
    x1 = torch.randn(2, 5, 12)
    x2 = torch.arange(2 * 3 * 8, dtype=torch.float32).view(2, 3, 8)
    cases = [
        Case((x1, 3), mh.split_heads(x1, 3), "x (2, 5, 12), 3 heads"),
        Case((x2, 2), mh.split_heads(x2, 2), "x (2, 3, 8), 2 heads"),
    ]
    mistakes = [
        Mistake(
            "heads split in the wrong order (a plain view)",
            "x.view(B, H, T, d_head) cuts each sentence into H chunks of consecutive tokens. "
            "Split the features first, then move H in front of T: "
            "x.view(B, T, H, d_head).transpose(1, 2).",
            lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h),
        ),
        Mistake(
            "features split as (d_head, H) instead of (H, d_head)",
            "head h owns the consecutive features [h*d_head, (h+1)*d_head): view the last "
            "dimension as (H, d_head), not (d_head, H).",
            lambda x, h: x.view(x.shape[0], x.shape[1], x.shape[2] // h, h).permute(0, 3, 1, 2),
        ),
        Mistake(
            "a missing transpose",
            "after the view (B, T, H, d_head), swap T and H.",
            lambda x, h: x.view(x.shape[0], x.shape[1], h, x.shape[2] // h),
        ),
    ]
    return run_check("split_heads", fn, cases, "(x, num_heads)", mistakes, raise_on_fail=raise_on_fail)


def _mha(x, W_q, W_k, W_v, W_o, num_heads, scale_by=None, split=mh.split_heads, transpose=False):
    tr = (lambda W: W.T) if transpose else (lambda W: W)
    q, k, v = (split(x @ tr(W), num_heads) for W in (W_q, W_k, W_v))
    d = scale_by if scale_by is not None else q.shape[-1]
    out, _ = mh.scaled_dot_product_attention(q, k, v, scale=1.0 / d**0.5)
    return mh.merge_heads(out) @ tr(W_o)


def multihead_attention(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(x, W_q, W_k, W_v, W_o, num_heads) -> (B, T, d_model)`` (no biases, Q = x @ W_q)."""
    gen = torch.Generator().manual_seed(1)  # the global random state stays the learner's

    def inputs(B, T, d_model, H):
        x = torch.randn(B, T, d_model, generator=gen)
        Ws = [torch.randn(d_model, d_model, generator=gen) / d_model**0.5 for _ in range(4)]
        return (x, *Ws, H)

    def wrong_split(x, h):
        return x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h)

    cases = [
        Case(args, _mha(*args), label)
        for args, label in (
            (inputs(2, 5, 12, 3), "x (2, 5, 12), 3 heads"),
            (inputs(1, 4, 8, 1), "one head: d_head = d_model = 8"),
            (inputs(3, 6, 6, 6), "as many heads as features: d_head = 1"),
            (inputs(1, 1, 8, 2), "a single token (T = 1)"),
        )
    ]
    mistakes = [
        Mistake(
            "scaling by d_model instead of d_head",
            "each head's scores are dot products of d_head numbers, so divide by "
            "sqrt(d_head) = sqrt(d_model / num_heads), not sqrt(d_model).",
            lambda x, a, b, c, o, h: _mha(x, a, b, c, o, h, scale_by=x.shape[-1]),
        ),
        Mistake(
            "heads split in the wrong order (a plain view)",
            "use x.view(B, T, H, d_head).transpose(1, 2), not x.view(B, H, T, d_head).",
            lambda x, a, b, c, o, h: _mha(x, a, b, c, o, h, split=wrong_split),
        ),
        Mistake(
            "a transposed projection",
            "with W of shape (d_model, d_model) use x @ W.",
            lambda x, a, b, c, o, h: _mha(x, a, b, c, o, h, transpose=True),
        ),
    ]
    return run_check(
        "multihead_attention",
        fn,
        cases,
        "(x, W_q, W_k, W_v, W_o, num_heads)",
        mistakes,
        rtol=1e-4,
        atol=1e-5,
        raise_on_fail=raise_on_fail,
    )


def shuffled_weights(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(weights, perm) -> (T, T)``: the attention weights of the shuffled sentence.

    ``weights`` (T, T) are the weights of self-attention (no positions) over tokens X; ``perm`` is
    a permutation of 0..T-1, and the shuffled sentence is ``X[perm]`` (new position i holds old
    token perm[i]). Permutation equivariance gives ``weights[perm][:, perm]``.
    """
    from .. import vectorized as vz

    r = _rng()
    X = data.embeddings()
    _, A = vz.self_attention(X, *data.example_projections())
    perm1 = np.array([3, 0, 5, 1, 4, 2])  # not its own inverse, so perm and inverse differ
    A2 = vz.softmax(r.normal(size=(5, 5)) * 2)
    perm2 = np.array([1, 2, 3, 4, 0])

    def right(A, perm):
        return np.asarray(A)[np.ix_(perm, perm)]

    def inverse(A, perm):
        inv = np.argsort(perm)
        return np.asarray(A)[np.ix_(inv, inv)]

    cases = [
        Case((A, perm1), right(A, perm1), "the running example, perm [3, 0, 5, 1, 4, 2]"),
        Case((A2, perm2), right(A2, perm2), "random weights (5, 5), perm [1, 2, 3, 4, 0]"),
    ]
    mistakes = [
        Mistake(
            "only the rows permuted",
            "shuffling the tokens moves the queries (rows) and the keys (columns) alike: "
            "permute both, weights[perm][:, perm].",
            lambda A, p: np.asarray(A)[p],
        ),
        Mistake(
            "only the columns permuted",
            "the queries (rows) move with the tokens too: weights[perm][:, perm].",
            lambda A, p: np.asarray(A)[:, p],
        ),
        Mistake(
            "the inverse permutation",
            "new position i holds old token perm[i], so new row i is old row perm[i]: index "
            "with perm itself, not with its inverse np.argsort(perm).",
            inverse,
        ),
        Mistake(
            "unchanged weights",
            "the weights do not care about order, but they do follow the tokens: row i of "
            "the shuffled sentence belongs to the token now at position i.",
            lambda A, p: np.asarray(A),
        ),
    ]
    return run_check("shuffled_weights", fn, cases, "(weights, perm)", mistakes, raise_on_fail=raise_on_fail)


def merge_heads(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(x) -> (B, T, H * d_head)`` for x a tensor (B, H, T, d_head), the inverse of
    :func:`split_heads` (head h fills features [h*d_head, (h+1)*d_head))."""
    g = torch.Generator().manual_seed(2)  # its own generator: the learner's seed is left alone
    x1 = mh.split_heads(torch.randn(2, 5, 12, generator=g), 3)  # (2, 3, 5, 4), not contiguous
    x2 = torch.arange(2 * 2 * 3 * 2, dtype=torch.float32).view(2, 2, 3, 2)
    cases = [
        Case((x1,), mh.merge_heads(x1), "x (2, 3, 5, 4) from split_heads"),
        Case((x2,), mh.merge_heads(x2), "x = arange, shape (2, 2, 3, 2)"),
    ]
    mistakes = [
        Mistake(
            "a plain reshape without the transpose",
            "x.reshape(B, T, H * d_head) glues the rows of head 0 together, then those of "
            "head 1, ...: it mixes tokens. Bring T back next to B first: "
            "x.transpose(1, 2).reshape(B, T, H * d_head).",
            lambda x: x.reshape(x.shape[0], x.shape[2], -1),
        ),
        Mistake(
            "features merged as (d_head, H) instead of (H, d_head)",
            "head h must fill the consecutive features [h*d_head, (h+1)*d_head): "
            "x.transpose(1, 2) gives (B, T, H, d_head), then merge the last two.",
            lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
        ),
    ]
    return run_check("merge_heads", fn, cases, "(x)", mistakes, raise_on_fail=raise_on_fail)


def mha_parameter_count(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(d_model, num_heads, bias) -> int``, the parameters of multi-head self-attention
    with four d_model x d_model projections (W_q, W_k, W_v, W_o): 4 d_model^2 (+ 4 d_model)."""

    def right(d, h, bias):
        return 4 * d * d + (4 * d if bias else 0)

    cases = [
        Case((8, 2, True), right(8, 2, True), "d_model=8, 2 heads, with biases"),
        Case((512, 8, True), right(512, 8, True), "d_model=512, 8 heads, with biases"),
        Case((512, 8, False), right(512, 8, False), "d_model=512, 8 heads, no biases"),
        Case((12, 3, False), right(12, 3, False), "d_model=12, 3 heads, no biases"),
    ]
    mistakes = [
        Mistake(
            "the output projection forgotten",
            "after merging the heads, W_o (d_model x d_model, plus its bias) mixes them: "
            "four projections, not three.",
            lambda d, h, b: 3 * d * d + (3 * d if b else 0),
        ),
        Mistake(
            "biases forgotten",
            "with bias=True each of the four nn.Linear layers has a bias of d_model numbers.",
            lambda d, h, b: 4 * d * d,
        ),
        Mistake(
            "biases counted although bias=False",
            "with bias=False the four projections have weights only: 4 * d_model**2.",
            lambda d, h, b: 4 * d * d + 4 * d,
        ),
        Mistake(
            "one full d_model x d_model projection per head",
            "the heads share W_q, W_k, W_v: each head reads its own d_head columns of one "
            "d_model x d_model matrix, so the count does not depend on num_heads.",
            lambda d, h, b: h * (3 * d * d + (3 * d if b else 0)) + d * d + (d if b else 0),
        ),
        Mistake(
            "one d_head x d_head projection per head",
            "every head reads the whole token (all d_model features) and writes d_head "
            "features: its slice of W_q is d_model x d_head, not d_head x d_head.",
            lambda d, h, b: h * 3 * ((d // h) ** 2 + ((d // h) if b else 0)) + d * d + (d if b else 0),
        ),
    ]
    return run_check(
        "mha_parameter_count",
        fn,
        cases,
        "(d_model, num_heads, bias)",
        mistakes,
        rtol=0.0,
        atol=0.5,
        raise_on_fail=raise_on_fail,
    )
