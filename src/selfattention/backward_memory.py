"""Memory of attention's backward pass, for chapter 8: what the forward saves, and the peak.

Three ways to get attention's gradients in PyTorch:

* ``"course"``: autograd through the course's own
  :func:`~selfattention.multihead.scaled_dot_product_attention`, which saves the (T, S) scores and
  weights for the backward;
* ``"sdpa"``: autograd through torch's fused ``scaled_dot_product_attention``;
* ``"tiled"``: :func:`~selfattention.tiled.tiled_attention`, whose backward recomputes P block by
  block from the row logsumexp.

:func:`saved_bytes` counts, exactly, the bytes the forward keeps for the backward beyond its inputs
(through autograd's saved-tensor hooks). :func:`peak_bytes` measures the extra peak memory of one
forward + backward with :func:`~selfattention.bench.probes.peak_extra_bytes`, the probe chapter 7 uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import bench, multihead, tiled

IMPLEMENTATIONS: dict[str, str] = {
    "course": "autograd through the course's PyTorch version",
    "sdpa": "autograd through torch SDPA",
    "tiled": "tiled, recomputing backward",
}


def _check_impl(impl: str) -> None:
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be one of {sorted(IMPLEMENTATIONS)}, got {impl!r}.")


def forward_fn(impl: str, is_causal: bool = False, block_size: int = 128) -> Callable[..., torch.Tensor]:
    """``f(q, k, v) -> out`` for ``impl`` (see ``IMPLEMENTATIONS``), differentiable.

    Raises:
        ValueError: ``impl`` is not one of ``IMPLEMENTATIONS``.
    """
    _check_impl(impl)
    if impl == "course":
        return lambda q, k, v: multihead.scaled_dot_product_attention(q, k, v, is_causal=is_causal)[0]
    if impl == "sdpa":
        return lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    return lambda q, k, v: tiled.tiled_attention(q, k, v, block_size=block_size, is_causal=is_causal)


def _inputs(B, H, T, d, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v, dO = (torch.randn(B, H, T, d, generator=g, dtype=dtype).to(device) for _ in range(4))
    return q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), dO


def saved_bytes(impl: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw: Any) -> int:
    """Bytes that the forward of ``impl`` keeps for the backward, not counting q, k, v themselves.

    q, k, v: (B, H, T, d) tensors that require grad; ``kw`` go to :func:`forward_fn`. Each storage
    is counted once (a tensor saved twice, or two views of one tensor, cost its memory once).
    """
    inputs = {t.untyped_storage().data_ptr() for t in (q, k, v)}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in inputs:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward_fn(impl, **kw)(q, k, v)
    del out
    return sum(storages.values())


def peak_bytes(
    impl: str,
    T: int,
    B: int = 1,
    H: int = 1,
    d: int = 64,
    is_causal: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    block_size: int = 128,
    seed: int = 0,
) -> int | None:
    """Measured extra peak memory (bytes) of one forward + backward of ``impl`` at T = S.

    The inputs q, k, v, dO (B, H, T, d) exist before the measurement and are not counted; the
    output, what the forward saves, the backward's temporaries and the three gradients are.
    ``None`` where the machine has no usable counter (see :func:`~selfattention.bench.probes.memory_method`).

    Raises:
        ValueError: ``impl`` is not one of ``IMPLEMENTATIONS``.
    """
    f = forward_fn(impl, is_causal=is_causal, block_size=block_size)
    q, k, v, dO = _inputs(B, H, T, d, dtype, device, seed)
    return bench.peak_extra_bytes(lambda: torch.autograd.grad(f(q, k, v), (q, k, v), dO), device)


def measure(
    Ts: Sequence[int], impls: Sequence[str] = tuple(IMPLEMENTATIONS), repeats: int = 2, **kw: Any
) -> list[dict[str, Any]]:
    """For each T and implementation: saved bytes and the smallest measured peak of ``repeats`` runs.

    ``kw`` go to :func:`peak_bytes` (B, H, d, is_causal, dtype, device, block_size). Returns one dict
    per (impl, T) with keys ``impl``, ``T``, ``saved_bytes`` and ``peak_bytes`` (None if unmeasurable).
    The minimum of a few runs discards the noise of the allocator and of other processes.
    """
    rows = []
    saved_kw = {key: kw[key] for key in ("is_causal", "block_size") if key in kw}
    shape = {key: kw.get(key, default) for key, default in (("B", 1), ("H", 1), ("d", 64))}
    for T in Ts:
        for impl in impls:
            peaks = [peak_bytes(impl, T, **kw) for _ in range(repeats)]
            q, k, v, _ = _inputs(
                shape["B"],
                shape["H"],
                T,
                shape["d"],
                kw.get("dtype", torch.float32),
                kw.get("device", "cpu"),
                0,
            )
            rows.append(
                {
                    "impl": impl,
                    "T": T,
                    "saved_bytes": saved_bytes(impl, q, k, v, **saved_kw),
                    "peak_bytes": None if None in peaks else min(peaks),
                }
            )
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`measure` as a text table in MiB: one line per T, two columns per impl."""
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    Ts = sorted({r["T"] for r in rows})
    cell = {(r["impl"], r["T"]): r for r in rows}
    mib = 2**20

    def fmt(x):
        return "-" if x is None else f"{x / mib:.1f}"

    # Two header lines keep the table within a page's column (about 70 characters).
    names = f"{'':>6}" + "".join(f" | {i:^13}" for i in impls)
    head = f"{'T':>6}" + "".join(f" | {'saved':>6} {'peak':>6}" for _ in impls)
    lines = [names, head, "-" * len(head)]
    for T in Ts:
        lines.append(
            f"{T:>6}"
            + "".join(
                f" | {fmt(cell[(i, T)]['saved_bytes']):>6} {fmt(cell[(i, T)]['peak_bytes']):>6}"
                for i in impls
            )
        )
    return "\n".join(lines) + "\n(MiB: saved for backward beyond q, k, v; extra peak of forward + backward)"


def slopes(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Fitted log-log slope of the measured peak against T, per implementation with two or more
    measured points (:func:`~selfattention.bench.report.loglog_slope`): about 2 for memory that
    grows like T^2, about 1 for linear memory."""
    out = {}
    for impl in dict.fromkeys(r["impl"] for r in rows):
        pts = [(r["T"], r["peak_bytes"]) for r in rows if r["impl"] == impl and r["peak_bytes"]]
        if len(pts) >= 2:
            out[impl] = bench.loglog_slope(*zip(*pts))
    return out


def plot(
    rows: Sequence[dict[str, Any]],
    title: str = "Peak memory of attention's forward + backward",
    guides: bool = True,
):
    """Log-log plot of the measured peak (MiB) against T, one line per implementation.

    With ``guides``, dotted and dashed reference lines of slope 2 (T^2) and slope 1 (T) start at
    the first point of the ``"course"`` and ``"tiled"`` lines, so the reader can compare growth
    rates by eye.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    lines = {}
    for impl in dict.fromkeys(r["impl"] for r in rows):
        pts = [(r["T"], r["peak_bytes"] / 2**20) for r in rows if r["impl"] == impl and r["peak_bytes"]]
        if pts:
            lines[impl] = sorted(pts)
            ax.plot(*zip(*lines[impl]), "o-", label=IMPLEMENTATIONS[impl])
    for impl, power, style, label in (
        ("course", 2, "k:", "slope 2 (T²)"),
        ("tiled", 1, "k--", "slope 1 (T)"),
    ):
        if guides and len(lines.get(impl, ())) >= 2:
            (T0, m0), T1 = lines[impl][0], lines[impl][-1][0]
            ax.plot([T0, T1], [m0, m0 * (T1 / T0) ** power], style, lw=1, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T (= S)")
    ax.set_ylabel("extra peak memory (MiB)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
