"""The benchmark suite: :class:`SuiteConfig` says what to run, :func:`run_suite` runs it.

A run goes in steps: measure the matmul ceiling; run the pure-Python loops at small T (and
extrapolate them by the T^2 law); then, length by length, *plan* which implementations to run
(predicting each one's time and memory from the previous length and skipping those over budget),
*time* them in interleaved rounds, and *probe* their memory; finally measure the ceiling again.
Every call is timed by :func:`~selfattention.bench.probes.time_fn`."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .impls import IMPLEMENTATIONS, attention_fn, make_inputs, settle
from .probes import (
    MiB,
    _dtype,
    _loadavg,
    attention_flops,
    available_bytes,
    machine_context,
    matmul_ceiling,
    peak_extra_bytes,
    time_fn,
)

__all__ = ["SuiteConfig", "run_suite"]


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
        impls: implementations to run, in order (see :data:`~selfattention.bench.impls.IMPLEMENTATIONS`).
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
                impls=(
                    "course_torch",
                    "tiled",
                    "sdpa",
                    "sdpa_math",
                    "sdpa_flash",
                    "sdpa_efficient",
                    "sdpa_cudnn",
                ),
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
            cfg = replace(
                cfg,
                T_time=(32, 64),
                T_memory=(128,),
                loops_T=(8, 16) if cfg.loops_T else (),
                warmup=1,
                min_repeats=2,
                max_repeats=3,
                target_s=0.01,
                block_size=16,
                budget_s=60.0,
                ceiling_n=256,
                quick=True,
            )
        return cfg


def _fmt_bytes(b: int | None) -> str:
    return "-" if b is None else f"{b / MiB:.1f} MiB"


def _call_s(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of ``fn``, synchronised on a GPU: one round of an interleaved timing."""
    return time_fn(fn, device, warmup=0, repeats=1)["median_s"]


def _measure_ceilings(cfg: SuiteConfig, device: torch.device, log: Callable[[str], None]) -> dict[str, Any]:
    """The matmul ceiling of each dtype, or why it could not be measured."""
    ceilings: dict[str, Any] = {}
    for name in cfg.dtypes:
        try:
            ceilings[name] = matmul_ceiling(device, name, n=cfg.ceiling_n)
        except Exception as exc:  # e.g. a dtype the CPU cannot multiply
            ceilings[name] = {"dtype": name, "gflops": None, "error": f"{type(exc).__name__}: {exc}"}
        c = ceilings[name]
        extra = (
            f" (torch {c['torch_gflops']:.1f}, NumPy {c['numpy_gflops']:.1f})"
            if c.get("numpy_gflops")
            else ""
        )
        log(
            f"bench: matmul ceiling {name}: "
            + (f"{c['gflops']:.1f} GFLOP/s{extra}" if c.get("gflops") else c.get("error", "?"))
        )
    return ceilings


def _lengths(cfg: SuiteConfig) -> list[int]:
    """Lengths in order: the timed ones up to never_skip_T (where the targets are read), then the
    memory-only probes (the tiled target is one), then the largest timed lengths, which the
    suite's time budget may cut short on a slow or busy machine."""
    small = sorted(t for t in set(cfg.T_time) if t <= cfg.never_skip_T)
    return (
        small
        + sorted(set(cfg.T_memory) - set(small))
        + sorted(t for t in set(cfg.T_time) - set(cfg.T_memory) if t > cfg.never_skip_T)
    )


class _Run:
    """The state of one run of the suite, and its steps."""

    def __init__(self, cfg: SuiteConfig, log: Callable[[str], None], checkpoint: str | Path | None):
        self.cfg, self.log = cfg, log
        self.device = torch.device(cfg.device)
        self.start = time.perf_counter()
        torch.manual_seed(cfg.seed)
        self.context = machine_context(self.device)
        ctx = self.context
        log(
            f"bench: {ctx['device']} | {ctx['cpu_model']} | torch {ctx['torch']} | "
            f"numpy {ctx['numpy']} | memory: {ctx['memory_method']}"
        )
        self.ceilings = _measure_ceilings(cfg, self.device, log)
        self.cases: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self.broken: dict[tuple[str, str, bool], str] = {}  # (impl, dtype, causal) -> why it raised
        self.last_time: dict[tuple, tuple[int, float]] = {}  # (impl, dtype, causal) -> (T, seconds)
        self.last_mem: dict[tuple, tuple[int, int]] = {}  # (impl, dtype, causal) -> (T, bytes)
        self.n_case = 0
        on_gpu = self.device.type != "cpu"
        self.impls = [i for i in cfg.impls if not (on_gpu and IMPLEMENTATIONS[i].cpu_only)]
        for i in cfg.impls:
            if i not in self.impls:
                self.skipped.append(
                    {"impl": i, "reason": f"CPU-only implementation, not run on {self.device.type}"}
                )
        self.ckpt = None
        if checkpoint is not None:
            self.ckpt = Path(checkpoint)
            self.ckpt.parent.mkdir(parents=True, exist_ok=True)
            self.ckpt.write_text(
                json.dumps({"context": self.context, "ceilings": self.ceilings}, default=str) + "\n"
            )

    # -- recording --------------------------------------------------------------------------------
    def record(self, **kw: Any) -> dict[str, Any]:
        """One case as stored in the results: ``kw`` fills the fields it names."""
        cfg = self.cfg
        base = {
            "impl": kw["impl"],
            "label": IMPLEMENTATIONS[kw["impl"]].label,
            "device": self.device.type,
            "dtype": kw["dtype"],
            "B": cfg.B,
            "H": cfg.H,
            "T": kw["T"],
            "S": kw["T"],
            "d": cfg.d,
            "causal": kw["causal"],
            "flops": attention_flops(cfg.B, cfg.H, kw["T"], kw["T"], cfg.d, kw["causal"]),
            "median_s": None,
            "min_s": None,
            "times_s": [],
            "repeats": 0,
            "gflops": None,
            "peak_extra_bytes_probes": [],
            "fraction_of_ceiling": None,
            "peak_extra_bytes": None,
            "extrapolated": False,
            "memory_only": False,
        }
        base.update({k: v for k, v in kw.items() if k in base})
        ceiling = (self.ceilings.get(kw["dtype"]) or {}).get("gflops")
        if base["median_s"]:
            base["gflops"] = base["flops"] / base["median_s"] / 1e9
            if ceiling:
                base["fraction_of_ceiling"] = base["gflops"] / ceiling
        return base

    def add(self, c: dict[str, Any]) -> None:
        """Keep a case, append it to the checkpoint and log its line."""
        self.cases.append(c)
        self.n_case += 1
        if self.ckpt is not None:
            with open(self.ckpt, "a") as f:
                f.write(json.dumps(c) + "\n")
        t = "-" if c["median_s"] is None else f"{c['median_s'] * 1e3:9.3f} ms"
        g = "-" if c["gflops"] is None else f"{c['gflops']:8.2f} GFLOP/s"
        f = "-" if c["fraction_of_ceiling"] is None else f"{c['fraction_of_ceiling']:.3f} of ceiling"
        tag = " (extrapolated)" if c["extrapolated"] else ""
        self.log(
            f"[{self.n_case:3d} {time.perf_counter() - self.start:6.1f}s] {c['dtype']:8s} "
            f"{c['impl']:14s} T={c['T']:<5d} causal={int(c['causal'])}  {t}  {g}  {f}  "
            f"extra {_fmt_bytes(c['peak_extra_bytes'])}{tag}"
        )

    def skip(self, impl: str, dtype: str, T: int, causal: bool, reason: str, what: str = "time") -> None:
        self.skipped.append(
            {"impl": impl, "dtype": dtype, "T": T, "causal": causal, "what": what, "reason": reason}
        )
        self.log(f"  skip  {dtype:8s} {impl:14s} T={T:<5d} causal={int(causal)} {what}: {reason}")

    def fail(
        self,
        group: dict[str, Any],
        impl: str,
        exc: Exception,
        dtype_name: str,
        T: int,
        causal: bool,
        what: str,
    ) -> None:
        """Record why ``impl`` raised and drop it from ``group`` (and from later T, unless OOM)."""
        text = str(exc).strip()
        msg = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]
        group.pop(impl, None)
        if self.device.type == "cuda" and isinstance(exc, torch.cuda.OutOfMemoryError):  # pragma: no cover
            torch.cuda.empty_cache()
            self.skip(impl, dtype_name, T, causal, msg, what)
            return
        self.broken[(impl, dtype_name, causal)] = msg
        self.skip(
            impl,
            dtype_name,
            T,
            causal,
            "raised " + msg + " (not tried again for this dtype and causal setting)",
            what,
        )

    def over_budget(self) -> bool:
        return time.perf_counter() - self.start > self.cfg.budget_s

    # -- step 1: the loops ------------------------------------------------------------------------
    def run_loops(self, dtype_name: str) -> None:
        """The pure-Python loops, really run at small T (CPU, float32 only), then extrapolated."""
        cfg = self.cfg
        if _dtype(dtype_name) != torch.float32:
            self.skip("loops", dtype_name, 0, False, "the loops run in Python floats (float64) only")
            return
        for causal in cfg.causal:
            ref = None
            for T in cfg.loops_T:
                q, k, v = make_inputs(cfg.B, cfg.H, T, cfg.d, self.device, torch.float32, cfg.seed)
                fn = attention_fn("loops", q, k, v, is_causal=causal, block_size=cfg.block_size)
                tm = time_fn(fn, self.device, warmup=1 if T <= 64 else 0, repeats=cfg.min_repeats)
                self.add(
                    self.record(
                        impl="loops",
                        dtype=dtype_name,
                        T=T,
                        causal=causal,
                        median_s=tm["median_s"],
                        min_s=tm["min_s"],
                        times_s=tm["times_s"],
                        repeats=tm["repeats"],
                    )
                )
                ref = (T, tm["median_s"])
            if ref is None:
                continue
            for T in cfg.T_time:
                if T > ref[0]:
                    self.add(
                        self.record(
                            impl="loops",
                            dtype=dtype_name,
                            T=T,
                            causal=causal,
                            median_s=ref[1] * (T / ref[0]) ** 2,
                            extrapolated=True,
                        )
                    )

    # -- step 2: plan, predict and skip -----------------------------------------------------------
    def admit(self, impl: str, dtype_name: str, T: int, causal: bool, timed: bool, first_case: bool) -> bool:
        """Whether ``impl`` runs at this length: not broken, within the suite's time budget, and
        predicted (T^2 from the previous length) within the per-case time and memory limits."""
        cfg, what = self.cfg, "time" if timed else "memory"
        if impl == "numpy" and _dtype(dtype_name) != torch.float32:
            if first_case:
                self.skip(impl, dtype_name, T, causal, "NumPy is run in float32 only")
            return False
        if (impl, dtype_name, causal) in self.broken:
            return False
        always = not timed and impl in cfg.memory_always
        if self.over_budget() and not always:
            self.skip(impl, dtype_name, T, causal, f"suite time budget of {cfg.budget_s:.0f} s used up", what)
            return False
        key = (impl, dtype_name, causal)
        prev = self.last_time.get(key) or self.last_time.get((impl, dtype_name, False))
        if prev is not None and T > cfg.never_skip_T and not always:
            predicted = prev[1] * (T / prev[0]) ** 2
            calls = 1 if not timed else cfg.warmup + cfg.min_repeats
            if predicted * calls > cfg.max_case_s:
                self.skip(
                    impl,
                    dtype_name,
                    T,
                    causal,
                    f"predicted {predicted:.1f} s per call x {calls} calls (T^2 from "
                    f"T={prev[0]}) exceeds the per-case budget of {cfg.max_case_s:.0f} s",
                    what,
                )
                return False
        pm = self.last_mem.get(key) or self.last_mem.get((impl, dtype_name, False))
        if pm is None:
            return True
        avail = self._available()
        need = pm[1] * (T / pm[0]) ** 2
        limit = cfg.max_memory_fraction * avail if avail is not None else None
        if not timed and cfg.max_memory_probe_bytes is not None:
            limit = min(limit or math.inf, cfg.max_memory_probe_bytes)
        if limit is not None and need > limit:
            self.skip(
                impl,
                dtype_name,
                T,
                causal,
                f"predicted peak {need / MiB:.0f} MiB (T^2 from {pm[1] / MiB:.0f} MiB at "
                f"T={pm[0]}) exceeds the limit of {limit / MiB:.0f} MiB (a fraction of "
                "the memory available, and the cap on memory-only probes: the page "
                "faults of a probe that size take tens of seconds on a small machine)",
                what,
            )
            return False
        return True

    def _available(self) -> int | None:
        if self.device.type == "cuda":  # pragma: no cover - GPU only; run by tools/gpu_bench.sh
            try:
                return torch.cuda.mem_get_info(self.device)[0]
            except RuntimeError:
                return None
        return available_bytes() if self.device.type == "cpu" else None

    # -- step 3: time a round ---------------------------------------------------------------------
    def time_rounds(
        self, group: dict[str, Callable[[], Any]], dtype_name: str, T: int, causal: bool, timed: bool
    ) -> dict[str, list[float]]:
        """Warm-up calls, then rounds of one call of each implementation in turn, so that a busy
        neighbour on a shared machine slows all of them alike and the ratios between them stay
        fair. Each gets between min and max repeats, about ``target_s`` seconds. A backend that
        does not exist for these inputs raises here and leaves the group."""
        cfg, what = self.cfg, "time" if timed else "memory"
        first: dict[str, float] = {}
        for _ in range(cfg.warmup if timed else 0):
            for impl, fn in list(group.items()):
                try:
                    first[impl] = self._call_and_settle(impl, fn)
                except Exception as exc:
                    self.fail(group, impl, exc, dtype_name, T, causal, what)
        want = {
            i: (
                max(
                    cfg.min_repeats,
                    min(cfg.max_repeats, math.ceil(cfg.target_s / max(first.get(i, 1.0), 1e-9))),
                )
                if timed
                else 0
            )
            for i in group
        }
        times: dict[str, list[float]] = {i: [] for i in group}
        while any(len(times[i]) < want[i] for i in group):
            for impl, fn in list(group.items()):
                if len(times[impl]) >= want[impl]:
                    continue
                try:
                    times[impl].append(self._call_and_settle(impl, fn))
                except Exception as exc:
                    self.fail(group, impl, exc, dtype_name, T, causal, what)
        return times

    def _call_and_settle(self, impl: str, fn: Callable[[], Any]) -> float:
        """One timed call, then :func:`~selfattention.bench.impls.settle` (skipped in quick mode,
        whose microsecond timings are not for comparison)."""
        seconds = _call_s(fn, self.device)
        if not self.cfg.quick:
            settle(impl)
        return seconds

    # -- step 4: probe memory ---------------------------------------------------------------------
    def probe_memory(
        self,
        group: dict[str, Callable[[], Any]],
        times: dict[str, list[float]],
        dtype_name: str,
        T: int,
        causal: bool,
        timed: bool,
    ) -> None:
        """Memory, one implementation at a time, and the case recorded. A second probe where a call
        is cheap, and the smaller of the two kept (the first can include the allocator growing its
        heap)."""
        what = "time" if timed else "memory"
        for impl, fn in list(group.items()):
            key = (impl, dtype_name, causal)
            try:
                t0 = time.perf_counter()
                mems = [peak_extra_bytes(fn, self.device)]
                probe_s = time.perf_counter() - t0
                if mems[0] is not None and probe_s < self.cfg.second_probe_below_s:
                    mems.append(peak_extra_bytes(fn, self.device))
            except Exception as exc:
                self.fail(group, impl, exc, dtype_name, T, causal, what)
                continue
            mem = None if mems[0] is None else min(mems)
            if timed:
                ts = times[impl]
                self.last_time[key] = (T, min(ts))  # least disturbed, for predictions
                c = self.record(
                    impl=impl,
                    dtype=dtype_name,
                    T=T,
                    causal=causal,
                    median_s=statistics.median(ts),
                    min_s=min(ts),
                    times_s=ts,
                    repeats=len(ts),
                    peak_extra_bytes=mem,
                )
            else:
                self.last_time[key] = (T, probe_s)  # for the budget prediction only (not reported)
                c = self.record(
                    impl=impl, dtype=dtype_name, T=T, causal=causal, peak_extra_bytes=mem, memory_only=True
                )
            c["peak_extra_bytes_probes"] = mems
            if mem is not None:
                self.last_mem[key] = (T, mem)
            self.add(c)

    def run_length(self, dtype_name: str, T: int, first_T: bool) -> None:
        """Every implementation but the loops at one length: plan, time, probe."""
        cfg = self.cfg
        timed = T in cfg.T_time
        q, k, v = make_inputs(cfg.B, cfg.H, T, cfg.d, self.device, _dtype(dtype_name), cfg.seed)
        for causal in cfg.causal if timed else cfg.memory_causal:
            first_case = first_T and causal == cfg.causal[0]
            group = {
                impl: attention_fn(impl, q, k, v, is_causal=causal, block_size=cfg.block_size)
                for impl in self.impls
                if impl != "loops" and self.admit(impl, dtype_name, T, causal, timed, first_case)
            }
            times = self.time_rounds(group, dtype_name, T, causal, timed)
            self.probe_memory(group, times, dtype_name, T, causal, timed)
            del group
        del q, k, v
        if self.device.type == "cuda":  # pragma: no cover - GPU only; run by tools/gpu_bench.sh
            torch.cuda.empty_cache()

    # -- step 5: the ceiling again ----------------------------------------------------------------
    def recheck_ceilings(self) -> None:
        """The ceiling again at the end: on a shared machine a neighbour may have slowed the first
        measurement. The ceiling is the best of the two; fractions are recomputed against it."""
        for name in self.cfg.dtypes:
            c = self.ceilings[name]
            if not c.get("gflops"):
                continue
            again = matmul_ceiling(self.device, name, n=self.cfg.ceiling_n)
            c["runs_gflops"] = [c["gflops"], again["gflops"]]
            if again["gflops"] > c["gflops"]:
                again["runs_gflops"] = c["runs_gflops"]
                self.ceilings[name] = c = again
            self.log(
                f"bench: matmul ceiling {name} again: {again['gflops']:.1f} GFLOP/s; using {c['gflops']:.1f}"
            )
            for case in self.cases:
                if case["dtype"] == name and case["gflops"] is not None:
                    case["fraction_of_ceiling"] = case["gflops"] / c["gflops"]


def run_suite(
    config: SuiteConfig | dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    checkpoint: str | Path | None = None,
) -> dict[str, Any]:
    """Run every case of ``config`` and return the results as a JSON-ready dict.

    One line per case is written to ``log`` (default: stdout, flushed) while it runs. With
    ``checkpoint``, each case is also appended to that file as one JSON line as soon as it is
    measured, so a run that is killed keeps what it measured.

    Returns:
        The results, a dict with ``schema`` (1), ``config``, ``context``, ``ceilings`` (per dtype),
        ``cases``, ``skipped``, ``broken`` and ``wall_s``. Each case has ``impl``, ``label``,
        ``dtype``, ``B``, ``H``, ``T``, ``S``, ``d``, ``causal``, ``flops``, ``median_s``,
        ``times_s``, ``repeats``, ``gflops``, ``fraction_of_ceiling``, ``peak_extra_bytes``,
        ``extrapolated`` (True only for loops beyond ``loops_T``), ``memory_only``. ``skipped``
        lists each case not run and why.
    """
    if config is None:
        config = SuiteConfig()
    elif isinstance(config, dict):
        config = SuiteConfig(**config)
    if log is None:

        def log(msg: str) -> None:
            print(msg, flush=True)

    run = _Run(config, log, checkpoint)
    lengths = _lengths(config)
    for dtype_name in config.dtypes:
        if "loops" in run.impls:
            run.run_loops(dtype_name)
        for T in lengths:
            run.run_length(dtype_name, T, first_T=T == lengths[0])
    run.recheck_ceilings()

    wall = time.perf_counter() - run.start
    context = run.context
    context["load_average_end"] = _loadavg()
    log(
        f"bench: {len(run.cases)} cases, {len(run.skipped)} skipped, {wall:.1f} s; load average at the "
        f"start {context['load_average']}, at the end {context['load_average_end']}"
    )
    return {
        "schema": 1,
        "config": asdict(config),
        "context": context,
        "ceilings": run.ceilings,
        "cases": run.cases,
        "skipped": run.skipped,
        "broken": [{"impl": i, "dtype": d, "causal": c, "reason": r} for (i, d, c), r in run.broken.items()],
        "wall_s": wall,
    }
