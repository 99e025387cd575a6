"""tools/flash_gpu.py end to end on the CPU, with stand-ins for what needs a GPU.

The script runs once, on a GPU lent for a few minutes; a crash in its plumbing (a missing key,
a summary that cannot be written) would waste that run. Here it runs with SDPA in place of the
Triton kernels, one call in place of CUDA-event timing and tiny shapes, on the CPU: the numbers
mean nothing, the files and their structure are what is checked.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
import torch.nn.functional as F

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "flash_gpu.py"


def _load():
    spec = importlib.util.spec_from_file_location("flash_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sdpa_standin(q, k, v, is_causal=False, block_m=None, block_n=None):
    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)


def test_the_gpu_script_writes_its_results_on_the_cpu_with_stand_ins(tmp_path, monkeypatch):
    fg = _load()
    monkeypatch.setattr(fg, "DEVICE", "cpu")
    monkeypatch.setattr(fg, "B", 1)
    monkeypatch.setattr(fg, "H", 2)
    monkeypatch.setattr(fg, "SHAPES", [(1, 2, 33, 47, 16), (1, 1, 20, 20, 32)])
    monkeypatch.setattr(fg, "cuda_median_ms", lambda fn, **kw: (fn(), 1.0)[1])
    monkeypatch.setattr(fg, "matmul_ceiling_tflops", lambda dtype: 100.0)
    out = tmp_path / "cuda-test-card" / "flash"
    context = {"device": "test card", "torch": torch.__version__, "triton": "-", "date": "today"}
    rc = fg.run(_sdpa_standin, context, out, Ts=[32, 64], dims=[16])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    # 3 dtypes: float16 and bfloat16 on both shapes, float32 on the first; 2 masks; 4 quantities
    assert len(results["correctness"]) == (2 + 2 + 1) * 2 * 4
    assert all(c["passed"] for c in results["correctness"])
    # 2 dtypes x 1 d x 2 T x 2 masks x (flash, SDPA) x (fwd, fwd_bwd)
    assert len(results["rows"]) == 2 * 2 * 2 * 2 * 2 and not results["not_measured"]
    assert [v["target"] for v in results["verdicts"]][:2] == [
        "forward time / SDPA-flash",
        "forward+backward time / SDPA-flash",
    ]
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# FlashAttention-2 in Triton vs SDPA (flash backend): test card")
    assert "## Correctness on the GPU: 40 of 40 comparisons passed" in summary


def test_a_spent_budget_still_leaves_the_correctness_results(tmp_path, monkeypatch):
    fg = _load()
    monkeypatch.setattr(fg, "DEVICE", "cpu")
    monkeypatch.setattr(fg, "SHAPES", [(1, 1, 20, 20, 16)])
    monkeypatch.setattr(fg, "matmul_ceiling_tflops", lambda dtype: 100.0)
    out = tmp_path / "flash"
    rc = fg.run(_sdpa_standin, {"device": "test card"}, out, quick=True, budget=0.0, Ts=[32], dims=[16])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["rows"] == [] and len(results["not_measured"]) == 2  # float16 and bfloat16
    assert "Not measured (the run's time budget was spent first): float16 d=16 T=32" in (
        out / "summary.md"
    ).read_text()
