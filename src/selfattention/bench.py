"""Benchmark plumbing for chapter 7 and ``make bench``: FLOPs, timers, a memory probe, the
machine's matmul ceiling, its context, and the suite that times every implementation.

Everything here measures; nothing is computed from a model except the loops at large T, which are
*extrapolated* from small T by the T^2 law and labelled ``extrapolated: true``.

How each number is obtained
---------------------------
* Time (:func:`time_fn`): warm-up calls, then ``repeats`` timed calls with
  :func:`time.perf_counter`; on CUDA/MPS the device is synchronised before starting and before
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
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import loops, multihead, tiled, vectorized
from .devices import describe_device, synchronize

MiB = 2**20

__all__ = [
    "IMPLEMENTATIONS",
    "SuiteConfig",
    "attention_flops",
    "machine_context",
    "machine_tag",
    "matmul_ceiling",
    "memory_method",
    "peak_extra_bytes",
    "plot_results",
    "run_suite",
    "target_ratios",
    "time_fn",
    "write_report",
    "write_summary",
]


# ------------------------------------------------------------------------------------------------
# FLOPs
# ------------------------------------------------------------------------------------------------
def attention_flops(B: int, H: int, T: int, S: int, d: int, causal: bool = False) -> int:
    """FLOPs of one attention forward pass: 4 * B * H * T * S * d, halved when ``causal``.

    Two matmuls, scores = Q K^T ((T, d) x (d, S)) and out = A V ((T, S) x (S, d)), each
    2 * T * S * d FLOPs (one multiply and one add per term) per batch element and head. A causal
    mask leaves about half of the (T, S) pairs, so the useful work is half (the diagonal's extra
    T/2 pairs are ignored, as FlashAttention's papers do). The softmax (O(T * S)) is not counted.

    Raises:
        ValueError: a size is < 1.
    """
    for name, val in (("B", B), ("H", H), ("T", T), ("S", S), ("d", d)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be an int >= 1, got {val!r}.")
    flops = 4 * int(B) * int(H) * int(T) * int(S) * int(d)
    return flops // 2 if causal else flops


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
    return ("cpu: VmHWM after the call minus VmRSS before, VmHWM reset via /proc/self/clear_refs (5), "
            "after malloc_trim(0)")


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
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads", "threading_layer",
            "filepath")
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
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                                                "OPENBLAS_L2_SIZE") if os.environ.get(k) is not None},
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


# ------------------------------------------------------------------------------------------------
# The implementations under test
# ------------------------------------------------------------------------------------------------
#: name -> human label. ``loops`` and ``numpy`` run on the CPU only; the ``sdpa_*`` backends
#: other than math are tried on CUDA (a backend that raises is recorded as skipped, with why).
IMPLEMENTATIONS = {
    "loops": "Python loops (loops.attention)",
    "numpy": "NumPy (vectorized.attention)",
    "course_torch": "course PyTorch (multihead.scaled_dot_product_attention)",
    "tiled": "tiled online softmax (tiled.tiled_attention, block 128)",
    "sdpa": "torch SDPA, default backend",
    "sdpa_math": "torch SDPA, MATH backend forced",
    "sdpa_flash": "torch SDPA, FLASH_ATTENTION backend",
    "sdpa_efficient": "torch SDPA, EFFICIENT_ATTENTION backend",
    "sdpa_cudnn": "torch SDPA, CUDNN_ATTENTION backend",
}
_SDPA_BACKENDS = {
    "sdpa_math": "MATH",
    "sdpa_flash": "FLASH_ATTENTION",
    "sdpa_efficient": "EFFICIENT_ATTENTION",
    "sdpa_cudnn": "CUDNN_ATTENTION",
}


def attention_fn(impl: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                 block_size: int = 128) -> Callable[[], Any]:
    """A zero-argument callable computing attention of q (B, H, T, d), k, v (B, H, S, d) with
    ``impl`` (a key of :data:`IMPLEMENTATIONS`).

    Conversions (to lists for the loops, to NumPy) are done here, once, so that a timer measures
    the attention only. Used by the suite and by chapter 7's live measurements.

    Raises:
        ValueError: an unknown ``impl``, or ``loops``/``numpy`` asked for a tensor not on the CPU.
        RuntimeError: the SDPA backend does not exist in this torch.
    """
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {impl!r}; expected one of "
                         f"{sorted(IMPLEMENTATIONS)}.")
    if impl in ("loops", "numpy") and q.device.type != "cpu":
        raise ValueError(f"impl={impl!r} runs on the CPU only, but q is on {q.device}.")
    if impl == "loops":
        B, H = q.shape[:2]
        qkv = [(q[b, h].tolist(), k[b, h].tolist(), v[b, h].tolist())
               for b in range(B) for h in range(H)]
        return lambda: [loops.attention(Q, K, V, causal=causal) for Q, K, V in qkv]
    if impl == "numpy":
        qn, kn, vn = q.numpy(), k.numpy(), v.numpy()
        return lambda: vectorized.attention(qn, kn, vn, causal=causal)
    if impl == "course_torch":
        return lambda: multihead.scaled_dot_product_attention(q, k, v, is_causal=causal)
    if impl == "tiled":
        return lambda: tiled.tiled_attention(q, k, v, block_size=block_size, is_causal=causal)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if impl == "sdpa":
        return lambda: sdpa(q, k, v, is_causal=causal)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, _SDPA_BACKENDS[impl], None)
    if backend is None:
        raise RuntimeError(f"SDPBackend.{_SDPA_BACKENDS[impl]} does not exist in torch "
                           f"{torch.__version__}")

    def run() -> torch.Tensor:
        with sdpa_kernel(backend):
            return sdpa(q, k, v, is_causal=causal)

    return run


def _make_fn(impl: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
             block_size: int) -> Callable[[], Any]:
    return attention_fn(impl, q, k, v, causal=causal, block_size=block_size)


# ------------------------------------------------------------------------------------------------
# The suite
# ------------------------------------------------------------------------------------------------
@dataclass
class SuiteConfig:
    """What :func:`run_suite` runs. ``SuiteConfig.for_device(...)`` gives the standard settings.

    Attributes:
        device: "cpu" or "cuda" (or "cuda:1").
        dtypes: dtypes to run ("float32", "float16", "bfloat16").
        B, H, d: batch, heads, width per head.
        T_time: sequence lengths that are timed (and probed for memory).
        T_memory: sequence lengths probed for memory only (one call each), beyond T_time.
        loops_T: the lengths at which the pure-Python loops really run; larger T in ``T_time``
            are extrapolated by the T^2 law from the largest of these, and labelled so.
        impls: implementations to run, in order (see :data:`IMPLEMENTATIONS`).
        causal: which causal settings to run.
        block_size: the tiled version's block.
        warmup, min_repeats, max_repeats, target_s: per case, ``warmup`` calls, then repeats so
            that the timed calls take about ``target_s`` s, between min and max repeats.
        max_case_s: skip a case whose predicted time (from the same implementation at the
            previous T, by T^2) for warm-up plus ``min_repeats`` calls exceeds this.
        max_memory_fraction: skip a case whose predicted peak (T^2 from the previous T)
            exceeds this fraction of the memory available now.
        max_memory_probe_bytes: skip a memory-only probe (T in ``T_memory``) predicted above this.
        second_probe_below_s: probe memory a second time when one probe took less than this and
            keep the smaller (steady state; the first can include the allocator growing its heap).
        memory_causal: the causal settings probed at the memory-only lengths.
        memory_always: implementations whose memory-only probe is never skipped by the per-case
            time prediction (linear memory: the point of the probe; the tiled target is one).
        budget_s: after this many seconds no new case starts; those left are recorded as skipped.
        never_skip_T: cases at T up to this are never skipped by the per-case prediction (the
            targets are read at T=2048); the suite budget still applies.
        ceiling_n: matrix size for the matmul ceiling (None: a default per device).
    """

    device: str = "cpu"
    dtypes: tuple[str, ...] = ("float32",)
    B: int = 1
    H: int = 8
    d: int = 64
    T_time: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096)
    T_memory: tuple[int, ...] = (8192,)
    loops_T: tuple[int, ...] = (32, 64, 128)
    impls: tuple[str, ...] = ("loops", "numpy", "course_torch", "tiled", "sdpa", "sdpa_math")
    causal: tuple[bool, ...] = (False, True)
    block_size: int = 128
    warmup: int = 1
    min_repeats: int = 3
    max_repeats: int = 15
    target_s: float = 0.6
    max_case_s: float = 15.0
    max_memory_fraction: float = 0.4
    max_memory_probe_bytes: int | None = 3 * 2**30
    second_probe_below_s: float = 3.0
    memory_causal: tuple[bool, ...] = (False,)
    memory_always: tuple[str, ...] = ("tiled", "sdpa")
    budget_s: float = 190.0
    never_skip_T: int = 2048
    ceiling_n: int | None = None
    seed: int = 0
    quick: bool = False
    notes: list[str] = field(default_factory=list)

    @classmethod
    def for_device(cls, device: str = "cpu", quick: bool = False) -> SuiteConfig:
        """The standard suite for ``device`` (``quick``: tiny sizes, seconds, for tests)."""
        dev = torch.device(device)
        if dev.type == "cuda":
            cfg = cls(
                device=str(dev),
                dtypes=("float32", "float16", "bfloat16"),
                T_time=(128, 256, 512, 1024, 2048, 4096, 8192),
                T_memory=(16384,),
                loops_T=(),
                impls=("course_torch", "tiled", "sdpa", "sdpa_math", "sdpa_flash", "sdpa_efficient",
                       "sdpa_cudnn"),
                warmup=3,
                min_repeats=5,
                max_repeats=50,
                target_s=0.1,
                max_case_s=10.0,
                max_memory_fraction=0.5,
                max_memory_probe_bytes=None,
                second_probe_below_s=1.0,
                budget_s=200.0,
            )
        else:
            cfg = cls(device=str(dev))
        if quick:
            cfg = replace(cfg, T_time=(32, 64), T_memory=(128,), loops_T=(8, 16) if cfg.loops_T else (),
                          warmup=1, min_repeats=2, max_repeats=3, target_s=0.01, block_size=16,
                          budget_s=60.0, ceiling_n=256, quick=True)
        return cfg


def _available_bytes() -> int | None:
    try:
        return _proc_meminfo_kib("MemAvailable") * 1024
    except OSError:
        return None


def _inputs(cfg: SuiteConfig, T: int, dtype: torch.dtype, device: torch.device):
    gen = torch.Generator().manual_seed(cfg.seed + T)
    shape = (cfg.B, cfg.H, T, cfg.d)
    return tuple(torch.randn(shape, generator=gen).to(device=device, dtype=dtype) for _ in range(3))


def _fmt_bytes(b: int | None) -> str:
    return "-" if b is None else f"{b / MiB:.1f} MiB"


def run_suite(config: SuiteConfig | dict[str, Any] | None = None,
              log: Callable[[str], None] | None = None,
              checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Run every case of ``config`` and return the results as a JSON-ready dict.

    One line per case is written to ``log`` (default: stdout, flushed) while it runs. With
    ``checkpoint``, each case is also appended to that file as one JSON line as soon as it is
    measured, so a run that is killed keeps what it measured.

    Returns:
        ``{"schema": 1, "config": {...}, "context": {...}, "ceilings": {dtype: {...}},
        "cases": [...], "skipped": [...], "wall_s": ...}``. Each case has ``impl``, ``label``,
        ``dtype``, ``B``, ``H``, ``T``, ``S``, ``d``, ``causal``, ``flops``, ``median_s``,
        ``times_s``, ``repeats``, ``gflops``, ``fraction_of_ceiling``, ``peak_extra_bytes``,
        ``extrapolated`` (True only for loops beyond ``loops_T``), ``memory_only``. ``skipped``
        lists each case not run and why.
    """
    if config is None:
        config = SuiteConfig()
    elif isinstance(config, dict):
        config = SuiteConfig(**config)
    cfg = config
    if log is None:
        def log(msg: str) -> None:
            print(msg, flush=True)

    device = torch.device(cfg.device)
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    context = machine_context(device)
    log(f"bench: {context['device']} | {context['cpu_model']} | torch {context['torch']} | "
        f"numpy {context['numpy']} | memory: {context['memory_method']}")

    ceilings: dict[str, Any] = {}
    for name in cfg.dtypes:
        try:
            ceilings[name] = matmul_ceiling(device, name, n=cfg.ceiling_n)
        except Exception as exc:  # e.g. a dtype the CPU cannot multiply
            ceilings[name] = {"dtype": name, "gflops": None, "error": f"{type(exc).__name__}: {exc}"}
        c = ceilings[name]
        extra = f" (torch {c['torch_gflops']:.1f}, NumPy {c['numpy_gflops']:.1f})" if c.get(
            "numpy_gflops") else ""
        log(f"bench: matmul ceiling {name}: "
            + (f"{c['gflops']:.1f} GFLOP/s{extra}" if c.get("gflops") else c.get("error", "?")))

    cases: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    on_gpu = device.type != "cpu"
    impls = [i for i in cfg.impls if not (on_gpu and i in ("loops", "numpy"))]
    for i in cfg.impls:
        if i not in impls:
            skipped.append({"impl": i, "reason": f"CPU-only implementation, not run on {device.type}"})
    broken: dict[tuple[str, str, bool], str] = {}  # (impl, dtype, causal) -> why it raised
    last_time: dict[tuple, tuple[int, float]] = {}  # (impl, dtype, causal) -> (T, median_s)
    last_mem: dict[tuple, tuple[int, int]] = {}
    n_case = 0

    def record(**kw: Any) -> dict[str, Any]:
        base = {"impl": kw["impl"], "label": IMPLEMENTATIONS[kw["impl"]], "device": device.type,
                "dtype": kw["dtype"], "B": cfg.B, "H": cfg.H, "T": kw["T"], "S": kw["T"], "d": cfg.d,
                "causal": kw["causal"],
                "flops": attention_flops(cfg.B, cfg.H, kw["T"], kw["T"], cfg.d, kw["causal"]),
                "median_s": None, "min_s": None, "times_s": [], "repeats": 0, "gflops": None,
                "peak_extra_bytes_probes": [],
                "fraction_of_ceiling": None, "peak_extra_bytes": None, "extrapolated": False,
                "memory_only": False}
        base.update({k: v for k, v in kw.items() if k in base})
        ceiling = (ceilings.get(kw["dtype"]) or {}).get("gflops")
        if base["median_s"]:
            base["gflops"] = base["flops"] / base["median_s"] / 1e9
            if ceiling:
                base["fraction_of_ceiling"] = base["gflops"] / ceiling
        return base

    def skip(impl: str, dtype: str, T: int, causal: bool, reason: str, what: str = "time") -> None:
        skipped.append({"impl": impl, "dtype": dtype, "T": T, "causal": causal, "what": what,
                        "reason": reason})
        log(f"  skip  {dtype:8s} {impl:14s} T={T:<5d} causal={int(causal)} {what}: {reason}")

    ckpt = None
    if checkpoint is not None:
        ckpt = Path(checkpoint)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_text(json.dumps({"context": context, "ceilings": ceilings}, default=str) + "\n")

    def line(c: dict[str, Any]) -> None:
        nonlocal n_case
        n_case += 1
        if ckpt is not None:
            with open(ckpt, "a") as f:
                f.write(json.dumps(c) + "\n")
        t = "-" if c["median_s"] is None else f"{c['median_s'] * 1e3:9.3f} ms"
        g = "-" if c["gflops"] is None else f"{c['gflops']:8.2f} GFLOP/s"
        f = "-" if c["fraction_of_ceiling"] is None else f"{c['fraction_of_ceiling']:.3f} of ceiling"
        tag = " (extrapolated)" if c["extrapolated"] else ""
        log(f"[{n_case:3d} {time.perf_counter() - start:6.1f}s] {c['dtype']:8s} {c['impl']:14s} "
            f"T={c['T']:<5d} causal={int(c['causal'])}  {t}  {g}  {f}  "
            f"extra {_fmt_bytes(c['peak_extra_bytes'])}{tag}")

    def fail(group: dict[str, Any], impl: str, exc: Exception, dtype_name: str, T: int, causal: bool,
             what: str) -> None:
        """Record why ``impl`` raised and drop it from ``group`` (and from later T, unless OOM)."""
        text = str(exc).strip()
        msg = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]
        group.pop(impl, None)
        if device.type == "cuda" and isinstance(exc, torch.cuda.OutOfMemoryError):  # pragma: no cover
            torch.cuda.empty_cache()
            skip(impl, dtype_name, T, causal, msg, what)
            return
        broken[(impl, dtype_name, causal)] = msg
        skip(impl, dtype_name, T, causal, "raised " + msg + " (not tried again for this dtype and "
             "causal setting)", what)

    def over_budget() -> bool:
        return time.perf_counter() - start > cfg.budget_s

    # Lengths in order: the timed ones up to never_skip_T (where the targets are read), then the
    # memory-only probes (the tiled target is one), then the largest timed lengths, which the
    # suite's time budget may cut short on a slow or busy machine.
    small = sorted(t for t in set(cfg.T_time) if t <= cfg.never_skip_T)
    all_T = small + sorted(set(cfg.T_memory) - set(small)) + sorted(
        t for t in set(cfg.T_time) - set(cfg.T_memory) if t > cfg.never_skip_T)
    for dtype_name in cfg.dtypes:
        dtype = _dtype(dtype_name)
        # 1. The pure-Python loops, really run at small T (CPU, float32 only).
        if "loops" in impls:
            if dtype != torch.float32:
                skip("loops", dtype_name, 0, False, "the loops run in Python floats (float64) only")
            else:
                for causal in cfg.causal:
                    ref = None
                    for T in cfg.loops_T:
                        q, k, v = _inputs(cfg, T, dtype, device)
                        fn = _make_fn("loops", q, k, v, causal, cfg.block_size)
                        tm = time_fn(fn, device, warmup=1 if T <= 64 else 0, repeats=cfg.min_repeats)
                        c = record(impl="loops", dtype=dtype_name, T=T, causal=causal,
                                   median_s=tm["median_s"], min_s=tm["min_s"], times_s=tm["times_s"],
                                   repeats=tm["repeats"])
                        cases.append(c)
                        line(c)
                        ref = (T, tm["median_s"])
                    if ref is None:
                        continue
                    for T in cfg.T_time:
                        if T <= ref[0]:
                            continue
                        c = record(impl="loops", dtype=dtype_name, T=T, causal=causal,
                                   median_s=ref[1] * (T / ref[0]) ** 2, extrapolated=True)
                        cases.append(c)
                        line(c)
        # 2. Everything else, T-major; at each (T, causal) the implementations are timed in
        #    rounds (one call of each in turn), so that a busy neighbour on a shared machine slows
        #    all of them alike and the ratios between them stay fair.
        for T in all_T:
            timed = T in cfg.T_time
            what = "time" if timed else "memory"
            q, k, v = _inputs(cfg, T, dtype, device)
            for causal in (cfg.causal if timed else cfg.memory_causal):
                group: dict[str, Callable[[], Any]] = {}
                for impl in impls:
                    if impl == "loops":
                        continue
                    if impl == "numpy" and dtype != torch.float32:
                        if T == all_T[0] and causal == cfg.causal[0]:
                            skip(impl, dtype_name, T, causal, "NumPy is run in float32 only")
                        continue
                    if (impl, dtype_name, causal) in broken:
                        continue
                    if over_budget() and not (not timed and impl in cfg.memory_always):
                        skip(impl, dtype_name, T, causal, f"suite time budget of {cfg.budget_s:.0f} s "
                             "used up", what)
                        continue
                    key = (impl, dtype_name, causal)
                    prev = last_time.get(key) or last_time.get((impl, dtype_name, False))
                    if prev is not None and T > cfg.never_skip_T and not (
                            not timed and impl in cfg.memory_always):
                        predicted = prev[1] * (T / prev[0]) ** 2
                        calls = 1 if not timed else cfg.warmup + cfg.min_repeats
                        if predicted * calls > cfg.max_case_s:
                            skip(impl, dtype_name, T, causal,
                                 f"predicted {predicted:.1f} s per call x {calls} calls (T^2 from "
                                 f"T={prev[0]}) exceeds the per-case budget of {cfg.max_case_s:.0f} s",
                                 what)
                            continue
                    pm = last_mem.get(key) or last_mem.get((impl, dtype_name, False))
                    avail = _available_bytes() if device.type == "cpu" else None
                    if device.type == "cuda":  # pragma: no cover - GPU only; run by tools/gpu_bench.sh
                        try:
                            avail = torch.cuda.mem_get_info(device)[0]
                        except RuntimeError:
                            avail = None
                    if pm is not None:
                        need = pm[1] * (T / pm[0]) ** 2
                        limit = cfg.max_memory_fraction * avail if avail is not None else None
                        if not timed and cfg.max_memory_probe_bytes is not None:
                            limit = min(limit or math.inf, cfg.max_memory_probe_bytes)
                        if limit is not None and need > limit:
                            skip(impl, dtype_name, T, causal,
                                 f"predicted peak {need / MiB:.0f} MiB (T^2 from {pm[1] / MiB:.0f} MiB at "
                                 f"T={pm[0]}) exceeds the limit of {limit / MiB:.0f} MiB (a fraction of "
                                 "the memory available, and the cap on memory-only probes: the page "
                                 "faults of a probe that size take tens of seconds on a small machine)",
                                 what)
                            continue
                    group[impl] = _make_fn(impl, q, k, v, causal, cfg.block_size)

                # Warm-up (a backend that does not exist for these inputs raises here).
                first: dict[str, float] = {}
                n_warm = cfg.warmup if timed else 0
                for _ in range(n_warm):
                    for impl, fn in list(group.items()):
                        try:
                            synchronize(device)
                            t0 = time.perf_counter()
                            fn()
                            synchronize(device)
                            first[impl] = time.perf_counter() - t0
                        except Exception as exc:
                            fail(group, impl, exc, dtype_name, T, causal, what)
                # Rounds: each implementation gets between min and max repeats, about target_s.
                want = {i: (max(cfg.min_repeats, min(cfg.max_repeats, math.ceil(cfg.target_s / max(
                    first.get(i, 1.0), 1e-9)))) if timed else 0) for i in group}
                times: dict[str, list[float]] = {i: [] for i in group}
                while any(len(times[i]) < want[i] for i in group):
                    for impl, fn in list(group.items()):
                        if len(times[impl]) >= want[impl]:
                            continue
                        try:
                            synchronize(device)
                            t0 = time.perf_counter()
                            fn()
                            synchronize(device)
                            times[impl].append(time.perf_counter() - t0)
                        except Exception as exc:
                            fail(group, impl, exc, dtype_name, T, causal, what)
                # Memory, one implementation at a time; a second probe where a call is cheap, and
                # the smaller of the two kept (the first can include the allocator growing its heap).
                for impl, fn in list(group.items()):
                    key = (impl, dtype_name, causal)
                    try:
                        t0 = time.perf_counter()
                        mems = [peak_extra_bytes(fn, device)]
                        probe_s = time.perf_counter() - t0
                        if mems[0] is not None and probe_s < cfg.second_probe_below_s:
                            mems.append(peak_extra_bytes(fn, device))
                    except Exception as exc:
                        fail(group, impl, exc, dtype_name, T, causal, what)
                        continue
                    mem = None if mems[0] is None else min(mems)
                    if timed:
                        med = statistics.median(times[impl])
                        last_time[key] = (T, min(times[impl]))  # least disturbed, for predictions
                        c = record(impl=impl, dtype=dtype_name, T=T, causal=causal, median_s=med,
                                   min_s=min(times[impl]), times_s=times[impl], repeats=len(times[impl]),
                                   peak_extra_bytes=mem)
                    else:
                        last_time[key] = (T, probe_s)  # for the budget prediction only (not reported)
                        c = record(impl=impl, dtype=dtype_name, T=T, causal=causal, peak_extra_bytes=mem,
                                   memory_only=True)
                    c["peak_extra_bytes_probes"] = mems
                    if mem is not None:
                        last_mem[key] = (T, mem)
                    cases.append(c)
                    line(c)
                del group
            del q, k, v
            if device.type == "cuda":  # pragma: no cover - GPU only; run by tools/gpu_bench.sh
                torch.cuda.empty_cache()

    # The ceiling again at the end: on a shared machine a neighbour may have slowed the first
    # measurement. The ceiling is the best of the two; fractions are recomputed against it.
    for name in cfg.dtypes:
        c = ceilings[name]
        if not c.get("gflops"):
            continue
        again = matmul_ceiling(device, name, n=cfg.ceiling_n)
        c["runs_gflops"] = [c["gflops"], again["gflops"]]
        if again["gflops"] > c["gflops"]:
            again["runs_gflops"] = c["runs_gflops"]
            ceilings[name] = c = again
        log(f"bench: matmul ceiling {name} again: {again['gflops']:.1f} GFLOP/s; using {c['gflops']:.1f}")
        for case in cases:
            if case["dtype"] == name and case["gflops"] is not None:
                case["fraction_of_ceiling"] = case["gflops"] / c["gflops"]

    wall = time.perf_counter() - start
    context["load_average_end"] = _loadavg()
    log(f"bench: {len(cases)} cases, {len(skipped)} skipped, {wall:.1f} s; load average at the start "
        f"{context['load_average']}, at the end {context['load_average_end']}")
    cfg_dict = asdict(cfg)
    return {
        "schema": 1,
        "config": cfg_dict,
        "context": context,
        "ceilings": ceilings,
        "cases": cases,
        "skipped": skipped,
        "broken": [{"impl": i, "dtype": d, "causal": c, "reason": r} for (i, d, c), r in broken.items()],
        "wall_s": wall,
    }


# ------------------------------------------------------------------------------------------------
# Reading the results: targets, plots, summary
# ------------------------------------------------------------------------------------------------
def _find(results: dict[str, Any], impl: str, T: int, causal: bool = False, dtype: str = "float32",
          key: str = "median_s") -> float | None:
    for c in results["cases"]:
        if (c["impl"], c["T"], c["causal"], c["dtype"]) == (impl, T, causal, dtype) and (
                c.get(key) is not None):
            return c[key]
    return None


#: (name, numerator, denominator, comparison, target, what) for :func:`target_ratios`.
TARGETS = [
    ("numpy_over_sdpa", ("numpy", False), ("sdpa", False), "<=", 2.0,
     "NumPy time / torch SDPA time, T=2048"),
    ("course_torch_over_sdpa", ("course_torch", False), ("sdpa", False), "<=", 2.5,
     "course PyTorch time / torch SDPA time, T=2048"),
    ("tiled_over_sdpa", ("tiled", False), ("sdpa", False), "<=", 1.5,
     "tiled time / torch SDPA time, T=2048"),
    ("tiled_noncausal_over_causal", ("tiled", False), ("tiled", True), ">=", 1.5,
     "non-causal tiled time / causal tiled time, T=2048"),
]


def target_ratios(results: dict[str, Any], T: int = 2048, memory_T: int = 8192,
                  dtype: str = "float32") -> list[dict[str, Any]]:
    """The course's targets, measured in ``results``: each with value, target, met (or None)."""
    out = []
    for name, (ni, nc), (di, dc), op, target, what in TARGETS:
        num = _find(results, ni, T, nc, dtype)
        den = _find(results, di, T, dc, dtype)
        value = num / den if num and den else None
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        out.append({"name": name, "what": what, "value": value, "op": op, "target": target, "met": met,
                    "numerator_s": num, "denominator_s": den})
    mem = _find(results, "tiled", memory_T, False, dtype, key="peak_extra_bytes")
    out.append({"name": "tiled_peak_extra_mib", "what": f"tiled extra peak memory, T={memory_T} (MiB)",
                "value": None if mem is None else mem / MiB, "op": "<=", "target": 64.0,
                "met": None if mem is None else mem / MiB <= 64.0})
    return out


#: Colour and marker of each implementation in the plots (also chapter 7's).
STYLE = {"loops": ("tab:gray", "o"), "numpy": ("tab:blue", "s"), "course_torch": ("tab:orange", "^"),
         "tiled": ("tab:green", "D"), "sdpa": ("tab:red", "v"), "sdpa_math": ("tab:purple", "P"),
         "sdpa_flash": ("tab:brown", "X"), "sdpa_efficient": ("tab:pink", "*"),
         "sdpa_cudnn": ("tab:olive", "h")}


def _series(results, impl, dtype, causal, key):
    pts = [(c["T"], c[key], c["extrapolated"]) for c in results["cases"]
           if c["impl"] == impl and c["dtype"] == dtype and c["causal"] == causal and c.get(key) is not None]
    return sorted(pts)


def plot_results(results: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the plots (PNG) into ``out_dir``; returns their paths. Needs matplotlib.

    Per dtype: ``time_vs_T_<dtype>.png`` (log-log, with an O(T^2) guide line; extrapolated loops
    dotted), ``memory_vs_T_<dtype>.png``; and ``gflops_T2048.png`` (bars, ceiling dashed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    device = results["context"]["device"]
    dtypes = list(results["config"]["dtypes"])
    impls = [i for i in IMPLEMENTATIONS if any(c["impl"] == i for c in results["cases"])]
    for dtype in dtypes:
        # Time against T.
        fig, ax = plt.subplots(figsize=(10, 5.5))
        ys = []
        for impl in impls:
            color, marker = STYLE[impl]
            for causal, ls in ((False, "-"), (True, "--")):
                pts = _series(results, impl, dtype, causal, "median_s")
                meas = [(t, y) for t, y, e in pts if not e]
                extra = [(t, y) for t, y, e in pts if e]
                if meas:
                    ax.plot(*zip(*meas), ls, color=color, marker=marker, ms=4,
                            label=f"{impl}{' causal' if causal else ''}")
                    ys += [y for _, y in meas]
                if extra:
                    xs = ([meas[-1][0]] if meas else []) + [t for t, _ in extra]
                    yy = ([meas[-1][1]] if meas else []) + [y for _, y in extra]
                    ax.plot(xs, yy, ":", color=color, alpha=0.6,
                            label=f"{impl}{' causal' if causal else ''} (extrapolated)")
                    ys += yy
        Ts = sorted({c["T"] for c in results["cases"] if c["median_s"] and c["dtype"] == dtype})
        if Ts and ys:
            ref = _series(results, "sdpa", dtype, False, "median_s") or []
            t0, y0 = (ref[-1][0], ref[-1][1]) if ref else (Ts[-1], min(ys))
            guide = [y0 * 0.5 * (t / t0) ** 2 for t in Ts]
            ax.plot(Ts, guide, color="black", lw=1, alpha=0.5, label=r"$\propto T^2$ guide")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T (B=1, H=8, d_head=64)")
        ax.set_ylabel("median time per call (s)")
        ax.set_title(f"Attention time against T, {dtype}, {device}\n(dashed: causal; dotted: extrapolated)",
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        p = out_dir / f"time_vs_T_{dtype}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)

        # Extra peak memory against T.
        fig, ax = plt.subplots(figsize=(7.5, 5))
        any_mem = False
        for impl in impls:
            color, marker = STYLE[impl]
            pts = _series(results, impl, dtype, False, "peak_extra_bytes")
            pts = [(t, y / MiB) for t, y, _ in pts if y > 0]
            if pts:
                any_mem = True
                ax.plot(*zip(*pts), "-", color=color, marker=marker, ms=4, label=impl)
        if any_mem:
            Ts = sorted({c["T"] for c in results["cases"] if c["dtype"] == dtype})
            score = [4 * results["config"]["B"] * results["config"]["H"] * t * t / MiB for t in Ts]
            ax.plot(Ts, score, color="black", lw=1, alpha=0.5,
                    label="one B·H·T·T float32 score matrix")
            ax.axhline(64, color="gray", ls=":", lw=1, label="64 MiB (tiled target at T=8192)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.legend(fontsize=7)
        ax.set_xlabel("sequence length T (non-causal)")
        ax.set_ylabel("measured extra peak memory (MiB)")
        ax.set_title(f"Extra peak memory against T, {dtype}, {device}\n{results['context']['memory_method']}",
                     fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        p = out_dir / f"memory_vs_T_{dtype}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)

    # GFLOP/s at T=2048.
    T_bar = 2048 if any(c["T"] == 2048 for c in results["cases"]) else max(
        (c["T"] for c in results["cases"] if c["gflops"]), default=None)
    if T_bar is not None:
        fig, ax = plt.subplots(figsize=(max(7.5, 1.2 * len(impls) * len(dtypes)), 5))
        labels, vals_nc, vals_c = [], [], []
        for dtype in dtypes:
            for impl in impls:
                nc = _find(results, impl, T_bar, False, dtype, "gflops")
                cc = _find(results, impl, T_bar, True, dtype, "gflops")
                if nc is None and cc is None:
                    continue
                extrap = any(c["extrapolated"] for c in results["cases"]
                             if c["impl"] == impl and c["T"] == T_bar and c["dtype"] == dtype)
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
                ax.text(len(labels) - 0.5, ceil, f"matmul ceiling {dtype} {ceil:.0f}", ha="right",
                        va="bottom", fontsize=7)
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("GFLOP/s (4·B·H·T²·d, half when causal)")
        ax.set_title(f"Throughput at T={T_bar}, {device} (* = extrapolated)", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        fig.tight_layout()
        p = out_dir / f"gflops_T{T_bar}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    return written


def _why(t: dict[str, Any], results: dict[str, Any]) -> str:
    """A short, measured explanation for a missed target."""
    if t["name"] == "numpy_over_sdpa":
        return ("NumPy builds the whole (B·H·T·T) score matrix and makes several passes over it (max, "
                "subtract, exp, sum, divide); SDPA's fused CPU flash kernel keeps tiles in cache.")
    if t["name"] == "course_torch_over_sdpa":
        return ("the course version materialises T×T scores and weights (see its extra peak memory) "
                "and every call faults in fresh T² temporaries.")
    if t["name"] == "tiled_over_sdpa":
        return ("the tiled version issues ~10 separate torch ops per key block from Python, each "
                "streaming the (T × block) tile through memory; SDPA fuses them in one C++ kernel.")
    if t["name"] == "tiled_noncausal_over_causal":
        return ("causal skips only the upper-triangle blocks; per-block overheads (rescaling acc, "
                "masks on diagonal blocks) do not halve.")
    return ("tiled_attention keeps a scaled copy of q and acc (B·H·T·d each) and, because the "
            "previous block's score tile p is still referenced while the next one is allocated, two "
            "(B·H·T·block) score tiles: 16 + 16 + 2 x 32 MiB at T=8192. Freeing s and p at the end of "
            "each block measured 66 MiB; folding the scale into the score tile would drop the q copy too.")


def write_summary(results: dict[str, Any], path: str | Path) -> Path:
    """Write ``summary.md``: context, target ratios (met or missed, by how much), a T=2048 table."""
    ctx = results["context"]
    lines = [f"# Attention benchmark: {ctx['device']}", ""]
    lines += [
        f"- Date: {ctx['date']}; wall time of the suite: {results['wall_s']:.0f} s"
        + (" (quick mode: tiny sizes, not for comparison)" if results["config"].get("quick") else ""),
        f"- CPU: {ctx['cpu_model']}, {ctx['cpu_count']} logical CPUs, torch threads {ctx['torch_threads']}",
        f"- torch {ctx['torch']}, NumPy {ctx['numpy']}, Python {ctx['python']}",
        "- BLAS: " + "; ".join(
            f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
            f"{b.get('num_threads')} threads)"
            for b in ctx["blas"] if "internal_api" in b),
    ]
    if ctx.get("gpu"):
        g = ctx["gpu"]
        if "memory_bytes" in g:
            lines.append(f"- GPU: {g['name']}, {g['memory_bytes'] / 2**30:.0f} GiB, CUDA {g['cuda']}, "
                         f"cuDNN {g['cudnn']}, TF32 matmul {g['tf32_matmul']}")
        else:
            lines.append(f"- GPU: {g}")
    if ctx.get("env"):
        lines.append("- Environment: " + ", ".join(f"{k}={v}" for k, v in ctx["env"].items()))
    lines.append(f"- Extra peak memory: {ctx['memory_method']}")
    la, la_end = ctx.get("load_average"), ctx.get("load_average_end")
    busy = False
    if la:
        busy = max(la[0], (la_end or [0])[0]) > (ctx.get("cpu_count") or 1) and ctx["device_type"] == "cpu"
        lines.append(f"- Load average (1, 5, 15 min) at the start {la}, at the end {la_end}"
                     + (": **the machine was busy with other work (load above its CPU count); "
                        "CPU timings are disturbed, re-run on a quiet machine before comparing**"
                        if busy else ""))
    for name, c in results["ceilings"].items():
        if c.get("gflops"):
            lines.append(f"- Measured matmul ceiling, {name}: {c['gflops']:.1f} GFLOP/s (n={c['n']}"
                         + (f"; torch {c['torch_gflops']:.1f}, NumPy {c['numpy_gflops']:.1f}"
                            if c.get("numpy_gflops") else "") + ")")
    lines += ["", "## Targets (float32, causal off unless said, measured in this run)", ""]
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
                why = _why(t, results)
                if busy and not t["name"].endswith("mib"):
                    why = (f"measured on a busy machine (load {la[0]} on {ctx.get('cpu_count')} CPUs), so "
                           f"the timing ratio is not trustworthy; on a quiet machine the usual cause: {why}")
                misses.append(f"- {t['what']}: {val} against {t['op']} {t['target']:g}; {why}")
        lines.append(f"| {t['what']} | {val} | {t['op']} {t['target']:g} | {res} |")
    if misses:
        lines += ["", "Missed targets, and why:", *misses]
    # Table at T=2048 (or the largest timed T).
    Ts = sorted({c["T"] for c in results["cases"] if c["median_s"] and not c["extrapolated"]})
    T_tab = 2048 if 2048 in Ts else (Ts[-1] if Ts else None)
    if T_tab is not None:
        lines += ["", f"## All implementations at T={T_tab} (B=1, H=8, d_head=64)", "",
                  "| dtype | implementation | causal | median ms | GFLOP/s | of ceiling | extra peak MiB |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for c in results["cases"]:
            if c["T"] != T_tab or c["median_s"] is None:
                continue
            mem = "-" if c["peak_extra_bytes"] is None else f"{c['peak_extra_bytes'] / MiB:.1f}"
            name = c["impl"] + (" (extrapolated)" if c["extrapolated"] else "")
            lines.append(f"| {c['dtype']} | {name} | {'yes' if c['causal'] else 'no'} | "
                         f"{c['median_s'] * 1e3:.2f} | {c['gflops']:.1f} | "
                         f"{(c['fraction_of_ceiling'] or 0):.3f} | {mem} |")
    mem_rows = [c for c in results["cases"] if c["peak_extra_bytes"] is not None and not c["causal"]]
    if mem_rows:
        T_mem = max(c["T"] for c in mem_rows)
        lines += ["", f"## Extra peak memory at the largest T ({T_mem}, non-causal)", ""]
        for c in mem_rows:
            if c["T"] == T_mem:
                lines.append(f"- {c['dtype']} {c['impl']}: {c['peak_extra_bytes'] / MiB:.1f} MiB")
    if results["skipped"]:
        lines += ["", "## Skipped", ""]
        for s in results["skipped"]:
            where = f" {s.get('dtype', '')} T={s['T']} causal={s.get('causal')}" if "T" in s else ""
            lines.append(f"- {s['impl']}{where} ({s.get('what', 'all')}): {s['reason']}")
    lines += ["", "Loops beyond T=" + str(max(results["config"]["loops_T"] or [0]))
              + " are extrapolated by the T² law from the largest measured T (`extrapolated: true`)."
              if results["config"]["loops_T"] else "", ""]
    path = Path(path)
    path.write_text("\n".join(lines))
    return path


def write_report(results: dict[str, Any], out_dir: str | Path, plots: bool = True) -> dict[str, Any]:
    """Write ``results.json``, ``summary.md`` and (if matplotlib imports) the plots into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    written = {"json": out_dir / "results.json", "summary": write_summary(results, out_dir / "summary.md"),
               "plots": []}
    if plots:
        try:
            written["plots"] = plot_results(results, out_dir)
        except Exception as exc:  # results.json and summary.md are already written
            print(f"bench: plots skipped ({type(exc).__name__}: {exc})", flush=True)
    return written


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` written by :func:`write_report`."""
    return json.loads(Path(path).read_text())

