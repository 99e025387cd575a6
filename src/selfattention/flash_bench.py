"""Reading a FlashAttention benchmark: ratios to SDPA's flash backend and the issue's targets.

``tools/flash_gpu.py`` measures on a CUDA GPU and writes a list of rows, one per timing::

    {"impl": "flash" | "sdpa_flash", "mode": "fwd" | "fwd_bwd", "dtype": "float16", "d": 64,
     "T": 4096, "causal": False, "median_ms": 1.23, "tflops": 301.0}

This module turns those rows into the ratio table and the target verdicts; it needs no GPU, so
its tests run on synthetic numbers, and chapter 9 uses it to show committed results.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .bench.probes import attention_flops

# The targets of issue 13, all measured in one run on an H100 or H200.
FWD_RATIO_MAX = 1.25  # flash forward time / SDPA-flash forward time
FWD_BWD_RATIO_MAX = 1.6  # the same for forward + backward
CAUSAL_SPEEDUP_MIN = 1.8  # flash forward non-causal time / causal time, at T = CAUSAL_T
CAUSAL_T = 8192
# Below this a call's GPU work may be shorter than the Python work that launches it.
HOST_BOUND_MS = 0.1


def flash_flops(B: int, H: int, T: int, S: int, d: int, is_causal: bool, mode: str = "fwd") -> float:
    """FLOPs of attention: the forward's (:func:`~selfattention.bench.probes.attention_flops`,
    4 B H T S d, half when causal: the benchmark's T = S, where top-left causal visits
    T (T + 1) / 2 pairs, about half; for T != S the visited fraction differs), times 3.5 for
    ``mode="fwd_bwd"``.

    The backward has five matmuls of the same size to the forward's two, so forward + backward
    counts 3.5 times the forward (the convention of the FlashAttention papers).
    """
    if mode not in ("fwd", "fwd_bwd"):
        raise ValueError(f"mode must be 'fwd' or 'fwd_bwd', got {mode!r}.")
    f = float(attention_flops(B, H, T, S, d, is_causal=is_causal))
    return f * (3.5 if mode == "fwd_bwd" else 1.0)


def _key(row: dict[str, Any]) -> tuple:
    return (row["dtype"], row["d"], row["T"], row["mode"], bool(row["causal"]))


def ratio_table(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (dtype, d, T, mode, causal) timed by both: flash time / SDPA-flash time."""
    by_impl: dict[str, dict[tuple, dict[str, Any]]] = {"flash": {}, "sdpa_flash": {}}
    for row in rows:
        if row["impl"] in by_impl:
            by_impl[row["impl"]][_key(row)] = row
    table = []
    for key in sorted(set(by_impl["flash"]) & set(by_impl["sdpa_flash"])):
        f, s = by_impl["flash"][key], by_impl["sdpa_flash"][key]
        dtype, d, T, mode, causal = key
        table.append(
            {
                "dtype": dtype,
                "d": d,
                "T": T,
                "mode": mode,
                "causal": causal,
                "flash_ms": f["median_ms"],
                "sdpa_ms": s["median_ms"],
                "ratio": f["median_ms"] / s["median_ms"],
                "flash_tflops": f.get("tflops"),
                "sdpa_tflops": s.get("tflops"),
            }
        )
    return table


def causal_speedups(rows: Iterable[dict[str, Any]], T: int = CAUSAL_T) -> list[dict[str, Any]]:
    """Flash forward at ``T``: non-causal time / causal time, per (dtype, d)."""
    fwd = {
        (r["dtype"], r["d"], bool(r["causal"])): r["median_ms"]
        for r in rows
        if r["impl"] == "flash" and r["mode"] == "fwd" and r["T"] == T
    }
    return [
        {"dtype": dt, "d": d, "T": T, "speedup": fwd[(dt, d, False)] / fwd[(dt, d, True)]}
        for dt, d, c in sorted(fwd)
        if not c and (dt, d, True) in fwd
    ]


def verdicts(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The three targets, each judged on its worst case: target, limit, worst, where, met."""
    table = ratio_table(rows)
    out = []
    for mode, limit, name in (
        ("fwd", FWD_RATIO_MAX, "forward time / SDPA-flash"),
        ("fwd_bwd", FWD_BWD_RATIO_MAX, "forward+backward time / SDPA-flash"),
    ):
        entries = [t for t in table if t["mode"] == mode]
        if not entries:
            out.append(
                {"target": name, "limit": f"<= {limit}", "worst": None, "where": "not measured", "met": None}
            )
            continue
        worst = max(entries, key=lambda t: t["ratio"])
        out.append(
            {
                "target": name,
                "limit": f"<= {limit}",
                "worst": worst["ratio"],
                "where": _where(worst),
                "met": worst["ratio"] <= limit,
            }
        )
    speed = causal_speedups(rows)
    name = f"causal forward speed-up at T={CAUSAL_T}"
    if speed:
        worst = min(speed, key=lambda s: s["speedup"])
        met = worst["speedup"] >= CAUSAL_SPEEDUP_MIN
        out.append(
            {
                "target": name,
                "limit": f">= {CAUSAL_SPEEDUP_MIN}",
                "worst": worst["speedup"],
                "where": f"{worst['dtype']}, d={worst['d']}",
                "met": met,
            }
        )
    else:
        out.append(
            {
                "target": name,
                "limit": f">= {CAUSAL_SPEEDUP_MIN}",
                "worst": None,
                "where": "not measured",
                "met": None,
            }
        )
    return out


def _where(t: dict[str, Any]) -> str:
    return f"{t['dtype']}, d={t['d']}, T={t['T']}{', causal' if t['causal'] else ''}"


def _verdict_word(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "not measured"}[met]


def summary_markdown(results: dict[str, Any]) -> str:
    """summary.md of a run: context, verdicts, the ratio table with TFLOP/s, correctness."""
    ctx = results.get("context", {})
    ceiling = results.get("matmul_ceiling_tflops", {})
    lines = [
        f"# FlashAttention-2 in Triton vs SDPA (flash backend): {ctx.get('device', '?')}",
        "",
        f"torch {ctx.get('torch', '?')}, triton {ctx.get('triton', '?')}, {ctx.get('date', '?')}. "
        f"B={results.get('B')}, H={results.get('H')}; medians of CUDA-event timings.",
        "",
        "Matmul ceiling (torch.mm, measured): "
        + ", ".join(f"{k} {v:.0f} TFLOP/s" for k, v in ceiling.items()),
        "",
        "## Targets",
        "",
        "| target | limit | worst measured | where | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for v in verdicts(results["rows"]):
        worst = "-" if v["worst"] is None else f"{v['worst']:.2f}"
        lines.append(f"| {v['target']} | {v['limit']} | {worst} | {v['where']} | {_verdict_word(v['met'])} |")
    lines += [
        "",
        "## Ratios (flash / SDPA-flash time; TFLOP/s and % of the matmul ceiling)",
        "",
        "| dtype | d | T | mode | causal | flash ms | SDPA ms | ratio | flash TFLOP/s | % ceiling |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    table = ratio_table(results["rows"])
    for t in table:
        peak, tf = ceiling.get(t["dtype"]), t["flash_tflops"]
        tf_text = f"{tf:.0f}" if tf else "-"
        pct = f"{100 * tf / peak:.0f}%" if tf and peak else "-"
        lines.append(
            f"| {t['dtype']} | {t['d']} | {t['T']} | {t['mode']} | {t['causal']} | "
            f"{t['flash_ms']:.3f} | {t['sdpa_ms']:.3f} | {t['ratio']:.2f} | {tf_text} | {pct} |"
        )
    quick = sorted({(t["dtype"], t["d"], t["T"]) for t in table if t["flash_ms"] < HOST_BOUND_MS})
    if quick:
        lines += [
            "",
            f"Rows where flash takes under {HOST_BOUND_MS} ms may time the host's per-call Python work "
            "(input checks, the autotuner's dispatch, the launch) rather than the kernel: "
            + ", ".join(f"{dt} d={d} T={T}" for dt, d, T in quick)
            + ".",
        ]
    missing = results.get("not_measured", [])
    if missing:
        groups = ", ".join(f"{m['dtype']} d={m['d']} T={m['T']}" for m in missing)
        lines += ["", f"Not measured (the run's time budget was spent first): {groups}."]
    corr = results.get("correctness", [])
    if corr:
        ok = sum(c["passed"] for c in corr)
        lines += [
            "",
            f"## Correctness on the GPU: {ok} of {len(corr)} comparisons passed",
            "",
            "| dtype | shape | causal | what | max abs error | SDPA's own error | tolerance | passed |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for c in corr:
            lines.append(
                f"| {c['dtype']} | {c['shape']} | {c['causal']} | {c['what']} | {c['error']:.2e} | "
                f"{c['sdpa_error']:.2e} | {c['tol']:.1e} | {c['passed']} |"
            )
    return "\n".join(lines) + "\n"
