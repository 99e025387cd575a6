"""The pure parts of the FlashAttention GPU benchmark, on synthetic numbers (no GPU needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from selfattention import flash_bench as fb

ROOT = Path(__file__).resolve().parents[1]


def _row(impl, mode, T, causal, ms, dtype="float16", d=64):
    return {"impl": impl, "mode": mode, "dtype": dtype, "d": d, "T": T, "causal": causal, "median_ms": ms}


def _rows(flash_fwd=1.2, flash_fwd_bwd=3.0, causal_fwd=0.5):
    rows = []
    for T in (1024, 8192):
        for causal in (False, True):
            sdpa_f, sdpa_fb = 1.0, 2.5
            rows += [_row("sdpa_flash", "fwd", T, causal, sdpa_f)]
            rows += [_row("sdpa_flash", "fwd_bwd", T, causal, sdpa_fb)]
            rows += [
                _row("flash", "fwd", T, causal, causal_fwd if causal else flash_fwd),
                _row("flash", "fwd_bwd", T, causal, flash_fwd_bwd),
            ]
    return rows


def test_flops():
    assert fb.flash_flops(4, 16, 1024, 1024, 64, False) == 4 * 4 * 16 * 1024 * 1024 * 64
    assert fb.flash_flops(1, 1, 8, 8, 16, True) == 4 * 8 * 8 * 16 / 2
    assert fb.flash_flops(1, 1, 8, 8, 16, False, "fwd_bwd") == 3.5 * 4 * 8 * 8 * 16
    with pytest.raises(ValueError, match=r"mode must be 'fwd' or 'fwd_bwd', got 'bwd'"):
        fb.flash_flops(1, 1, 8, 8, 16, False, "bwd")


def test_ratio_table_pairs_flash_with_sdpa():
    table = fb.ratio_table(_rows() + [_row("flash", "fwd", 2048, False, 9.0)])  # no SDPA partner: left out
    assert len(table) == 8 and all(t["T"] in (1024, 8192) for t in table)
    fwd = next(t for t in table if t["mode"] == "fwd" and not t["causal"] and t["T"] == 1024)
    assert fwd["ratio"] == pytest.approx(1.2)


def test_verdicts_met():
    v = {x["target"].split(" ")[0]: x for x in fb.verdicts(_rows())}
    assert v["forward"]["met"] and v["forward"]["worst"] == pytest.approx(1.2)
    assert v["forward+backward"]["met"] and v["forward+backward"]["worst"] == pytest.approx(1.2)
    assert v["causal"]["met"] and v["causal"]["worst"] == pytest.approx(2.4)


def test_verdicts_missed_name_the_worst_case():
    rows = _rows(flash_fwd=1.3, flash_fwd_bwd=4.5, causal_fwd=0.8)
    rows[-1]["median_ms"] = 5.0  # one slower case: the verdict must name it
    v = {x["target"].split(" ")[0]: x for x in fb.verdicts(rows)}
    assert v["forward"]["met"] is False and v["forward"]["worst"] == pytest.approx(1.3)
    assert v["forward+backward"]["met"] is False and v["forward+backward"]["worst"] == pytest.approx(2.0)
    assert v["forward+backward"]["where"] == "float16, d=64, T=8192, causal"
    assert v["causal"]["met"] is False and v["causal"]["worst"] == pytest.approx(1.3 / 0.8)


def test_verdicts_without_measurements():
    assert [v["met"] for v in fb.verdicts([])] == [None, None, None]


def test_summary_markdown():
    rows = [dict(r, tflops=100.0) for r in _rows()]
    md = fb.summary_markdown(
        {
            "context": {"device": "NVIDIA H100", "torch": "2.x", "triton": "3.x", "date": "today"},
            "B": 4,
            "H": 16,
            "matmul_ceiling_tflops": {"float16": 400.0},
            "rows": rows,
            "correctness": [
                {
                    "dtype": "float16",
                    "shape": "B=1",
                    "causal": True,
                    "what": "out",
                    "error": 1e-3,
                    "sdpa_error": 9e-4,
                    "tol": 4e-3,
                    "passed": True,
                }
            ],
        }
    )
    assert md.startswith("# FlashAttention-2 in Triton vs SDPA (flash backend): NVIDIA H100")
    assert "| forward time / SDPA-flash | <= 1.25 | 1.20 | float16, d=64, T=1024 | met |" in md
    assert "| 100 | 25% |" in md and "1 of 1 comparisons passed" in md


def test_summary_of_a_run_cut_short_names_what_was_not_measured():
    # flash_gpu.py writes the summary after each phase; the first write has no timings yet.
    md = fb.summary_markdown({"B": 4, "H": 16, "rows": [], "correctness": []})
    assert "| forward time / SDPA-flash | <= 1.25 | - | not measured |" in md
    md = fb.summary_markdown(
        {"rows": _rows(), "not_measured": [{"impl": "skipped", "dtype": "bfloat16", "d": 64, "T": 4096}]}
    )
    assert "Not measured (the run's time budget was spent first): bfloat16 d=64 T=4096." in md
    fast = [dict(r, median_ms=0.05) for r in _rows()]
    md = fb.summary_markdown({"rows": fast})
    assert "Rows where flash takes under 0.1 ms may time the host's per-call Python work" in md


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_the_gpu_script_refuses_on_a_cpu():
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "flash_gpu.py")], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and "no CUDA GPU here" in r.stderr and "not speeds" in r.stderr


# ---------------------------------------------------------------------------------------------
# The forward's tile schedule (selfattention.flash_tiles), against the visibility rule
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "T, S, bm, bn", [(100, 77, 32, 16), (64, 64, 16, 16), (5, 100, 64, 16), (130, 50, 64, 32)]
)
@pytest.mark.parametrize("is_causal", [False, True])
def test_tile_schedule_skips_only_invisible_tiles(T, S, bm, bn, is_causal):
    from selfattention.flash_tiles import FULL, SKIPPED, tile_schedule

    sched = tile_schedule(T, S, bm, bn, is_causal)
    assert sched.shape == (-(-T // bm), -(-S // bn))
    for a in range(sched.shape[0]):
        for b in range(sched.shape[1]):
            i = np.arange(a * bm, (a + 1) * bm)[:, None]  # the block's query indices (padding included)
            j = np.arange(b * bn, (b + 1) * bn)[None, :]
            visible = (j < S) & ((j <= i) if is_causal else True)
            if sched[a, b] == SKIPPED:
                assert not visible[: max(0, T - a * bm)].any(), (a, b)
            if sched[a, b] == FULL:
                assert visible.all(), (a, b)


def test_causal_skipping_counts():
    from selfattention.flash_tiles import FULL, MASKED, SKIPPED, tile_schedule

    sched = tile_schedule(1024, 1024, 64, 64, True)
    assert (sched == FULL).sum() == 120 and (sched == MASKED).sum() == 16 and (sched == SKIPPED).sum() == 120
    assert (tile_schedule(1024, 1024, 64, 64, False) == FULL).all()
    with pytest.raises(ValueError, match=r"block_n must be >= 1, got 0"):
        tile_schedule(8, 8, 4, 0, False)
