"""The benchmark suite's plumbing on tiny sizes: FLOP counts, timer, memory probe, schema, CLI.

These tests check that the numbers are *measured correctly*, never how fast anything is.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from selfattention import bench

ROOT = Path(__file__).resolve().parents[1]
MiB = 2**20

CASE_KEYS = {
    "impl",
    "label",
    "device",
    "dtype",
    "B",
    "H",
    "T",
    "S",
    "d",
    "causal",
    "flops",
    "median_s",
    "min_s",
    "times_s",
    "repeats",
    "gflops",
    "fraction_of_ceiling",
    "peak_extra_bytes",
    "extrapolated",
    "memory_only",
}


# ---- FLOPs ---------------------------------------------------------------------------------------
def test_attention_flops_counts_two_matmuls():
    # QK^T: T*S*d multiply-adds, AV: T*S*d multiply-adds, 2 FLOPs each, per batch and head.
    assert bench.attention_flops(1, 1, 1, 1, 1) == 4
    assert bench.attention_flops(2, 3, 5, 7, 11) == 4 * 2 * 3 * 5 * 7 * 11
    assert bench.attention_flops(1, 8, 2048, 2048, 64) == 4 * 8 * 2048**2 * 64


def test_attention_flops_causal_is_half():
    full = bench.attention_flops(1, 8, 1024, 1024, 64)
    assert bench.attention_flops(1, 8, 1024, 1024, 64, is_causal=True) * 2 == full


def test_attention_flops_matches_loops_count():
    from selfattention import loops

    # loops.count_multiply_adds counts multiply-adds for one head; 2 FLOPs each.
    assert bench.attention_flops(1, 1, 6, 6, 8) == 2 * loops.count_multiply_adds(6, 6, 8, 8)


@pytest.mark.parametrize(
    "bad, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("8", TypeError)]
)
def test_attention_flops_rejects_bad_sizes(bad, error):
    with pytest.raises(error, match="T must be an int"):
        bench.attention_flops(1, 1, bad, 4, 4)


def test_attention_flops_accepts_numpy_ints():
    assert bench.attention_flops(1, 1, np.int64(6), 6, 8) == bench.attention_flops(1, 1, 6, 6, 8)


# ---- timer ---------------------------------------------------------------------------------------
def test_time_fn_counts_calls_and_reports_median():
    calls = []
    out = bench.time_fn(lambda: calls.append(1), "cpu", warmup=2, repeats=5)
    assert len(calls) == 7
    assert out["repeats"] == 5 and len(out["times_s"]) == 5
    assert out["min_s"] <= out["median_s"] <= out["max_s"]
    assert out["median_s"] == sorted(out["times_s"])[2]


def test_time_fn_measures_a_known_sleep():
    import time

    out = bench.time_fn(lambda: time.sleep(0.02), "cpu", warmup=0, repeats=3)
    assert 0.019 <= out["median_s"] < 0.2


def test_time_fn_target_raises_repeats_within_bounds():
    out = bench.time_fn(lambda: None, "cpu", warmup=1, repeats=3, target_s=1.0, max_repeats=10)
    assert out["repeats"] == 10


def test_time_fn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="repeats"):
        bench.time_fn(lambda: None, "cpu", repeats=0)


# ---- memory probe --------------------------------------------------------------------------------
needs_probe = pytest.mark.skipif(
    bench.memory_method("cpu").startswith("none"), reason=bench.memory_method("cpu")
)


@needs_probe
@pytest.mark.parametrize("maker", ["numpy", "torch"])
def test_peak_extra_bytes_sees_a_known_64_mib_allocation(maker):
    n = 64 * MiB // 4

    def alloc():
        if maker == "numpy":
            return np.ones(n, dtype=np.float32)  # touched: every page is written
        return torch.ones(n, dtype=torch.float32)

    alloc()  # a first call may start a thread pool (8 MiB stacks): the suite probes after warm-up too
    measured = bench.peak_extra_bytes(alloc, "cpu")
    assert measured == pytest.approx(64 * MiB, abs=4 * MiB)


@needs_probe
def test_peak_extra_bytes_sees_a_freed_temporary():
    # The peak counts memory that was freed before the call returned, which RSS after the call misses.
    def temp():
        a = np.ones(32 * MiB // 8)
        return float(a.sum())

    assert bench.peak_extra_bytes(temp, "cpu") == pytest.approx(32 * MiB, abs=5 * MiB)


@needs_probe
def test_peak_extra_bytes_of_nothing_is_small():
    assert bench.peak_extra_bytes(lambda: None, "cpu") < 4 * MiB


@needs_probe
def test_peak_extra_bytes_is_repeatable_after_reuse():
    # Memory freed by an earlier call and kept by the allocator must be counted again.
    def alloc():
        return np.ones(16 * MiB // 8)

    first = bench.peak_extra_bytes(alloc, "cpu")
    second = bench.peak_extra_bytes(alloc, "cpu")
    assert second == pytest.approx(first, abs=3 * MiB)
    assert second == pytest.approx(16 * MiB, abs=3 * MiB)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_peak_extra_bytes_cuda_sees_a_known_allocation():
    out = bench.peak_extra_bytes(lambda: torch.ones(16 * MiB // 4, device="cuda"), "cuda")
    assert out == pytest.approx(16 * MiB, abs=2 * MiB)


# ---- machine -------------------------------------------------------------------------------------
def test_matmul_ceiling_small():
    c = bench.matmul_ceiling("cpu", "float32", n=128, repeats=2)
    assert c["n"] == 128 and c["dtype"] == "float32"
    assert c["gflops"] > 0 and c["torch_gflops"] > 0 and c["numpy_gflops"] > 0
    assert c["gflops"] == max(c["torch_gflops"], c["numpy_gflops"])


def test_machine_context_has_the_facts():
    ctx = bench.machine_context("cpu")
    for key in (
        "cpu_model",
        "cpu_count",
        "torch_threads",
        "torch",
        "numpy",
        "blas",
        "gpu",
        "date",
        "memory_method",
        "device",
    ):
        assert key in ctx
    assert ctx["torch"] == torch.__version__ and ctx["numpy"] == np.__version__
    json.dumps(ctx)  # serialisable


def test_machine_tag_is_a_folder_name():
    tag = bench.machine_tag("cpu")
    assert tag.startswith("cpu-") and tag.endswith("core") and "/" not in tag


# ---- suite ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_results():
    cfg = bench.SuiteConfig.for_device("cpu", quick=True)
    lines: list[str] = []
    res = bench.run_suite(cfg, log=lines.append)
    res["_log"] = lines
    return res


def test_quick_suite_schema(quick_results):
    res = quick_results
    assert res["schema"] == 1
    assert {"config", "context", "ceilings", "cases", "skipped", "wall_s"} <= set(res)
    assert res["cases"]
    for c in res["cases"]:
        assert CASE_KEYS <= set(c), CASE_KEYS - set(c)
        assert c["flops"] == bench.attention_flops(c["B"], c["H"], c["T"], c["S"], c["d"], c["causal"])
        if c["median_s"] is not None:
            assert c["gflops"] == pytest.approx(c["flops"] / c["median_s"] / 1e9)
    json.dumps(res)


def test_quick_suite_covers_every_cpu_implementation(quick_results):
    impls = {c["impl"] for c in quick_results["cases"]}
    assert impls == {"loops", "numpy", "course_torch", "tiled", "sdpa", "sdpa_math"}
    causal = {c["causal"] for c in quick_results["cases"]}
    assert causal == {False, True}


def test_quick_suite_labels_extrapolated_loops(quick_results):
    cfg = quick_results["config"]
    loops = [c for c in quick_results["cases"] if c["impl"] == "loops"]
    measured = {c["T"] for c in loops if not c["extrapolated"]}
    extrapolated = [c for c in loops if c["extrapolated"]]
    assert measured == set(cfg["loops_T"])
    assert extrapolated and all(c["T"] > max(cfg["loops_T"]) for c in extrapolated)
    assert all(c["times_s"] == [] for c in extrapolated)  # nothing was timed for them
    # The T^2 law from the largest measured T.
    ref = {c["causal"]: c for c in loops if c["T"] == max(cfg["loops_T"])}
    for c in extrapolated:
        r = ref[c["causal"]]
        assert c["median_s"] == pytest.approx(r["median_s"] * (c["T"] / r["T"]) ** 2)


def test_quick_suite_memory_only_cases(quick_results):
    cfg = quick_results["config"]
    mem = [c for c in quick_results["cases"] if c["memory_only"]]
    assert mem and {c["T"] for c in mem} == set(cfg["T_memory"])
    assert all(c["median_s"] is None for c in mem)


def test_quick_suite_logs_one_line_per_case(quick_results):
    case_lines = [ln for ln in quick_results["_log"] if ln.startswith("[")]
    assert len(case_lines) == len(quick_results["cases"])


def test_target_ratios_on_a_synthetic_result():
    def case(impl, T, causal, median=None, mem=None):
        return {
            "impl": impl,
            "T": T,
            "causal": causal,
            "dtype": "float32",
            "median_s": median,
            "peak_extra_bytes": mem,
        }

    res = {
        "cases": [
            case("sdpa", 2048, False, 1.0),
            case("numpy", 2048, False, 3.0),
            case("course_torch", 2048, False, 2.0),
            case("tiled", 2048, False, 1.2),
            case("tiled", 2048, True, 0.6),
            case("tiled", 8192, False, mem=40 * MiB),
        ]
    }
    got = {t["name"]: t for t in bench.target_ratios(res)}
    assert got["numpy_over_sdpa"]["value"] == pytest.approx(3.0) and got["numpy_over_sdpa"]["met"] is False
    assert got["course_torch_over_sdpa"]["met"] is True
    assert got["tiled_over_sdpa"]["met"] is True
    assert got["tiled_noncausal_over_causal"]["value"] == pytest.approx(2.0)
    assert got["tiled_noncausal_over_causal"]["met"] is True
    assert got["tiled_peak_extra_mib"]["value"] == pytest.approx(40.0)
    assert got["tiled_peak_extra_mib"]["met"] is True


def test_unknown_implementation_is_rejected():
    q = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"impl must be one of \[.*'tiled'.*\], got 'nope'"):
        bench.attention_fn("nope", q, q, q, is_causal=False, block_size=4)


def test_cli_quick_end_to_end(tmp_path):
    out = tmp_path / "quick"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench.py"), "--quick", "--device", "cpu", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bench: done" in proc.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["quick"] is True and res["cases"]
    summary = (out / "summary.md").read_text()
    assert "Targets" in summary and "quick mode" in summary
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "time_vs_T_float32.png" in pngs and "memory_vs_T_float32.png" in pngs
    assert any(p.startswith("gflops_T") for p in pngs)


@pytest.mark.parametrize(
    "machine", sorted(p.name for p in (ROOT / "results").glob("*") if (p / "results.json").is_file())
)
def test_committed_reports_are_regenerated_from_their_json(machine, tmp_path):
    """summary.md is a pure function of results.json: rewriting it gives the committed file, and
    the plots of every dtype in the run (float16/bfloat16 on the GPU) are drawn."""
    src = ROOT / "results" / machine
    results = bench.load_results(src / "results.json")
    written = bench.write_report(results, tmp_path, plots=True)
    assert written["summary"].read_text() == (src / "summary.md").read_text()
    dtypes = {c["dtype"] for c in results["cases"]}
    names = {p.name for p in written["plots"]}
    for dtype in dtypes:
        assert f"time_vs_T_{dtype}.png" in names
    ratios = {t["name"]: t for t in bench.target_ratios(results)}
    # The measured memory target holds on both reference machines.
    assert ratios["tiled_peak_extra_mib"]["value"] <= 64


def test_quick_suite_in_process(tmp_path):
    """The suite's CPU path end to end, in this process (the CLI test runs it in a subprocess)."""
    results = bench.run_suite(bench.SuiteConfig.for_device("cpu", quick=True))
    assert results["context"]["device"].startswith("cpu")
    impls = {c["impl"] for c in results["cases"]}
    assert {"numpy", "course_torch", "tiled", "sdpa", "sdpa_math"} <= impls
    for c in results["cases"]:
        if c.get("median_s"):
            assert c["gflops"] == pytest.approx(c["flops"] / c["median_s"] / 1e9, rel=1e-6)
    summary = bench.write_summary(results, tmp_path / "summary.md").read_text()
    assert "Targets" in summary


def test_every_target_says_why_it_can_be_missed():
    from selfattention.bench import report

    names = {t["name"] for t in bench.target_ratios({"cases": []})}
    assert names == set(report._WHY)
    assert "copy of q" not in report._WHY["tiled_peak_extra_mib"]  # tiled.py reads q through a view


def test_suite_pauses_after_numpy_so_the_next_call_is_not_slowed(monkeypatch):
    """OpenBLAS's threads spin for ~0.1 s after a NumPy call; the suite waits (untimed) after
    each NumPy call, and only after those, before the next implementation of the round runs."""
    from selfattention.bench import suite

    pauses: list[float] = []
    calls: list[str] = []
    monkeypatch.setattr(suite.time, "sleep", pauses.append)
    cfg = dataclasses.replace(
        bench.SuiteConfig.for_device("cpu", quick=True),
        impls=("numpy", "sdpa"),
        loops_T=(),
        T_time=(32,),
        T_memory=(),
        causal=(False,),
        quick=False,  # quick mode skips the pauses
    )
    runner = suite._Run(cfg, log=lambda _msg: None, checkpoint=None)
    group = {
        "numpy": lambda: calls.append("numpy"),
        "sdpa": lambda: calls.append("sdpa"),
    }
    runner.time_rounds(group, "float32", 32, False, timed=True)
    assert calls.count("numpy") >= cfg.min_repeats
    assert pauses == [bench.IMPLEMENTATIONS["numpy"].settle_s] * calls.count("numpy")
    assert bench.IMPLEMENTATIONS["numpy"].settle_s >= 0.1
    assert bench.IMPLEMENTATIONS["sdpa"].settle_s == 0.0
