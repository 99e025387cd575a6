"""The committed reference results that chapter 7 shows beside its live measurements: found
under ``results/``, labelled, printed as tables and plotted against T.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .impls import IMPLEMENTATIONS, STYLE
from .probes import MiB
from .report import _table_T, reference_series

__all__ = [
    "find_results",
    "plot_time_memory",
    "print_reference_backends",
    "print_reference_results",
    "reference_label",
]


def find_results(*roots: str | Path) -> list[Path]:
    """Every ``results/<machine>/results.json`` found under the given roots (default: the current
    folder, its parent, and the repository that holds this package when it is installed from a
    clone), CPU machines first, then GPUs, without duplicates.
    """
    if not roots:
        here = Path(__file__).resolve()  # <repository>/src/selfattention/bench/report.py
        roots = (Path.cwd(), Path.cwd().parent, *here.parents[2:4])
    found: dict[Path, None] = {}
    for root in roots:
        for p in sorted(Path(root).glob("results/*/results.json")):
            found[p.resolve()] = None
    return sorted(found, key=lambda p: (not p.parent.name.startswith("cpu"), p.parent.name))


def reference_label(results: dict[str, Any]) -> str:
    """``'reference: <device name>, <date>'`` from a results file's context: the GPU's name on a
    GPU, the CPU model and core count on a CPU."""
    ctx = results["context"]
    gpu = ctx.get("gpu") or {}
    if ctx.get("device_type") == "cuda" and gpu.get("name"):
        name = gpu["name"]
    else:
        name = f"{ctx.get('cpu_model', 'CPU')}, {ctx.get('cpu_count', '?')} cores"
    return f"reference: {name}, {str(ctx.get('date', '?'))[:10]}"


def _short(impl: str) -> str:
    return IMPLEMENTATIONS[impl].short if impl in IMPLEMENTATIONS else impl


def print_reference_results(refs: Sequence[dict[str, Any]], paths: Sequence[Path]) -> None:
    """Print what each reference results file measured: its machine, its matmul ceilings, and
    every implementation at T=2048 (non-causal), or say that there are none (chapter 7)."""
    if not refs:
        print("No reference results found (looked for results/*/results.json): only live numbers below.")
    for p, r in zip(paths, refs):
        ctx = r["context"]
        print(f"{reference_label(r)}  [{Path(p).parent.name}/results.json]")
        print(
            f"   device {ctx['device']}; torch {ctx['torch']}; "
            f"CPU {ctx['cpu_model']}, {ctx['cpu_count']} cores"
        )
        la = ctx.get("load_average")
        if ctx["device_type"] == "cpu" and la and la[0] > (ctx.get("cpu_count") or 1):
            print(
                f"   note: load average {la[0]} on {ctx['cpu_count']} CPUs during the run: "
                "the machine was shared, so its CPU timings are disturbed"
            )
        for dt, c in r["ceilings"].items():
            if c.get("gflops"):
                print(f"   matmul ceiling {dt}: {c['gflops']:.1f} GFLOP/s (n={c['n']})")
        T_tab = _table_T(r)
        print(f"   at T={T_tab}, non-causal:  implementation, dtype, median ms, GFLOP/s, fraction of ceiling")
        for c in r["cases"]:
            if c["T"] == T_tab and not c["causal"] and c["median_s"] and not c["extrapolated"]:
                print(
                    f"     {_short(c['impl']):24s} {c['dtype']:9s} "
                    f"{c['median_s'] * 1e3:10.3f} {c['gflops']:10.1f} {c['fraction_of_ceiling'] or 0:8.4f}"
                )
    if not any(r["context"]["device_type"] == "cuda" for r in refs):
        print(
            "\nNo GPU reference results are committed yet: the GPU numbers of this chapter are missing, "
            "not estimated. Run the notebook on a GPU, or `make bench` there, to see them."
        )


def print_reference_backends(gpu_refs: Sequence[dict[str, Any]]) -> None:
    """Print, for each GPU reference file, SDPA's backends and the course's versions at T=2048
    (non-causal): time, TFLOP/s, fraction of the ceiling, extra memory; and the backends that
    refused the inputs, with torch's reason (chapter 7)."""
    if not gpu_refs:
        print(
            "No GPU reference results are committed yet (results/cuda-*/results.json), so there is no "
            "measured GPU comparison of the backends here; run this notebook on a GPU to see one live."
        )
    for r in gpu_refs:
        T_tab = _table_T(r)
        print(f"{reference_label(r)}: SDPA backends and the course's versions at T={T_tab}, non-causal")
        print(
            f"  {'implementation':24s} {'dtype':9s} {'ms':>8s} {'TFLOP/s':>8s} {'of ceiling':>10s} "
            f"{'extra MiB':>9s}"
        )
        for c in r["cases"]:
            if c["T"] == T_tab and not c["causal"] and c["median_s"]:
                mem = "-" if c["peak_extra_bytes"] is None else f"{c['peak_extra_bytes'] / MiB:.1f}"
                print(
                    f"  {_short(c['impl']):24s} {c['dtype']:9s} {c['median_s'] * 1e3:8.3f} "
                    f"{c['gflops'] / 1e3:8.2f} {c['fraction_of_ceiling'] or 0:10.3f} {mem:>9s}"
                )
        refused = {(s["impl"], s.get("dtype")): s["reason"] for s in r["skipped"] if "raised" in s["reason"]}
        for (impl, dt), why in refused.items():
            print(f"  refused: {impl} {dt}: {why[:120]}")


def plot_time_memory(
    live: Sequence[dict[str, Any]],
    reference: dict[str, Any] | None = None,
    impls: Sequence[str] | None = None,
    dtype: str = "float32",
    live_label: str = "measured now on this machine",
    figsize: tuple[float, float] = (10.5, 3.9),
) -> Any:
    """Two log-log panels, median time and extra peak memory against T (non-causal): the cases of
    ``live`` (from :func:`~selfattention.gpu_demos.live_sweep`) as solid lines with filled
    markers, and those of a ``reference`` results file as dashed lines with hollow markers,
    labelled with :func:`reference_label`. Grey guide lines show the slopes of T^2 and T. Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=figsize)
    if impls is None:
        impls = [
            i
            for i in IMPLEMENTATIONS
            if any(c["impl"] == i for c in live)
            or (reference and any(c["impl"] == i for c in reference["cases"]))
        ]
    used = []
    seen: dict[Any, list[tuple[float, float]]] = {ax_t: [], ax_m: []}  # every plotted (T, y) per panel

    def draw(ax: Any, pts: list, style: str, color: str, marker: str, hollow: bool) -> bool:
        if not pts:
            return False
        ax.plot(
            *zip(*pts),
            style,
            color=color,
            marker=marker,
            ms=5,
            alpha=0.8 if hollow else 1.0,
            **({"mfc": "none"} if hollow else {}),
        )
        seen[ax].extend(pts)
        return True

    for impl in impls:
        color, marker = STYLE[impl]
        pts = sorted((c["T"], c["median_s"]) for c in live if c["impl"] == impl and not c["causal"])
        mem = sorted(
            (c["T"], c["peak_extra_bytes"] / 2**20)
            for c in live
            if c["impl"] == impl and not c["causal"] and c.get("peak_extra_bytes")
        )
        drawn = draw(ax_t, pts, "-", color, marker, False) | draw(ax_m, mem, "-", color, marker, False)
        if reference is not None:
            rt = reference_series(reference, impl, "median_s", dtype)
            rm = [
                (t, b / 2**20)
                for t, b in reference_series(reference, impl, "peak_extra_bytes", dtype)
                if b > 0
            ]
            drawn |= draw(ax_t, rt, "--", color, marker, True) | draw(ax_m, rm, "--", color, marker, True)
        if drawn:
            used.append(impl)
    for ax in (ax_t, ax_m):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        if not seen[ax]:
            continue
        Ts = np.array(sorted({t for t, _ in seen[ax]}), dtype=float)
        ys = np.array([y for _, y in seen[ax]], dtype=float)
        lo, hi = ys.min() / 1.5, ys.max() * 1.5
        for power, ls in ((2, "-"), (1, ":")):
            ax.plot(Ts, lo * 1.5 * (Ts / Ts[0]) ** power, ls, color="black", lw=0.8, alpha=0.4)
        ax.set_ylim(lo, hi)
    ax_t.set_ylabel("median time per call (s)")
    ax_m.set_ylabel("measured extra peak memory (MiB)")
    for ax, what in ((ax_t, "time"), (ax_m, "memory")):
        ax.set_xlabel("sequence length T (B=1, H=8, d_head=64)")
        ax.grid(True, which="both", alpha=0.25)
        ax.set_title(f"{what} against T, {dtype}, non-causal", fontsize=9)
    handles = [
        Line2D([], [], color=STYLE[i][0], marker=STYLE[i][1], ls="", label=IMPLEMENTATIONS[i].short)
        for i in used
    ]
    styles = [Line2D([], [], color="black", ls="-", marker="o", label=live_label)] if live else []
    if reference is not None:
        styles.append(
            Line2D([], [], color="black", ls="--", marker="o", mfc="none", label=reference_label(reference))
        )
    styles += [
        Line2D([], [], color="black", alpha=0.4, ls="-", lw=0.8, label="slope of T²"),
        Line2D([], [], color="black", alpha=0.4, ls=":", lw=0.8, label="slope of T"),
    ]
    fig.legend(
        handles=handles + styles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7.5, frameon=False
    )
    fig.tight_layout()
    return fig
