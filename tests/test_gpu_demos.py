"""Tests of ``selfattention.gpu_demos`` (chapter 7's demonstrations) and of the parts of
``selfattention.bench`` they show: plumbing on tiny sizes, not speed."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from selfattention import bench, gpu_demos
from selfattention.widgets import figure_to_png

matplotlib.use("Agg")


def _qkv(T=12, S=12, d=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    shapes = ((1, 2, T, d), (1, 2, S, d), (1, 2, S, d))  # q, k, v: (B, H, T or S, d)
    return tuple(torch.randn(*shape, generator=g, dtype=dtype) for shape in shapes)


@pytest.mark.parametrize("impl", sorted(bench.IMPLEMENTATIONS))
@pytest.mark.parametrize("causal", [False, True])
def test_attention_fn_matches_sdpa(impl, causal):
    q, k, v = _qkv(dtype=torch.float32)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    try:
        out = bench.attention_fn(impl, q, k, v, is_causal=causal, block_size=5)()
    except RuntimeError as exc:  # a GPU backend forced on the CPU
        assert impl in ("sdpa_efficient", "sdpa_cudnn") and "No viable backend" in str(exc)
        return
    if impl == "loops":
        out = torch.tensor([o for o, _ in out], dtype=torch.float32).reshape(ref.shape)
    elif impl in ("numpy", "course_torch"):  # (out, weights)
        out = out[0] if impl == "course_torch" else torch.from_numpy(out[0])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_attention_fn_rejects_unknown():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="impl must be one of"):
        bench.attention_fn("cuda_magic", q, k, v)


def test_live_sweep_schema_and_flops():
    cases = gpu_demos.live_sweep(
        ["numpy", "sdpa", "loops"], [8, 16], H=2, d=4, repeats=1, ceiling_gflops=10.0, only={"loops": [8]}
    )
    assert [(c["impl"], c["T"]) for c in cases] == [
        ("numpy", 8),
        ("sdpa", 8),
        ("loops", 8),
        ("numpy", 16),
        ("sdpa", 16),
    ]
    for c in cases:
        assert c["flops"] == 4 * 1 * 2 * c["T"] * c["T"] * 4
        assert c["median_s"] > 0 and math.isclose(c["gflops"], c["flops"] / c["median_s"] / 1e9)
        assert math.isclose(c["fraction_of_ceiling"], c["gflops"] / 10.0)
    assert cases[2]["peak_extra_bytes"] is None  # the loops are not probed


def test_live_sweep_pauses_after_numpy(monkeypatch):
    """As the suite does: OpenBLAS's threads spin after a NumPy call, so the sweep waits (untimed)
    after NumPy's cases before timing the next implementation, and after no other."""
    import time

    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    gpu_demos.live_sweep(["numpy", "sdpa"], [8, 16], H=2, d=4, repeats=1, memory=False)
    assert pauses == [bench.IMPLEMENTATIONS["numpy"].settle_s] * 2


def test_loglog_slope():
    T = np.array([128, 256, 512, 1024])
    assert bench.loglog_slope(T, 3e-9 * T**2) == pytest.approx(2.0)
    assert bench.loglog_slope(T, 5 * T) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"need two or more \(x, y\) points.*got 1 and 1"):
        bench.loglog_slope([1], [1])
    with pytest.raises(ValueError, match="x and y must be positive"):
        bench.loglog_slope([1, 2], [0, 1])


def test_simulated_stream_is_asynchronous():
    done = []
    with gpu_demos.SimulatedStream() as stream:
        t0 = time.perf_counter()
        stream.launch(time.sleep, 0.2)
        stream.launch(done.append, 1)
        launched = time.perf_counter() - t0
        stream.synchronize()
        waited = time.perf_counter() - t0
        assert done == [1]
    assert launched < 0.1 <= 0.2 <= waited


def test_aten_ops_and_backends_on_cpu():
    q, k, v = _qkv(dtype=torch.float32)
    ops = gpu_demos.aten_ops(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    assert any("scaled_dot_product" in o for o in ops)
    rows = {r["backend"]: r for r in gpu_demos.sdpa_backends(q, k, v)}
    assert rows["default"]["ok"] and rows["MATH"]["ok"]
    assert rows["MATH"]["kernel"].startswith("math")
    if not torch.cuda.is_available():
        assert not rows["EFFICIENT_ATTENTION"]["ok"]
        assert "No viable backend" in rows["EFFICIENT_ATTENTION"]["error"]


def _fake_results(device_type="cuda"):
    cases = []
    for impl in ("sdpa", "tiled"):
        for T in (128, 256):
            for causal in (False, True):
                cases.append(
                    {
                        "impl": impl,
                        "dtype": "float32",
                        "T": T,
                        "causal": causal,
                        "median_s": 1e-6 * T * T * (0.5 if causal else 1),
                        "peak_extra_bytes": 1024 * T,
                        "extrapolated": False,
                    }
                )
    return {
        "context": {
            "device_type": device_type,
            "date": "2026-01-02T03:04:05+00:00",
            "cpu_model": "Test CPU",
            "cpu_count": 4,
            "gpu": {"name": "Test GPU"} if device_type == "cuda" else None,
        },
        "config": {"dtypes": ["float32"]},
        "cases": cases,
    }


def test_find_results_and_labels(tmp_path):
    for tag, kind in (("cuda-test-gpu", "cuda"), ("cpu-4core", "cpu")):
        (tmp_path / "results" / tag).mkdir(parents=True)
        (tmp_path / "results" / tag / "results.json").write_text(json.dumps(_fake_results(kind)))
    found = bench.find_results(tmp_path)
    assert [p.parent.name for p in found] == ["cpu-4core", "cuda-test-gpu"]  # CPU first
    assert bench.reference_label(_fake_results("cuda")) == "reference: Test GPU, 2026-01-02"
    assert bench.reference_label(_fake_results("cpu")) == "reference: Test CPU, 4 cores, 2026-01-02"
    assert bench.find_results(tmp_path / "nowhere") == []


def test_reference_series_filters():
    r = _fake_results()
    assert bench.reference_series(r, "sdpa") == [(128, 128 * 128 * 1e-6), (256, 256 * 256 * 1e-6)]
    assert bench.reference_series(r, "tiled", "peak_extra_bytes", causal=True) == [
        (128, 131072),
        (256, 262144),
    ]
    assert bench.reference_series(r, "numpy") == []


def test_plot_time_memory_live_and_reference():
    live = [
        {"impl": "sdpa", "T": T, "causal": False, "median_s": 1e-3 * T, "peak_extra_bytes": 2**20 * T}
        for T in (1, 2, 4)
    ]
    fig = bench.plot_time_memory(live, _fake_results())
    ax_t, ax_m = fig.axes
    assert ax_t.get_xscale() == "log" and ax_m.get_yscale() == "log"
    assert ax_t.get_title() and ax_t.get_xlabel() and ax_t.get_ylabel()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "reference: Test GPU, 2026-01-02" in labels and "measured now on this machine" in labels
    bench.plot_time_memory([], _fake_results())  # reference alone


@pytest.mark.parametrize("causal", [False, True])
def test_tiled_walkthrough_states_and_frames(causal):
    q, k, v = (t[0, 0] for t in _qkv(T=10, S=10))
    walk = gpu_demos.tiled_walkthrough(q, k, v, 4, is_causal=causal)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(walk["out"], ref)
    assert walk["m"].shape == walk["l"].shape == (4, 10)  # blocks 0-3, 4-7, 8-9, plus the start
    assert np.all(np.isneginf(walk["m"][0])) and np.all(walk["l"][0] == 0)
    fin = walk["m"][1:]
    assert np.all(np.diff(np.where(np.isfinite(fin), fin, -1e9), axis=0) >= 0)  # m never decreases
    codes = gpu_demos._cell_states(walk, len(walk["trace"]))
    assert not np.any(codes == 0)  # every cell has been visited at the end
    assert np.any(codes == 4) == causal and np.any(codes == 3) == causal
    for step in (0, 2, 3):
        png = figure_to_png(gpu_demos.plot_tiled_step(walk, step, rows=(0, 5, 9)), colors=64)
        assert png.startswith(b"\x89PNG") and len(png) < 25_000
    with pytest.raises(ValueError):
        gpu_demos.plot_tiled_step(walk, 4)


def test_first_calls_in_a_fresh_process():
    out = gpu_demos.first_calls("sdpa", T=16, n=3)
    assert out["import_s"] > 0 and len(out["times_s"]) == 3 and all(t > 0 for t in out["times_s"])


def test_one_implementation_table():
    keys = list(bench.IMPLEMENTATIONS)
    assert list(bench.STYLE) == keys
    for key, impl in bench.IMPLEMENTATIONS.items():
        assert impl.label and impl.short and len(impl.short) <= 24  # chapter 7's column width
        assert bench.STYLE[key] == (impl.color, impl.marker)
        assert str(impl) == impl.label
    assert len({i.short for i in bench.IMPLEMENTATIONS.values()}) == len(keys)
    assert len(set(bench.STYLE.values())) == len(keys)  # no two share a colour and marker
    assert {k for k, i in bench.IMPLEMENTATIONS.items() if i.cpu_only} == {"loops", "numpy"}


def test_find_results_default_roots_find_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # neither the folder nor its parent holds results/
    found = bench.find_results()
    assert any(p.parent.name == "cpu-2core" for p in found), found


def test_print_reference_results_and_backends(capsys):
    bench.print_reference_results([], [])
    out = capsys.readouterr().out
    assert "No reference results found" in out and "No GPU reference results are committed yet" in out
    r = _fake_results("cuda")
    for c in r["cases"]:
        c.update(gflops=c["T"] / 1e3, fraction_of_ceiling=0.5)
    r["context"].update(device="cuda:0", torch="2.0", load_average=None)
    r["ceilings"] = {"float32": {"gflops": 100.0, "n": 8192}}
    r["skipped"] = [{"impl": "sdpa_cudnn", "dtype": "float32", "reason": "raised RuntimeError: no"}]
    bench.print_reference_results([r], [Path("results/cuda-test-gpu/results.json")])
    out = capsys.readouterr().out
    assert "reference: Test GPU, 2026-01-02  [cuda-test-gpu/results.json]" in out
    assert "matmul ceiling float32: 100.0 GFLOP/s (n=8192)" in out
    assert "at T=256, non-causal" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("     ")]
    assert [row[-4:] for row in rows] == [["float32", "65.536", "0.3", "0.5000"]] * 2  # sdpa, tiled
    assert "No GPU reference" not in out
    bench.print_reference_backends([r])
    out = capsys.readouterr().out
    assert "torch SDPA (default)" in out and "tiled (online softmax)" in out
    assert "refused: sdpa_cudnn float32: raised RuntimeError: no" in out
    bench.print_reference_backends([])
    assert "No GPU reference results" in capsys.readouterr().out
