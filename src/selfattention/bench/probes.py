"""What the benchmark measures with: FLOPs, a timer, a memory probe, the machine's matmul
ceiling and its context (CPU, BLAS, GPU, load).

How each number is obtained
---------------------------
* Time (:func:`time_fn`): warm-up calls, then ``repeats`` timed calls with
  ``time.perf_counter()``; on CUDA/MPS the device is synchronised before starting and before
  stopping the clock, so the queued work is measured and not only its launch. The median is
  reported (robust to a noisy neighbour on a shared machine).
* FLOPs (:func:`attention_flops`): 4 * B * H * T * S * d for the two matmuls (QK^T and AV,
  2 FLOPs per multiply-add), half of that under a causal mask. Softmax is not counted.
* Ceiling (:func:`matmul_ceiling`): achieved GFLOP/s of a large square matmul in the same dtype on
  the same device, measured in the same run: the machine's measured peak, not a datasheet number.
* Extra peak memory (:func:`peak_extra_bytes`):

  - CUDA: ``torch.cuda.reset_peak_memory_stats`` then ``max_memory_allocated`` minus the memory
    allocated before the call (the inputs), i.e. the peak of tensors the call created.
  - CPU on Linux: the kernel's resident-set high-water mark. Writing ``5`` to
    ``/proc/self/clear_refs`` resets ``VmHWM`` to the current RSS; the call runs; extra peak =
    ``VmHWM`` after - ``VmRSS`` before. Before the reset, ``gc.collect()`` and glibc's
    ``malloc_trim(0)`` hand freed heap pages back to the kernel, so that memory the allocator
    kept from earlier calls is faulted in again, and counted, when the call reuses it. It counts
    pages actually touched (what costs time and RAM), with a granularity of a page (4 KiB, or
    2 MiB for NumPy's huge pages). Verified in ``tests/test_bench.py`` against a known 64 MiB
    allocation with NumPy and with torch.
  - Elsewhere (macOS, Windows, MPS, a kernel without ``clear_refs``): ``None``, with the reason
    in :func:`memory_method`. A high-water mark that cannot be reset cannot be measured in-process.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import gc
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._validate import require_int
from ..devices import describe_device, synchronize

MiB = 2**20

__all__ = [
    "MiB",
    "attention_flops",
    "available_bytes",
    "machine_context",
    "machine_tag",
    "matmul_ceiling",
    "memory_method",
    "peak_extra_bytes",
    "time_fn",
]


# ------------------------------------------------------------------------------------------------
# FLOPs
# ------------------------------------------------------------------------------------------------
def attention_flops(B: int, H: int, T: int, S: int, d: int, is_causal: bool = False) -> int:
    """FLOPs of one attention forward pass: 4 * B * H * T * S * d, halved when ``is_causal``.

    Two matmuls, scores = Q K^T ((T, d) x (d, S)) and out = A V ((T, S) x (S, d)), each
    2 * T * S * d FLOPs (one multiply and one add per term) per batch element and head. A causal
    mask leaves about half of the (T, S) pairs, so the useful work is half (the diagonal's extra
    T/2 pairs are ignored, as FlashAttention's papers do). The softmax (O(T * S)) is not counted.

    Raises:
        TypeError: a size is not an int (NumPy integers are fine).
        ValueError: a size is < 1.
    """
    B, H, T, S, d = (require_int(n, v) for n, v in (("B", B), ("H", H), ("T", T), ("S", S), ("d", d)))
    flops = 4 * B * H * T * S * d
    return flops // 2 if is_causal else flops


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------
def time_fn(
    fn: Callable[[], Any],
    device: torch.device | str = "cpu",
    warmup: int = 1,
    repeats: int = 5,
    target_s: float | None = None,
    max_repeats: int | None = None,
) -> dict[str, Any]:
    """Time ``fn()`` on ``device``: ``warmup`` untimed calls, then ``repeats`` timed calls.

    On CUDA (and MPS) the device is synchronised before the clock starts and before it stops, so
    asynchronous kernels are measured, not only their launch. With ``target_s`` the number of
    repeats grows (up to ``max_repeats``) so that the timed calls take about ``target_s`` seconds,
    estimated from the last warm-up call; never fewer than ``repeats``.

    Returns:
        dict with ``median_s``, ``min_s``, ``max_s``, ``mean_s``, ``times_s`` (every call),
        ``first_s`` (the first warm-up call, which includes one-time costs), ``warmup``, ``repeats``.
    Raises:
        ValueError: ``warmup`` < 0 or ``repeats`` < 1.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}.")
    device = torch.device(device)
    first = None
    last = None
    for _ in range(warmup):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        last = time.perf_counter() - t0
        first = last if first is None else first
    n = repeats
    if target_s is not None and last is not None and last > 0:
        n = max(repeats, math.ceil(target_s / last))
        if max_repeats is not None:
            n = min(n, max(max_repeats, repeats))
    times = []
    for _ in range(n):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "mean_s": statistics.fmean(times),
        "times_s": times,
        "first_s": first if first is not None else times[0],
        "warmup": warmup,
        "repeats": n,
    }


# ------------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------------
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _proc_status_kib(key: str) -> int:
    m = re.search(rf"^{key}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    if m is None:
        raise OSError(f"{key} not found in {_STATUS}")
    return int(m.group(1))


def _reset_hwm() -> bool:
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


_LIBC: Any = None


def _malloc_trim() -> None:
    """Return the allocator's free pages to the kernel (glibc only; a no-op elsewhere)."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


def memory_method(device: torch.device | str = "cpu") -> str:
    """How :func:`peak_extra_bytes` measures on ``device``, or why it cannot (starts with 'none')."""
    device = torch.device(device)
    if device.type == "cuda":  # pragma: no cover - GPU only; run by tools/gpu_bench.sh
        return "cuda: torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus allocated before"
    if device.type != "cpu":
        return f"none: no peak-memory counter for {device.type}"
    if not _STATUS.exists():
        return f"none: /proc/self/status not available on {platform.system()}"
    if not _reset_hwm():
        return "none: /proc/self/clear_refs is not writable here, so VmHWM cannot be reset"
    return (
        "cpu: VmHWM after the call minus VmRSS before, VmHWM reset via /proc/self/clear_refs (5), "
        "after malloc_trim(0)"
    )


def peak_extra_bytes(fn: Callable[[], Any], device: torch.device | str = "cpu") -> int | None:
    """Measured extra peak memory of one call ``fn()``: the most memory it held at once beyond
    what existed before the call (its inputs), in bytes. ``None`` where it cannot be measured
    (see :func:`memory_method`). The result of ``fn`` is held until the peak is read.
    """
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":  # pragma: no cover - GPU only; run by tools/gpu_bench.sh
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        del result
        return max(0, peak - before)
    if device.type != "cpu" or not _STATUS.exists():
        return None
    _malloc_trim()
    if not _reset_hwm():
        return None
    before = _proc_status_kib("VmRSS")
    result = fn()
    peak = _proc_status_kib("VmHWM")
    del result
    return max(0, peak - before) * 1024


# ------------------------------------------------------------------------------------------------
# The machine: its measured ceiling and its context
# ------------------------------------------------------------------------------------------------
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {name!r}.")
    return _DTYPES[name]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def matmul_ceiling(
    device: torch.device | str = "cpu",
    dtype: str | torch.dtype = "float32",
    n: int | None = None,
    repeats: int = 5,
) -> dict[str, Any]:
    """Achieved GFLOP/s of an (n, n) x (n, n) matmul: the machine's measured peak for ``dtype``.

    On the CPU both ``torch.mm`` and NumPy's ``@`` are measured (they may use different BLAS
    kernels) and ``gflops`` is the larger; on a GPU ``torch.mm`` (with the current TF32 setting,
    recorded in the context). Default n: 2048 on the CPU, 8192 on a GPU.

    Returns:
        dict with ``gflops`` (the ceiling), ``torch_gflops``, ``numpy_gflops`` (CPU float32 only,
        else None), ``n``, ``dtype``, ``torch_median_s``.
    """
    device = torch.device(device)
    dt = _dtype(dtype)
    if n is None:
        n = 2048 if device.type == "cpu" else 8192
    flops = 2 * n**3
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dt)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dt)
    t = time_fn(lambda: torch.mm(a, b), device, warmup=2, repeats=repeats)
    torch_gflops = flops / t["median_s"] / 1e9
    numpy_gflops = None
    if device.type == "cpu" and dt == torch.float32:
        an, bn = a.numpy(), b.numpy()
        tn = time_fn(lambda: an @ bn, "cpu", warmup=2, repeats=repeats)
        numpy_gflops = flops / tn["median_s"] / 1e9
    return {
        "dtype": _dtype_name(dt),
        "n": n,
        "gflops": max(torch_gflops, numpy_gflops or 0.0),
        "torch_gflops": torch_gflops,
        "numpy_gflops": numpy_gflops,
        "torch_median_s": t["median_s"],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_info() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl is not installed"}]
    keep = (
        "user_api",
        "internal_api",
        "version",
        "architecture",
        "num_threads",
        "threading_layer",
        "filepath",
    )
    return [{k: info.get(k) for k in keep if k in info} for info in threadpool_info()]


def machine_tag(device: torch.device | str = "cpu") -> str:
    """A folder name for this machine's results: ``cpu-2core`` or e.g. ``cuda-nvidia-h100-80gb-hbm3``."""
    device = torch.device(device)
    if device.type == "cuda":  # pragma: no cover - GPU only; run by tools/gpu_bench.sh
        name = torch.cuda.get_device_name(device.index or 0)
        return "cuda-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if device.type == "mps":  # pragma: no cover - GPU only; run by tools/gpu_bench.sh
        return "mps"
    return f"cpu-{os.cpu_count()}core"


def machine_context(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What ran: CPU model, threads, library versions, BLAS kernels, GPU name, date."""
    device = torch.device(device)
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    try:
        mem_total = _proc_meminfo_kib("MemTotal") * 1024
    except OSError:
        mem_total = None
    ctx: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": describe_device(device),
        "device_type": device.type,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch.get_num_threads(),
        "memory_total_bytes": mem_total,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "blas": _blas_info(),
        "env": {
            k: os.environ.get(k)
            for k in (
                "OMP_NUM_THREADS",
                "MKL_NUM_THREADS",
                "OPENBLAS_NUM_THREADS",
                "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE",
            )
            if os.environ.get(k) is not None
        },
        "gpu": None,
        "memory_method": memory_method(device),
        "load_average": _loadavg(),
    }
    if torch.cuda.is_available():  # pragma: no cover - GPU only; run by tools/gpu_bench.sh
        try:
            idx = (device.index or 0) if device.type == "cuda" else 0
            props = torch.cuda.get_device_properties(idx)
            ctx["gpu"] = {
                "name": props.name,
                "memory_bytes": props.total_memory,
                "capability": f"{props.major}.{props.minor}",
                "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            }
        except Exception as exc:  # never lose a run over its description
            ctx["gpu"] = {"name": "unknown", "error": f"{type(exc).__name__}: {exc}"}
    return ctx


def _loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: above the CPU count, others were competing for it."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _proc_meminfo_kib(key: str) -> int:
    m = re.search(rf"^{key}:\s+(\d+)\s+kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    if m is None:
        raise OSError(f"{key} not in /proc/meminfo")
    return int(m.group(1))


def available_bytes() -> int | None:
    """Memory the kernel could hand out now (``MemAvailable``), in bytes; None where unknown."""
    try:
        return _proc_meminfo_kib("MemAvailable") * 1024
    except OSError:
        return None
