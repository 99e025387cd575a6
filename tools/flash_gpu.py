"""FlashAttention-2 in Triton on a CUDA GPU: correctness, then the benchmark of issue 13.

    python tools/flash_gpu.py [--out results] [--quick] [--budget 480]

(with the library installed, ``pip install -e .``; from a bare checkout, ``PYTHONPATH=src``).

1. Correctness: ``selfattention.flash.flash_attention`` in float16, bfloat16 and float32 against
   SDPA in float32 (forward and gradients; ragged, T != S, causal). A half-precision result passes
   when its error is at most twice SDPA's own error in that dtype plus a small floor.
2. Benchmark: B=4, H=16, d in {64, 128}, T from 1024 to 16384, float16 and bfloat16; flash
   forward and forward + backward, causal or not, beside SDPA restricted to its FLASH backend;
   medians of CUDA-event timings; TFLOP/s against a measured torch.mm ceiling.

Writes results.json and summary.md (targets, ratio table, correctness) into
``<out>/<card-tag>/flash/``, after the correctness phase and again after every benchmark
group, so that a run cut short still leaves what it measured. Every new (kernel, block sizes,
dtype, d, causal) is compiled on first use (seconds each, hundreds in an autotuned run): the
correctness phase fixes the block sizes (one compile per case), and the benchmark starts no new
group once ``--budget`` seconds have passed since the start.

On a machine without CUDA it refuses: Triton's interpreter gives right answers, but its times
are not speeds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
FLOOR = {"float16": 2e-3, "bfloat16": 1e-2, "float32": 5e-4}  # absolute slack over 2 x SDPA's error
B, H = 4, 16
DEVICE = "cuda"  # tests/test_flash_gpu_script.py runs the whole script on the CPU with stand-ins


def card_tag() -> str:
    name = torch.cuda.get_device_name(0)
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def cuda_median_ms(fn, warmup: int = 3, repeats: int = 20, min_sample_ms: float = 2.0) -> float:
    """Median milliseconds per call of ``fn``, from CUDA events.

    Each sample times ``inner`` back-to-back calls between one pair of events, with no
    synchronisation in between, so the host's Python work for a call (input checks, the autotuner's
    dispatch, argument binding) overlaps the GPU's work on the previous one, as in a training
    loop; synchronising after every call would add it to short kernels' times. ``inner`` is chosen
    so that a sample lasts at least ``min_sample_ms``. The warm-up calls absorb autotuning and
    compilation.
    """
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    inner = max(1, min(100, math.ceil(min_sample_ms / max(start.elapsed_time(end), 1e-3))))
    times = []
    for _ in range(repeats):
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return statistics.median(times)


def matmul_ceiling_tflops(dtype: torch.dtype, n: int = 8192) -> float:
    a, b = (torch.randn(n, n, device=DEVICE, dtype=dtype) for _ in range(2))
    return 2 * n**3 / (cuda_median_ms(lambda: a @ b) * 1e-3) / 1e12


SHAPES = [(2, 3, 1000, 1000, 64), (1, 4, 777, 1500, 128), (2, 2, 1500, 333, 32), (1, 2, 129, 257, 16)]


def correctness(flash_attention, quick: bool = False) -> list[dict]:
    """Forward and gradients against SDPA in float32, with fixed 64 x 64 blocks.

    Fixed blocks compile each (dtype, d, causal) once; the autotuner would compile every one of
    its configurations for each, minutes of compiling before the first number. float32 is checked
    on the first shape only (it is not a benchmark dtype); ``quick`` keeps two shapes.
    """
    rows = []
    for dname, dtype in DTYPES.items():
        shapes = SHAPES[:1] if dname == "float32" else SHAPES[:2] if quick else SHAPES
        for Bc, Hc, T, S, d in shapes:
            for causal in (False, True):
                g = torch.Generator(device=DEVICE).manual_seed(T + S + d)
                q32, k32, v32 = (torch.randn(Bc, Hc, n, d, device=DEVICE, generator=g) for n in (T, S, S))
                do32 = torch.randn(Bc, Hc, T, d, device=DEVICE, generator=g)
                ref_in = [x.clone().requires_grad_() for x in (q32, k32, v32)]
                ref = F.scaled_dot_product_attention(*ref_in, is_causal=causal)
                ref_grads = torch.autograd.grad(ref, ref_in, do32)
                results = {}
                for impl in ("flash", "sdpa"):
                    xs = [x.to(dtype).requires_grad_() for x in (q32, k32, v32)]
                    if impl == "flash":
                        out = flash_attention(*xs, is_causal=causal, block_m=64, block_n=64)
                    else:
                        out = F.scaled_dot_product_attention(*xs, is_causal=causal)
                    grads = torch.autograd.grad(out, xs, do32.to(dtype))
                    results[impl] = [out, *grads]
                for i, what in enumerate(("out", "dq", "dk", "dv")):
                    want = (ref, *ref_grads)[i].float()
                    err = (results["flash"][i].float() - want).abs().max().item()
                    sdpa_err = (results["sdpa"][i].float() - want).abs().max().item()
                    tol = 2 * sdpa_err + FLOOR[dname] if dname != "float32" else FLOOR[dname]
                    rows.append(
                        {
                            "dtype": dname,
                            "shape": f"B={Bc} H={Hc} T={T} S={S} d={d}",
                            "causal": causal,
                            "what": what,
                            "error": err,
                            "sdpa_error": sdpa_err,
                            "tol": tol,
                            "passed": err <= tol,
                        }
                    )
                    print(
                        f"  {dname:8s} T={T:5d} S={S:5d} d={d:3d} causal={causal!s:5s} {what}: "
                        f"error {err:.2e} (SDPA {sdpa_err:.2e}, tol {tol:.1e}) "
                        f"{'ok' if err <= tol else 'FAIL'}",
                        flush=True,
                    )
    return rows


def time_one(flash_attention, q, k, v, do, impl: str, mode: str, causal: bool) -> float:
    """Median milliseconds of one forward (or forward + backward) of ``impl``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def fwd():
        if impl == "flash":
            return flash_attention(q, k, v, is_causal=causal)
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    # SDPA restricted to its FLASH backend; the context is entered once, outside the timed calls.
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        if mode == "fwd":
            with torch.no_grad():
                return cuda_median_ms(fwd)
        return cuda_median_ms(lambda: torch.autograd.grad(fwd(), (q, k, v), do))


def benchmark(flash_attention, flash_flops, Ts, dims, dtypes, deadline: float, save) -> list[dict]:
    """Time every (dtype, d, T) group until ``deadline`` (time.monotonic()); ``save(rows)`` after each."""
    rows = []
    for dname in dtypes:
        for d in dims:
            for T in Ts:
                if time.monotonic() > deadline:
                    print(f"  budget spent: {dname} d={d} T={T} not measured", flush=True)
                    rows.append({"impl": "skipped", "dtype": dname, "d": d, "T": T})
                    continue
                q, k, v, do = (
                    torch.randn(B, H, T, d, device=DEVICE, dtype=DTYPES[dname], requires_grad=i < 3)
                    for i in range(4)
                )
                for causal in (False, True):
                    for impl in ("flash", "sdpa_flash"):
                        for mode in ("fwd", "fwd_bwd"):
                            ms = time_one(flash_attention, q, k, v, do, impl, mode, causal)
                            tflops = flash_flops(B, H, T, T, d, causal, mode) / (ms * 1e-3) / 1e12
                            rows.append(
                                {
                                    "impl": impl,
                                    "mode": mode,
                                    "dtype": dname,
                                    "d": d,
                                    "T": T,
                                    "causal": causal,
                                    "median_ms": ms,
                                    "tflops": tflops,
                                }
                            )
                            print(
                                f"  {impl:10s} {mode:7s} {dname:8s} d={d:3d} T={T:5d} causal={causal!s:5s} "
                                f"{ms:8.3f} ms {tflops:6.1f} TFLOP/s",
                                flush=True,
                            )
                if DEVICE == "cuda":
                    torch.cuda.empty_cache()
                save(rows)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "results"), help="results root (default: results/)")
    parser.add_argument("--quick", action="store_true", help="T up to 4096 and d=64 only (a smoke run)")
    parser.add_argument(
        "--budget", type=float, default=float("inf"), help="seconds after which no new benchmark group starts"
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "flash_gpu: no CUDA GPU here, so there is nothing to measure. Triton's interpreter runs "
            "the kernels on a CPU for correctness only (tests/test_flash.py); its times are not "
            "speeds and are never reported.",
            file=sys.stderr,
        )
        return 2
    import triton

    from selfattention.flash import flash_attention

    context = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    out = Path(args.out) / card_tag() / "flash"
    return run(flash_attention, context, out, quick=args.quick, budget=args.budget)


def run(
    flash_attention,
    context: dict,
    out: Path,
    quick: bool = False,
    budget: float = float("inf"),
    Ts: list[int] | None = None,
    dims: list[int] | None = None,
) -> int:
    """Correctness, the matmul ceiling and the benchmark; results written into ``out`` as they come.

    ``Ts`` and ``dims`` default to the issue's lengths and head sizes (fewer with ``quick``).
    """
    from selfattention.flash_bench import flash_flops, summary_markdown, verdicts

    started = time.monotonic()
    Ts = Ts or ([1024, 2048, 4096] if quick else [1024, 2048, 4096, 8192, 16384])
    dims = dims or ([64] if quick else [64, 128])
    print(f"flash_gpu: {context}")
    out.mkdir(parents=True, exist_ok=True)
    results = {"context": context, "B": B, "H": H, "matmul_ceiling_tflops": {}, "rows": [], "correctness": []}

    def save(rows: list[dict]) -> None:
        """Write what has been measured so far: a run cut short still leaves its results."""
        measured = [r for r in rows if r["impl"] != "skipped"]
        results.update(rows=measured, verdicts=verdicts(measured))
        results["not_measured"] = [r for r in rows if r["impl"] == "skipped"]
        results["wall_s"] = round(time.monotonic() - started, 1)
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        (out / "summary.md").write_text(summary_markdown(results))

    print("flash_gpu: correctness against SDPA in float32 (fixed 64 x 64 blocks)")
    corr = correctness(flash_attention, quick=quick)
    results["correctness"] = corr
    save([])
    print(f"flash_gpu: matmul ceiling ({time.monotonic() - started:.0f} s so far)")
    results["matmul_ceiling_tflops"] = {n: matmul_ceiling_tflops(DTYPES[n]) for n in ("float16", "bfloat16")}
    print(f"  {results['matmul_ceiling_tflops']}")
    print("flash_gpu: benchmark (autotuned kernels)")
    rows = benchmark(flash_attention, flash_flops, Ts, dims, ["float16", "bfloat16"], started + budget, save)
    save(rows)
    print((out / "summary.md").read_text())
    failed = sum(not c["passed"] for c in corr)
    print(f"flash_gpu: wrote {out}; correctness: {len(corr) - failed} of {len(corr)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
