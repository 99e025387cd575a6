"""Reading benchmark results: the course's targets, series and log-log slopes, the plots and the
summary of a run; :func:`write_report` and :func:`load_results` store and read them.

A results dict is what :func:`~selfattention.bench.suite.run_suite` returns and
:func:`write_report` stores as ``results.json``; :func:`load_results` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .impls import IMPLEMENTATIONS, STYLE
from .probes import MiB

__all__ = [
    "TARGETS",
    "load_results",
    "loglog_slope",
    "plot_results",
    "reference_series",
    "target_ratios",
    "write_report",
    "write_summary",
]


# ------------------------------------------------------------------------------------------------
# Series, slopes and targets
# ------------------------------------------------------------------------------------------------
def reference_series(
    results: dict[str, Any],
    impl: str,
    key: str = "median_s",
    dtype: str = "float32",
    causal: bool = False,
    extrapolated: bool = False,
) -> list[tuple[int, float]]:
    """Sorted (T, value) points of one implementation in a results file; ``key`` is a case field
    (``median_s``, ``gflops``, ``fraction_of_ceiling``, ``peak_extra_bytes``). Extrapolated
    points (the loops at large T) are left out unless ``extrapolated``."""
    pts = [
        (c["T"], c[key])
        for c in results["cases"]
        if c["impl"] == impl
        and c["dtype"] == dtype
        and c["causal"] == causal
        and c.get(key) is not None
        and (extrapolated or not c.get("extrapolated"))
    ]
    return sorted(pts)


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """The least-squares slope of log(y) against log(x): 2 for a cost that grows like x^2.

    Raises:
        ValueError: fewer than two points, or a value that is not positive.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"need two or more (x, y) points of equal count, got {x.size} and {y.size}.")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("x and y must be positive to take logarithms.")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _find(
    results: dict[str, Any],
    impl: str,
    T: int,
    causal: bool = False,
    dtype: str = "float32",
    key: str = "median_s",
) -> float | None:
    return dict(reference_series(results, impl, key, dtype, causal, extrapolated=True)).get(T)


#: (name, numerator, denominator, comparison, target, what) for :func:`target_ratios`.
TARGETS = [
    ("numpy_over_sdpa", ("numpy", False), ("sdpa", False), "<=", 2.5, "NumPy time / torch SDPA time, T=2048"),
    (
        "course_torch_over_sdpa",
        ("course_torch", False),
        ("sdpa", False),
        "<=",
        2.5,
        "course PyTorch time / torch SDPA time, T=2048",
    ),
    ("tiled_over_sdpa", ("tiled", False), ("sdpa", False), "<=", 1.5, "tiled time / torch SDPA time, T=2048"),
    (
        "tiled_noncausal_over_causal",
        ("tiled", False),
        ("tiled", True),
        ">=",
        1.5,
        "non-causal tiled time / causal tiled time, T=2048",
    ),
]


def target_ratios(
    results: dict[str, Any], T: int = 2048, memory_T: int = 8192, dtype: str = "float32"
) -> list[dict[str, Any]]:
    """The course's targets, measured in ``results``: each with value, target, met (or None)."""
    out = []
    for name, (ni, nc), (di, dc), op, target, what in TARGETS:
        num = _find(results, ni, T, nc, dtype)
        den = _find(results, di, T, dc, dtype)
        value = num / den if num and den else None
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        out.append(
            {
                "name": name,
                "what": what,
                "value": value,
                "op": op,
                "target": target,
                "met": met,
                "numerator_s": num,
                "denominator_s": den,
            }
        )
    mem = _find(results, "tiled", memory_T, False, dtype, key="peak_extra_bytes")
    out.append(
        {
            "name": "tiled_peak_extra_mib",
            "what": f"tiled extra peak memory, T={memory_T} (MiB)",
            "value": None if mem is None else mem / MiB,
            "op": "<=",
            "target": 64.0,
            "met": None if mem is None else mem / MiB <= 64.0,
        }
    )
    return out


def _table_T(results: dict[str, Any]) -> int:
    """T=2048 where the results have it, else their largest T."""
    return 2048 if any(c["T"] == 2048 for c in results["cases"]) else max(c["T"] for c in results["cases"])


# ------------------------------------------------------------------------------------------------
# The plots of a suite run
# ------------------------------------------------------------------------------------------------
def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_time(results: dict[str, Any], dtype: str, impls: list[str], path: Path) -> Path:
    """Time against T, log-log, with an O(T^2) guide line; extrapolated loops dotted."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    ys = []
    for impl in impls:
        color, marker = STYLE[impl]
        for causal, ls in ((False, "-"), (True, "--")):
            meas = reference_series(results, impl, "median_s", dtype, causal)
            extra = sorted(set(reference_series(results, impl, "median_s", dtype, causal, True)) - set(meas))
            name = f"{impl}{' causal' if causal else ''}"
            if meas:
                ax.plot(*zip(*meas), ls, color=color, marker=marker, ms=4, label=name)
                ys += [y for _, y in meas]
            if extra:
                xs = ([meas[-1][0]] if meas else []) + [t for t, _ in extra]
                yy = ([meas[-1][1]] if meas else []) + [y for _, y in extra]
                ax.plot(xs, yy, ":", color=color, alpha=0.6, label=f"{name} (extrapolated)")
                ys += yy
    Ts = sorted({c["T"] for c in results["cases"] if c["median_s"] and c["dtype"] == dtype})
    if Ts and ys:
        ref = reference_series(results, "sdpa", "median_s", dtype, extrapolated=True)
        t0, y0 = ref[-1] if ref else (Ts[-1], min(ys))
        ax.plot(
            Ts,
            [y0 * 0.5 * (t / t0) ** 2 for t in Ts],
            color="black",
            lw=1,
            alpha=0.5,
            label=r"$\propto T^2$ guide",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T (B=1, H=8, d_head=64)")
    ax.set_ylabel("median time per call (s)")
    ax.set_title(
        f"Attention time against T, {dtype}, {results['context']['device']}\n"
        "(dashed: causal; dotted: extrapolated)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _plot_memory(results: dict[str, Any], dtype: str, impls: list[str], path: Path) -> Path:
    """Extra peak memory against T (non-causal), with one score matrix and the tiled target."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    any_mem = False
    for impl in impls:
        color, marker = STYLE[impl]
        pts = [
            (t, y / MiB)
            for t, y in reference_series(results, impl, "peak_extra_bytes", dtype, extrapolated=True)
            if y > 0
        ]
        if pts:
            any_mem = True
            ax.plot(*zip(*pts), "-", color=color, marker=marker, ms=4, label=impl)
    if any_mem:
        Ts = sorted({c["T"] for c in results["cases"] if c["dtype"] == dtype})
        cfg = results["config"]
        ax.plot(
            Ts,
            [4 * cfg["B"] * cfg["H"] * t * t / MiB for t in Ts],
            color="black",
            lw=1,
            alpha=0.5,
            label="one B·H·T·T float32 score matrix",
        )
        ax.axhline(64, color="gray", ls=":", lw=1, label="64 MiB (tiled target at T=8192)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax.set_xlabel("sequence length T (non-causal)")
    ax.set_ylabel("measured extra peak memory (MiB)")
    ax.set_title(
        f"Extra peak memory against T, {dtype}, {results['context']['device']}\n"
        f"{results['context']['memory_method']}",
        fontsize=8,
    )
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def _plot_gflops(
    results: dict[str, Any], dtypes: list[str], impls: list[str], T_bar: int, out_dir: Path
) -> Path:
    """GFLOP/s at ``T_bar`` as bars, non-causal and causal, with each dtype's ceiling dashed."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(7.5, 1.2 * len(impls) * len(dtypes)), 5))
    labels, vals_nc, vals_c = [], [], []
    for dtype in dtypes:
        for impl in impls:
            nc = _find(results, impl, T_bar, False, dtype, "gflops")
            cc = _find(results, impl, T_bar, True, dtype, "gflops")
            if nc is None and cc is None:
                continue
            extrap = any(
                c["extrapolated"]
                for c in results["cases"]
                if c["impl"] == impl and c["T"] == T_bar and c["dtype"] == dtype
            )
            labels.append(f"{impl}{'*' if extrap else ''}" + (f"\n{dtype}" if len(dtypes) > 1 else ""))
            vals_nc.append(nc or 0.0)
            vals_c.append(cc or 0.0)
    x = np.arange(len(labels))
    ax.bar(x - 0.2, vals_nc, 0.4, label="non-causal")
    ax.bar(x + 0.2, vals_c, 0.4, label="causal (useful FLOPs)")
    for dtype in dtypes:
        ceil = (results["ceilings"].get(dtype) or {}).get("gflops")
        if ceil:
            ax.axhline(ceil, ls="--", lw=1, color="black", alpha=0.6)
            ax.text(
                len(labels) - 0.5,
                ceil,
                f"matmul ceiling {dtype} {ceil:.0f}",
                ha="right",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("GFLOP/s (4·B·H·T²·d, half when causal)")
    ax.set_title(f"Throughput at T={T_bar}, {results['context']['device']} (* = extrapolated)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    return _save(fig, out_dir / f"gflops_T{T_bar}.png")


def plot_results(results: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the plots (PNG) into ``out_dir``; returns their paths. Needs matplotlib.

    Per dtype: ``time_vs_T_<dtype>.png`` (log-log, with an O(T^2) guide line; extrapolated loops
    dotted), ``memory_vs_T_<dtype>.png``; and ``gflops_T2048.png`` (bars, ceiling dashed).
    """
    import matplotlib

    matplotlib.use("Agg")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dtypes = list(results["config"]["dtypes"])
    impls = [i for i in IMPLEMENTATIONS if any(c["impl"] == i for c in results["cases"])]
    written = []
    for dtype in dtypes:
        written.append(_plot_time(results, dtype, impls, out_dir / f"time_vs_T_{dtype}.png"))
        written.append(_plot_memory(results, dtype, impls, out_dir / f"memory_vs_T_{dtype}.png"))
    T_bar = (
        2048
        if any(c["T"] == 2048 for c in results["cases"])
        else max((c["T"] for c in results["cases"] if c["gflops"]), default=None)
    )
    if T_bar is not None:
        written.append(_plot_gflops(results, dtypes, impls, T_bar, out_dir))
    return written


# ------------------------------------------------------------------------------------------------
# The summary of a suite run
# ------------------------------------------------------------------------------------------------
#: Why each target can be missed, as measured: shown in the summary beside a missed target.
_WHY = {
    "numpy_over_sdpa": "NumPy builds the whole (B·H·T·T) score matrix and makes several passes over it "
    "(max, subtract, exp, sum, divide); SDPA's fused CPU flash kernel keeps tiles in cache.",
    "course_torch_over_sdpa": "the course version returns the T×T weights, so every call allocates a "
    "fresh B·H·T·S array (128 MiB at T=2048, whose first touch costs about 40 ms of page faults on a "
    "2-core VM) and its two matrix products write and read it through main memory; where torch's CPU "
    "matmul reaches less of the machine than NumPy's BLAS (compare the two matmul ceilings above) the "
    "products alone approach the whole SDPA call.",
    "tiled_over_sdpa": "the tiled version issues ~10 separate torch ops per key block from Python, each "
    "streaming the (T × block) tile through memory; SDPA fuses them in one C++ kernel.",
    "tiled_noncausal_over_causal": "causal skips only the upper-triangle blocks; per-block overheads "
    "(rescaling acc, masks on diagonal blocks) do not halve.",
    "tiled_peak_extra_mib": "tiled_attention holds the output accumulator acc (B·H·T·d) and one "
    "(B·H·T·block) score tile at a time, plus the running m and l (B·H·T each): 16 + 32 MiB at "
    "T=8192 with block 128 (q is read through a view and the scale is folded into each key block, "
    "so neither is copied); a smaller block_size shrinks the tile.",
}


def _context_lines(results: dict[str, Any]) -> tuple[list[str], bool]:
    """The header of the summary, and whether the CPU was busy with other work during the run."""
    ctx = results["context"]
    lines = [
        f"# Attention benchmark: {ctx['device']}",
        "",
        f"- Date: {ctx['date']}; wall time of the suite: {results['wall_s']:.0f} s"
        + (" (quick mode: tiny sizes, not for comparison)" if results["config"].get("quick") else ""),
        f"- CPU: {ctx['cpu_model']}, {ctx['cpu_count']} logical CPUs, torch threads {ctx['torch_threads']}",
        f"- torch {ctx['torch']}, NumPy {ctx['numpy']}, Python {ctx['python']}",
        "- BLAS: "
        + "; ".join(
            f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
            f"{b.get('num_threads')} threads)"
            for b in ctx["blas"]
            if "internal_api" in b
        ),
    ]
    if ctx.get("gpu"):
        g = ctx["gpu"]
        if "memory_bytes" in g:
            lines.append(
                f"- GPU: {g['name']}, {g['memory_bytes'] / 2**30:.0f} GiB, CUDA {g['cuda']}, "
                f"cuDNN {g['cudnn']}, TF32 matmul {g['tf32_matmul']}"
            )
        else:
            lines.append(f"- GPU: {g}")
    if ctx.get("env"):
        lines.append("- Environment: " + ", ".join(f"{k}={v}" for k, v in ctx["env"].items()))
    lines.append(f"- Extra peak memory: {ctx['memory_method']}")
    la, la_end = ctx.get("load_average"), ctx.get("load_average_end")
    busy = False
    if la:
        busy = max(la[0], (la_end or [0])[0]) > (ctx.get("cpu_count") or 1) and ctx["device_type"] == "cpu"
        lines.append(
            f"- Load average (1, 5, 15 min) at the start {la}, at the end {la_end}"
            + (
                ": **the machine was busy with other work (load above its CPU count); "
                "CPU timings are disturbed, re-run on a quiet machine before comparing**"
                if busy
                else ""
            )
        )
    for name, c in results["ceilings"].items():
        if c.get("gflops"):
            lines.append(
                f"- Measured matmul ceiling, {name}: {c['gflops']:.1f} GFLOP/s (n={c['n']}"
                + (
                    f"; torch {c['torch_gflops']:.1f}, NumPy {c['numpy_gflops']:.1f}"
                    if c.get("numpy_gflops")
                    else ""
                )
                + ")"
            )
    return lines, busy


def _target_lines(results: dict[str, Any], busy: bool) -> list[str]:
    """The targets table, and why each missed target missed."""
    ctx = results["context"]
    lines = ["", "## Targets (float32, causal off unless said, measured in this run)", ""]
    if ctx["device_type"] != "cpu":
        lines += ["The targets are set for a 2-core CPU; on this device they are for information.", ""]
    lines += ["| ratio | measured | target | result |", "| --- | --- | --- | --- |"]
    misses = []
    for t in target_ratios(results):
        if t["value"] is None:
            val, res = "not measured", "n/a"
        else:
            val = f"{t['value']:.2f}" + (" MiB" if t["name"].endswith("mib") else "x")
            if t["met"]:
                res = "met"
            else:
                by = t["value"] / t["target"] if t["op"] == "<=" else t["target"] / t["value"]
                res = f"**missed** by {by:.2f}x"
                why = _WHY[t["name"]]
                if busy and not t["name"].endswith("mib"):
                    why = (
                        f"measured on a busy machine (load {ctx['load_average'][0]} on "
                        f"{ctx.get('cpu_count')} CPUs), so the timing ratio is not trustworthy; on a "
                        f"quiet machine the usual cause: {why}"
                    )
                misses.append(f"- {t['what']}: {val} against {t['op']} {t['target']:g}; {why}")
        lines.append(f"| {t['what']} | {val} | {t['op']} {t['target']:g} | {res} |")
    if misses:
        lines += ["", "Missed targets, and why:", *misses]
    return lines


def _case_lines(results: dict[str, Any]) -> list[str]:
    """Every implementation at T=2048 (or the largest timed T), the memory at the largest T, and
    what was skipped."""
    lines: list[str] = []
    Ts = sorted({c["T"] for c in results["cases"] if c["median_s"] and not c["extrapolated"]})
    T_tab = 2048 if 2048 in Ts else (Ts[-1] if Ts else None)
    if T_tab is not None:
        lines += [
            "",
            f"## All implementations at T={T_tab} (B=1, H=8, d_head=64)",
            "",
            "| dtype | implementation | causal | median ms | GFLOP/s | of ceiling | extra peak MiB |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for c in results["cases"]:
            if c["T"] != T_tab or c["median_s"] is None:
                continue
            mem = "-" if c["peak_extra_bytes"] is None else f"{c['peak_extra_bytes'] / MiB:.1f}"
            name = c["impl"] + (" (extrapolated)" if c["extrapolated"] else "")
            lines.append(
                f"| {c['dtype']} | {name} | {'yes' if c['causal'] else 'no'} | "
                f"{c['median_s'] * 1e3:.2f} | {c['gflops']:.1f} | "
                f"{(c['fraction_of_ceiling'] or 0):.3f} | {mem} |"
            )
    mem_rows = [c for c in results["cases"] if c["peak_extra_bytes"] is not None and not c["causal"]]
    if mem_rows:
        T_mem = max(c["T"] for c in mem_rows)
        lines += ["", f"## Extra peak memory at the largest T ({T_mem}, non-causal)", ""]
        lines += [
            f"- {c['dtype']} {c['impl']}: {c['peak_extra_bytes'] / MiB:.1f} MiB"
            for c in mem_rows
            if c["T"] == T_mem
        ]
    if results["skipped"]:
        lines += ["", "## Skipped", ""]
        for s in results["skipped"]:
            where = f" {s.get('dtype', '')} T={s['T']} causal={s.get('causal')}" if "T" in s else ""
            lines.append(f"- {s['impl']}{where} ({s.get('what', 'all')}): {s['reason']}")
    return lines


def write_summary(results: dict[str, Any], path: str | Path) -> Path:
    """Write ``summary.md``: context, target ratios (met or missed, by how much), a T=2048 table."""
    lines, busy = _context_lines(results)
    lines += _target_lines(results, busy) + _case_lines(results)
    loops_T = results["config"]["loops_T"]
    lines += [
        "",
        "Loops beyond T="
        + str(max(loops_T or [0]))
        + " are extrapolated by the T² law from the largest measured T (`extrapolated: true`)."
        if loops_T
        else "",
        "",
    ]
    path = Path(path)
    path.write_text("\n".join(lines))
    return path


def write_report(results: dict[str, Any], out_dir: str | Path, plots: bool = True) -> dict[str, Any]:
    """Write ``results.json``, ``summary.md`` and (if matplotlib imports) the plots into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    written = {
        "json": out_dir / "results.json",
        "summary": write_summary(results, out_dir / "summary.md"),
        "plots": [],
    }
    if plots:
        try:
            written["plots"] = plot_results(results, out_dir)
        except Exception as exc:  # results.json and summary.md are already written
            print(f"bench: plots skipped ({type(exc).__name__}: {exc})", flush=True)
    return written


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` written by :func:`write_report`."""
    return json.loads(Path(path).read_text())
