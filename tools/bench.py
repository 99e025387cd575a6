#!/usr/bin/env python
"""Time every attention implementation of the course on this machine: ``make bench``.

Usage:
    python tools/bench.py                       # auto device, results/<machine-tag>/
    python tools/bench.py --device cpu --out results/cpu-2core
    python tools/bench.py --quick --out /tmp/b  # tiny sizes, a few seconds (for tests)

Writes ``results.json``, ``summary.md`` (the course's target ratios, met or missed) and the plots
(time and memory against T, GFLOP/s at T=2048) into the output folder. One line per case is
printed while it runs. See ``selfattention.bench`` for how each number is measured.

Like every tool here it imports the installed library (``make venv`` installs it with
``pip install -e .``); from a bare checkout, run it with ``PYTHONPATH=src``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from selfattention import bench
from selfattention.devices import pick_device

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")  # plots are files; no window opens
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the plumbing in seconds")
    ap.add_argument("--out", default=None, help="output folder (default results/<machine-tag>)")
    ap.add_argument("--dtypes", default=None, help="comma-separated, e.g. float32,bfloat16 (default: "
                    "float32 on a CPU; float32,float16,bfloat16 on CUDA)")
    ap.add_argument("--budget", type=float, default=None, help="suite time budget in seconds")
    ap.add_argument("--no-plots", action="store_true", help="write JSON and summary only")
    args = ap.parse_args(argv)

    device = pick_device(None if args.device == "auto" else args.device)
    if device.type == "mps":
        print("bench: MPS has no peak-memory counter and is not a reference device; running on cpu")
        device = pick_device("cpu")
    cfg = bench.SuiteConfig.for_device(str(device), quick=args.quick)
    if args.dtypes:
        cfg.dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip())
    if args.budget is not None:
        cfg.budget_s = args.budget
    out = Path(args.out) if args.out else ROOT / "results" / bench.machine_tag(device)
    t0 = time.perf_counter()
    partial = out / "cases.partial.jsonl"
    results = bench.run_suite(cfg, checkpoint=partial)
    written = bench.write_report(results, out, plots=not args.no_plots)
    partial.unlink(missing_ok=True)  # the complete results are in results.json
    print(f"bench: wrote {written['json']}, {written['summary']} and {len(written['plots'])} plots")
    for t in bench.target_ratios(results):
        if t["value"] is None:
            state = "not measured"
        else:
            state = f"{t['value']:.2f} ({'met' if t['met'] else 'MISSED'}: target {t['op']} {t['target']:g})"
        print(f"bench: {t['what']}: {state}")
    print(f"bench: done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
