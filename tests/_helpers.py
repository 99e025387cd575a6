"""Shared helpers for the library tests (not a conftest: import it as ``from _helpers import ...``).

Tolerances, per dtype
---------------------
Every comparison here is between two implementations of the *same* formula whose outputs are
convex combinations of values drawn from N(0, 1), i.e. O(1) numbers. They differ only in the order
of floating-point operations (blocked vs unblocked sums, scaling q vs scaling the scores, online
vs two-pass softmax), so the error is a few units in the last place times a small growth factor
(the number of summed terms, here <= a few hundred):

* float64: eps = 2.2e-16; observed differences are ~1e-15. ``atol = rtol = 1e-12`` leaves three
  orders of magnitude of headroom yet still catches any real mistake (a missed scale, a wrong mask
  entry or a wrong alignment moves outputs by ~1e-2 or more).
* float32: eps = 1.2e-7; observed differences are ~1e-7 .. 1e-6 (torch's fused CPU kernel and the
  online softmax rescale in a different order). ``atol = rtol = 1e-5`` is about 100 eps relative to
  O(1) outputs.
* weights (probabilities in [0, 1]) use the same numbers.
* The pure-Python loops compute in Python floats (float64) whatever the input, so a loops-vs-float32
  comparison uses the float32 tolerance.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

TOL = {
    np.float64: dict(atol=1e-12, rtol=1e-12),
    np.float32: dict(atol=1e-5, rtol=1e-5),
}
TORCH_DTYPES = {np.float64: torch.float64, np.float32: torch.float32}
DTYPES = (np.float32, np.float64)

# Property-based tests: a bounded number of small cases each, no per-example deadline (the first
# call into torch can be slow), so the whole suite stays well under a minute on 2 cores.
# SELFATTENTION_EXAMPLES=N multiplies the work for a one-off deep run (e.g. N=1000).
_N = int(os.environ.get("SELFATTENTION_EXAMPLES", "40"))
PROPERTY = settings(
    max_examples=_N, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROPERTY_SMALL = settings(
    max_examples=max(1, _N * 3 // 8), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Run a module's tiny tensors on one thread (torch and BLAS), then restore the setting.

    Every tensor here is small, so threads only add synchronisation; on a shared 2-core machine
    spinning OpenMP threads made the suite about 5 times slower. Import this fixture into a test
    module (``from _helpers import one_thread  # noqa: F401``) to make it apply there.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl is a dev dependency
        limit = contextlib.nullcontext()
    with limit:
        yield
    torch.set_num_threads(n)


def tol(dtype) -> dict:
    """assert_allclose keyword arguments for a NumPy or torch dtype."""
    if isinstance(dtype, torch.dtype):
        dtype = np.float64 if dtype == torch.float64 else np.float32
    return TOL[np.dtype(dtype).type]


def to_np(x) -> np.ndarray:
    """A tensor, list or array as a float64 NumPy array (for comparisons)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def max_abs_diff(a, b) -> float:
    """Largest absolute difference, treating equal infinities/NaNs as equal."""
    a, b = to_np(a), to_np(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.size == 0:
        return 0.0
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    d = np.where(same, 0.0, np.abs(a - b))
    return float(np.max(d))


def assert_close(actual, expected, dtype, what: str = "") -> float:
    """assert_allclose with the tolerance of ``dtype``; return the max abs difference."""
    a, e = to_np(actual), to_np(expected)
    np.testing.assert_allclose(a, e, err_msg=what, **tol(dtype))
    return max_abs_diff(a, e)


def rand(rng: np.random.Generator, shape, dtype=np.float64) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def rand_qkv(rng, lead, T, S, d_k, d_v, dtype=np.float64):
    """Q (*lead, T, d_k), K (*lead, S, d_k), V (*lead, S, d_v) from N(0, 1)."""
    lead = tuple(lead)
    return (
        rand(rng, lead + (T, d_k), dtype),
        rand(rng, lead + (S, d_k), dtype),
        rand(rng, lead + (S, d_v), dtype),
    )


def torch_sdpa(q, k, v, **kw):
    """torch's own fused function, the independent reference."""
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, **kw)


def reference_weights(q, k, attn_mask=None, is_causal=False, scale=None) -> torch.Tensor:
    """Weights softmax(q k^T * scale + mask) in float64, written independently of the library.

    Fully masked rows are set to zero, as torch's SDPA returns for them.
    """
    q, k = q.double(), k.double()
    T, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / q.shape[-1] ** 0.5 if scale is None else scale
    s = (q @ k.transpose(-2, -1)) * scale
    if is_causal:
        attn_mask = torch.ones(T, S, dtype=torch.bool).tril()
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            s = s.masked_fill(~attn_mask, float("-inf"))
        else:
            s = s + attn_mask.double()
    w = torch.softmax(s, dim=-1)
    return torch.nan_to_num(w, nan=0.0)


def assert_message(excinfo, *needles: str) -> None:
    """Every needle (argument names, shapes) appears verbatim in the exception's message."""
    msg = str(excinfo.value)
    missing = [n for n in needles if n not in msg]
    assert not missing, f"message {msg!r} lacks {missing}"


def perturb_after(x, t: int, rng: np.random.Generator):
    """A copy of x (..., T, d) whose tokens at positions > t are replaced by fresh random ones."""
    if isinstance(x, torch.Tensor):
        y = x.clone()
        tail = y[..., t + 1 :, :]
        y[..., t + 1 :, :] = torch.from_numpy(rng.standard_normal(tuple(tail.shape))).to(y.dtype) * 3
        return y
    y = np.array(x, copy=True)
    y[..., t + 1 :, :] = rng.standard_normal(y[..., t + 1 :, :].shape) * 3
    return y


def prefix_change(f, x, t: int, rng) -> float:
    """Largest change of outputs 0..t of ``f`` when tokens after t change (0 for a causal f)."""
    y = f(x)
    y2 = f(perturb_after(x, t, rng))
    return max_abs_diff(to_np(y)[..., : t + 1, :], to_np(y2)[..., : t + 1, :])


# --------------------------------------------------------------------------------------------
# Random attention problems, shared by the level-against-level tests and the max-diff report.
# --------------------------------------------------------------------------------------------
MASK_KINDS = ("none", "bool", "float", "causal")


class Case:
    """One attention problem in NumPy and in torch (same numbers), with its mask and scale."""

    def __init__(self, lead, T, S, d_k, d_v, dtype, mask_kind="none", scale=None, seed=0,
                 full_row=False, mask_lead="full"):
        self.lead, self.T, self.S, self.d_k, self.d_v = tuple(lead), T, S, d_k, d_v
        self.dtype, self.mask_kind, self.scale = dtype, mask_kind, scale
        rng = np.random.default_rng(seed)
        self.Q, self.K, self.V = rand_qkv(rng, self.lead, T, S, d_k, d_v, dtype)
        self.mask = None  # NumPy mask (bool True = attend, or float added)
        if mask_kind in ("bool", "float"):
            mlead = {"full": self.lead, "none": (), "ones": (1,) * len(self.lead)}[mask_lead]
            allowed = rng.random(mlead + (T, S)) < 0.7
            if full_row:  # one query that sees no key at all: torch returns zeros there
                allowed[..., rng.integers(T), :] = False
            if mask_kind == "bool":
                self.mask = allowed
            else:
                add = rng.standard_normal(allowed.shape).astype(dtype)
                self.mask = np.where(allowed, add, -np.inf).astype(dtype)
        self.causal = mask_kind == "causal"
        td = TORCH_DTYPES[np.dtype(dtype).type]
        self.q, self.k, self.v = (torch.from_numpy(a).to(td) for a in (self.Q, self.K, self.V))
        self.attn_mask = None if self.mask is None else torch.from_numpy(self.mask)

    @property
    def torch_kw(self) -> dict:
        return dict(attn_mask=self.attn_mask, is_causal=self.causal, scale=self.scale)

    def __repr__(self) -> str:
        return (f"Case(lead={self.lead}, T={self.T}, S={self.S}, d_k={self.d_k}, d_v={self.d_v}, "
                f"dtype={np.dtype(self.dtype).name}, mask={self.mask_kind}, scale={self.scale})")


def case_strategy(mask_kinds=MASK_KINDS, max_lead: int = 2, max_len: int = 7, dtypes=DTYPES):
    """Hypothesis strategy of :class:`Case`: T = 1 and T != S, 0..max_lead batch/head dimensions,
    bool/float/causal masks (broadcast or full), fully masked rows, scale overrides, both dtypes."""
    from hypothesis import strategies as st

    return st.builds(
        Case,
        lead=st.lists(st.integers(1, 3), max_size=max_lead),
        T=st.integers(1, max_len),
        S=st.integers(1, max_len),
        d_k=st.integers(1, 8),
        d_v=st.integers(1, 8),
        dtype=st.sampled_from(dtypes),
        mask_kind=st.sampled_from(mask_kinds),
        scale=st.one_of(st.none(), st.floats(0.05, 3.0)),
        seed=st.integers(0, 2**32 - 1),
        full_row=st.booleans(),
        mask_lead=st.sampled_from(["full", "none", "ones"]),
    )
