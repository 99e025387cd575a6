"""Checks for chapter 6: masks, fully masked rows, mask polarity and the KV cache."""

from __future__ import annotations

import numpy as np
import torch

from .. import masks
from .. import multihead as mh
from .. import vectorized as vz
from ._core import Case, CheckResult, Mistake, run_check


def _rng() -> np.random.Generator:
    """A fresh generator per check, so its cases do not depend on which checks ran before."""
    return np.random.default_rng(6006)


def causal_mask(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(T) -> (T, T)`` boolean causal mask, True = attend."""
    cases = [Case((T,), masks.causal_mask(T), f"T={T}") for T in (1, 4, 6)]
    mistakes = [
        Mistake(
            "an inverted mask (True = hide)",
            "in this book (and in torch's SDPA) True means 'may attend'. Query i may see keys "
            "j <= i: the lower triangle with the diagonal, torch.ones(T, T).tril().bool().",
            lambda T: ~masks.causal_mask(T),
        ),
        Mistake(
            "the diagonal left out",
            "a token may attend to itself: keep the diagonal (tril, not tril(diagonal=-1)).",
            lambda T: masks.causal_mask(T) & ~torch.eye(T, dtype=torch.bool),
        ),
        Mistake(
            "the upper triangle (future allowed, past hidden)",
            "query i must see the past (j <= i), so use tril, not triu.",
            lambda T: masks.causal_mask(T).T,
        ),
    ]
    return run_check("causal_mask", fn, cases, "(T)", mistakes, raise_on_fail=raise_on_fail)


def _masked_softmax_mul(s, m):
    # The 0 * -inf trap: "hiding" scores by multiplying them with a 1 / -inf mask.
    with np.errstate(all="ignore"):
        return _nan_softmax(np.asarray(s, dtype=float) * np.where(np.asarray(m), 1.0, -np.inf))


def _nan_softmax(x):
    with np.errstate(all="ignore"):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


def masked_softmax(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(scores, mask) -> weights``; mask True = attend; fully masked rows give zeros."""
    r = _rng()
    s = r.normal(size=(4, 4))
    m = masks.causal_mask(4).numpy()
    s2 = r.normal(size=(3, 5))
    m2 = np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=bool)

    def right(s, m):
        return vz.softmax(np.where(m, s, -np.inf))

    cases = [
        Case((s, m), right(s, m), "causal mask, T=4"),
        Case((s2, m2), right(s2, m2), "padding, with a fully masked row"),
    ]
    mistakes = [
        Mistake(
            "an inverted mask",
            "True means 'attend': hide the positions where the mask is False "
            "(np.where(mask, scores, -np.inf)).",
            lambda s, m: right(s, ~m),
        ),
        Mistake(
            "NaN from 0 * -inf",
            "multiplying the scores by a 0/-inf (or 0/1) mask creates 0 * -inf = NaN. Fill "
            "the hidden positions instead: np.where(mask, scores, -np.inf).",
            _masked_softmax_mul,
        ),
        Mistake(
            "a whole row of -inf giving NaN",
            "a row whose keys are all masked has max -inf, and -inf - (-inf) is NaN. Return "
            "zeros for such rows (that is what torch's SDPA does).",
            lambda s, m: _nan_softmax(np.where(m, s, -np.inf)),
        ),
        Mistake(
            "masked positions set to 0 instead of -inf",
            "a score of 0 still gets weight exp(0 - max) > 0: use -inf so its weight is 0.",
            lambda s, m: vz.softmax(np.where(m, s, 0.0)),
        ),
    ]
    return run_check("masked_softmax", fn, cases, "(scores, mask)", mistakes, raise_on_fail=raise_on_fail)


def kv_step(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(q, k, v, K_cache, V_cache) -> (out, K_all, V_all)`` for one decoding step.

    q, k, v: (B, H, 1, d) for the new token; K_cache, V_cache: (B, H, S, d) for the tokens before.
    The step appends k, v to the cache and attends from q to all S + 1 keys.
    """
    gen = torch.Generator().manual_seed(2)  # the global random state stays the learner's

    def inputs(B, H, S, d, spread=1.0):
        q, k, v = (torch.randn(B, H, 1, d, generator=gen) * spread for _ in range(3))
        Kc, Vc = (torch.randn(B, H, S, d, generator=gen) * spread for _ in range(2))
        return q, k, v, Kc, Vc

    def right(q, k, v, Kc, Vc):
        K, V = torch.cat([Kc, k], 2), torch.cat([Vc, v], 2)  # (B, H, S + 1, d)
        return mh.scaled_dot_product_attention(q, K, V)[0], K, V

    cases = [
        Case(args, right(*args), label)
        for args, label in (
            (inputs(1, 2, 4, 3), "B=1, H=2, 4 cached tokens"),
            (inputs(2, 3, 7, 5, spread=2.0), "B=2, H=3, 7 cached tokens, sharper scores"),
            (inputs(1, 1, 1, 4), "one cached token"),
            (inputs(2, 1, 0, 3), "an empty cache: the first token attends to itself only"),
        )
    ]
    mistakes = [
        Mistake(
            "the new key and value not appended",
            "the new token attends to itself too: concatenate k and v to the cache along "
            "the time axis (dim=2) before attending, and return the grown cache.",
            lambda q, k, v, Kc, Vc: (mh.scaled_dot_product_attention(q, Kc, Vc)[0], Kc, Vc),
        ),
        Mistake(
            "the old cache returned",
            "the output is right, but the next step needs this token's key and value too: "
            "return the grown cache, torch.cat([K_cache, k], dim=2) (and the same for V).",
            lambda q, k, v, Kc, Vc: (right(q, k, v, Kc, Vc)[0], Kc, Vc),
        ),
        Mistake(
            "the new key and value put before the cache",
            "the output is the same (attention does not care about the order of its keys), but "
            "the cache must keep positions in order, newest last, for masks and positions later: "
            "torch.cat([K_cache, k], dim=2), not torch.cat([k, K_cache], dim=2).",
            lambda q, k, v, Kc, Vc: (right(q, k, v, Kc, Vc)[0], torch.cat([k, Kc], 2), torch.cat([v, Vc], 2)),
        ),
        Mistake(
            "is_causal=True with one query (top-left alignment)",
            "torch's is_causal aligns top-left, so a single query sees key 0 only. The new "
            "token is the LAST position: it may see every cached key, so use no mask "
            "(or causal_mask(1, S + 1, align='bottom_right')).",
            lambda q, k, v, Kc, Vc: (
                mh.scaled_dot_product_attention(
                    q,
                    torch.cat([Kc, k], 2),
                    torch.cat([Vc, v], 2),
                    attn_mask=masks.causal_mask(1, Kc.shape[2] + 1),
                )[0],
                torch.cat([Kc, k], 2),
                torch.cat([Vc, v], 2),
            ),
        ),
    ]
    return run_check(
        "kv_step",
        fn,
        cases,
        "(q, k, v, K_cache, V_cache)",
        mistakes,
        rtol=1e-4,
        atol=1e-6,
        parts=("out", "K_all", "V_all"),
        raise_on_fail=raise_on_fail,
    )


def fix_inverted_mask(fn, raise_on_fail: bool = False) -> CheckResult:
    """Check ``fn(q, k, v, lengths) -> out``: SDPA over a padded batch, padded keys hidden.

    q: (B, H, T, d); k, v: (B, H, S, d); lengths: a list of B ints, sentence b having its
    ``lengths[b]`` real tokens first. The answer is torch's SDPA with the boolean mask
    ``padding_mask(lengths, S)[:, None, None, :]`` (True = attend). The exercise hands the learner
    code that passes the *padding* positions as True (``nn.MultiheadAttention``'s convention) to
    SDPA, which runs and returns the right shape with the wrong numbers.
    """
    torch.manual_seed(6)
    B, H, T, d = 2, 2, 5, 4
    q, k, v = (torch.randn(B, H, T, d) for _ in range(3))

    def real(lengths, S):  # (B, S), True = a real token
        return masks.padding_mask(list(lengths), S)

    def attend(q, k, v, mask):
        return mh.scaled_dot_product_attention(q, k, v, attn_mask=mask)[0]

    def right(q, k, v, lengths):
        return attend(q, k, v, real(lengths, k.shape[-2])[:, None, None, :])

    def first(out):
        return out[0] if isinstance(out, (tuple, list)) else out

    cases = [
        Case((q, k, v, [5, 3]), right(q, k, v, [5, 3]), "B=2, H=2, T=S=5, lengths [5, 3]"),
        Case(
            (q, k, v, [2, 4]),
            right(q, k, v, [2, 4]),
            "B=2, H=2, T=S=5, lengths [2, 4] (every sentence padded)",
        ),
    ]
    mistakes = [
        Mistake(
            "the inverted mask left in (True = padding)",
            "SDPA's boolean attn_mask means True = MAY attend, so passing 'is padding' hides "
            "the real tokens and lets every query look only at padding. Negate it, or build "
            "the mask as positions < lengths (True = a real token).",
            lambda q, k, v, ls: attend(q, k, v, ~real(ls, k.shape[-2])[:, None, None, :]),
        ),
        Mistake(
            "the mask put on the queries instead of the keys",
            "padding must be hidden as a KEY (a column of the (T, S) scores), so the mask "
            "has shape (B, 1, 1, S); a (B, 1, T, 1) mask blanks whole rows instead.",
            lambda q, k, v, ls: attend(q, k, v, real(ls, k.shape[-2])[:, None, :, None]),
        ),
        Mistake(
            "a boolean mask turned into a 0/1 float mask",
            "a float attn_mask is ADDED to the scores: adding 1 to real keys and 0 to padding "
            "hides nothing. Keep it boolean, or use 0 and -inf (masks.to_additive).",
            lambda q, k, v, ls: attend(q, k, v, real(ls, k.shape[-2]).to(q.dtype)[:, None, None, :]),
        ),
        Mistake(
            "one padded key let through (<= instead of <)",
            "with lengths[b] real tokens the real positions are 0 .. lengths[b] - 1: use "
            "torch.arange(S) < length, not <=.",
            lambda q, k, v, ls: attend(
                q,
                k,
                v,
                (torch.arange(k.shape[-2])[None, :] <= torch.as_tensor(ls)[:, None])[:, None, None, :],
            ),
        ),
        Mistake(
            "no mask at all",
            "without a mask every query attends to the padding too: pass the (B, 1, 1, S) "
            "boolean mask with True = a real token.",
            lambda q, k, v, ls: attend(q, k, v, None),
        ),
    ]
    return run_check(
        "fix_inverted_mask",
        fn,
        cases,
        "(q, k, v, lengths)",
        mistakes,
        postprocess=first,
        rtol=1e-4,
        atol=1e-6,
        raise_on_fail=raise_on_fail,
    )
