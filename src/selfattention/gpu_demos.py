"""Chapter 7's demonstrations, *Attention on the GPU*: a simulated asynchronous stream, the
first calls of a fresh process, live sweeps small enough for a laptop, SDPA's backends, and the
tiled algorithm walked through block by block.

The benchmark itself (FLOPs, timers, the memory probe, the implementations, the reference
results) is :mod:`selfattention.bench`; this module builds on it for what the chapter shows and
lets the reader run. Everything that measures returns the measured numbers; nothing here invents
or models a number.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from . import bench, tiled

__all__ = [
    "SimulatedStream",
    "aten_ops",
    "first_calls",
    "live_sweep",
    "plot_tiled_step",
    "sdpa_backends",
    "tiled_walkthrough",
]


# ------------------------------------------------------------------------------------------------
# Live measurements, small
# ------------------------------------------------------------------------------------------------
def live_sweep(
    impls: Sequence[str],
    Ts: Iterable[int],
    *,
    B: int = 1,
    H: int = 8,
    d: int = 64,
    is_causal: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    warmup: int = 1,
    repeats: int = 3,
    memory: bool = True,
    block_size: int = 128,
    ceiling_gflops: float | None = None,
    seed: int = 0,
    only: dict[str, Sequence[int]] | None = None,
) -> list[dict[str, Any]]:
    """Time (and probe the memory of) each implementation at each T; one dict per case.

    Uses :func:`~selfattention.bench.probes.time_fn` (warm-up, synchronisation on a GPU, median
    of ``repeats``) and :func:`~selfattention.bench.probes.peak_extra_bytes`. ``only`` restricts
    an implementation to some T (e.g. the loops to T <= 64).

    Returns:
        dicts with ``impl``, ``T``, ``causal`` (named as in a results file), ``median_s``,
        ``first_s``, ``times_s``, ``flops``, ``gflops``, ``fraction_of_ceiling`` (None without
        ``ceiling_gflops``), ``peak_extra_bytes`` (None when not probed or not measurable here).
    """
    device = torch.device(device)
    out = []
    for T in Ts:
        q, k, v = bench.make_inputs(B, H, T, d, device, dtype, seed)
        for impl in impls:
            if only and impl in only and T not in only[impl]:
                continue
            fn = bench.attention_fn(impl, q, k, v, is_causal=is_causal, block_size=block_size)
            t = bench.time_fn(fn, device, warmup=warmup, repeats=repeats)
            flops = bench.attention_flops(B, H, T, T, d, is_causal)
            gflops = flops / t["median_s"] / 1e9
            mem = bench.peak_extra_bytes(fn, device) if memory and impl != "loops" else None
            bench.settle(impl)  # before the next implementation's clock starts
            out.append(
                {
                    "impl": impl,
                    "T": T,
                    "causal": is_causal,
                    "median_s": t["median_s"],
                    "first_s": t["first_s"],
                    "times_s": t["times_s"],
                    "flops": flops,
                    "gflops": gflops,
                    "fraction_of_ceiling": gflops / ceiling_gflops if ceiling_gflops else None,
                    "peak_extra_bytes": mem,
                }
            )
    return out


_FIRST_CALLS_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
import_s = time.perf_counter() - t0
from selfattention import bench
impl, T, n, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
q, k, v = bench.make_inputs(1, 8, T, 64, device, torch.float32, 0)
times = bench.time_fn(bench.attention_fn(impl, q, k, v), device, warmup=0, repeats=n)["times_s"]
print(json.dumps({"import_s": import_s, "times_s": times}))
"""


def first_calls(
    impl: str = "sdpa", T: int = 1024, n: int = 10, device: str = "cpu", timeout: float = 120.0
) -> dict[str, Any]:
    """The times of the first ``n`` calls of ``impl`` in a *fresh* Python process (B=1, H=8, d=64).

    A fresh process is the only honest way to see a first call: in a notebook, earlier cells
    have already paid the one-time costs. Returns ``{"import_s": ..., "times_s": [...]}``.

    Raises:
        RuntimeError: the child process failed (its error output is in the message).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    proc = subprocess.run(
        [sys.executable, "-c", _FIRST_CALLS_SCRIPT, impl, str(T), str(n), device],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"first_calls({impl!r}) failed in the child process:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# Asynchronous launches, simulated on the CPU
# ------------------------------------------------------------------------------------------------
class SimulatedStream:
    """A toy CUDA stream on the CPU: :meth:`launch` queues work and returns at once; a worker
    thread runs the queue in order; :meth:`synchronize` waits until the queue is empty.

    It behaves like a GPU as far as timing goes: a clock read right after ``launch`` measures only
    the launch, as ``time.perf_counter()`` around a CUDA kernel does without
    ``torch.cuda.synchronize()``. Use it as a context manager, or call ``close()``.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._run, daemon=True)
        self._worker.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                fn, args = item
                fn(*args)
            finally:
                self._queue.task_done()

    def launch(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` and return immediately (like a kernel launch)."""
        self._queue.put((fn, args))

    def synchronize(self) -> None:
        """Block until every queued call has finished (like ``torch.cuda.synchronize()``)."""
        self._queue.join()

    def close(self) -> None:
        self.synchronize()
        self._queue.put(None)
        self._worker.join()

    def __enter__(self) -> SimulatedStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# Which kernel ran: SDPA's backends
# ------------------------------------------------------------------------------------------------
def aten_ops(fn: Callable[[], Any]) -> list[str]:
    """The ATen operators that ``fn()`` dispatched, in order, e.g.
    ``['_scaled_dot_product_flash_attention_for_cpu']``: what really ran under a composite op
    such as ``scaled_dot_product_attention``. Uses torch's Python dispatch mode.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Record(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    with _Record() as rec:
        fn()
    return rec.ops


def sdpa_backends(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False
) -> list[dict[str, Any]]:
    """Try torch's SDPA with each backend forced, on these inputs and this device.

    Returns one dict per backend that this torch knows (``MATH``, ``FLASH_ATTENTION``,
    ``EFFICIENT_ATTENTION``, ``CUDNN_ATTENTION``): ``backend``, ``ok``, ``kernel`` (the fused ATen
    op that ran, or ``'math (several ops)'``), ``error`` (the first line of the exception, or
    None) and ``why`` (torch's warnings explaining why the backend was refused, if any).
    The default choice (no backend forced) comes first, as backend ``'default'``.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    sdpa = torch.nn.functional.scaled_dot_product_attention
    rows = []
    for name in ("default", "MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):
        if name != "default" and not hasattr(SDPBackend, name):
            continue
        row: dict[str, Any] = {"backend": name, "ok": False, "kernel": None, "error": None, "why": []}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if name == "default":
                    ops = aten_ops(lambda: sdpa(q, k, v, is_causal=is_causal))
                else:
                    with sdpa_kernel(getattr(SDPBackend, name)):
                        ops = aten_ops(lambda: sdpa(q, k, v, is_causal=is_causal))
                fused = [o for o in ops if "attention" in o or "attn" in o]
                row["ok"] = True
                row["kernel"] = fused[0] if fused else "math (several ops: bmm, softmax, bmm)"
            except RuntimeError as exc:
                text = str(exc).strip()
                row["error"] = text.splitlines()[0] if text else type(exc).__name__
        row["why"] = [str(w.message).strip().splitlines()[0] for w in caught]
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# The tiled algorithm, step by step
# ------------------------------------------------------------------------------------------------
def tiled_walkthrough(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_size: int, is_causal: bool = False
) -> dict[str, Any]:
    """Run :func:`~selfattention.tiled.tiled_attention` on q (T, d), k (S, d), v (S, d) with a
    trace and collect what a picture of each step needs.

    Returns:
        dict with ``T``, ``S``, ``block_size``, ``is_causal``, ``out`` (T, d), ``trace`` (one dict
        per key block: ``keys``, ``rows``, ``skipped``, ``m``, ``l``), ``m`` and ``l`` as arrays
        (n_blocks + 1, T) with the state before any block in row 0 (m = -inf, l = 0).
    """
    if q.dim() != 2:
        raise ValueError(f"q must be (T, d) for the walk-through, got shape {tuple(q.shape)}.")
    trace: list = []
    out = tiled.tiled_attention(q, k, v, block_size=block_size, is_causal=is_causal, trace=trace)
    T, S = q.shape[0], k.shape[0]
    m = np.full((len(trace) + 1, T), -np.inf)
    l = np.zeros((len(trace) + 1, T))  # noqa: E741 (the paper's name)
    for i, step in enumerate(trace, start=1):
        m[i] = step["m"].double().numpy()
        l[i] = step["l"].double().numpy()
    return {
        "T": T,
        "S": S,
        "block_size": block_size,
        "is_causal": is_causal,
        "out": out,
        "trace": trace,
        "m": m,
        "l": l,
    }


_COLORS = {
    "todo": "#ffffff",
    "done": "#a6cee3",
    "current": "#1f78b4",
    "masked": "#fdbf6f",
    "skipped": "#bdbdbd",
}


def _cell_states(walk: dict[str, Any], step: int) -> np.ndarray:
    """(T, S) codes after ``step`` blocks: 0 todo, 1 done, 2 current, 3 masked, 4 skipped."""
    T, S = walk["T"], walk["S"]
    codes = np.zeros((T, S), dtype=int)
    for b, blk in enumerate(walk["trace"][:step]):
        s0, s1 = blk["keys"]
        r0 = blk["rows"][0]
        codes[:, s0:s1] = 2 if b == step - 1 else 1
        codes[:r0, s0:s1] = 4
        if walk["is_causal"]:
            i, j = np.arange(T)[:, None], np.arange(s0, s1)[None, :]
            masked = (j > i) & (i >= r0)
            codes[:, s0:s1][masked] = 3
    return codes


def plot_tiled_step(
    walk: dict[str, Any],
    step: int,
    rows: Sequence[int] = (0, 5, 10, 15),
    figsize: tuple[float, float] = (10.0, 3.1),
) -> Any:
    """One frame of the tiled walk-through: after ``step`` key blocks (0 = before any).

    Left: the (query, key) grid, coloured by what has happened to each score (not yet, done, the
    current block, masked on a diagonal block, skipped: never computed). Middle and right: the
    running maximum m and the running sum l of the chosen query ``rows``, block by block.
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    n = len(walk["trace"])
    if not 0 <= step <= n:
        raise ValueError(f"step must be in 0..{n}, got {step}.")
    T, S, bs = walk["T"], walk["S"], walk["block_size"]
    codes = _cell_states(walk, step)
    names = ["todo", "done", "current", "masked", "skipped"]
    cmap = ListedColormap([_COLORS[c] for c in names])
    fig, axes = plt.subplots(1, 3, figsize=figsize, gridspec_kw={"width_ratios": [1.15, 1, 1]})
    ax = axes[0]
    ax.imshow(codes, cmap=cmap, vmin=-0.5, vmax=4.5, interpolation="nearest", aspect="equal")
    for x in range(bs, S, bs):
        ax.axvline(x - 0.5, color="black", lw=1)
    ax.set_xticks(np.arange(-0.5, S, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, T, 1), minor=True)
    ax.grid(which="minor", color="white", lw=0.4)
    ax.tick_params(which="minor", length=0)
    ax.set_xticks(range(0, S, bs))
    ax.set_yticks(range(0, T, max(1, T // 4)))
    ax.set_xlabel(f"key j (blocks of {bs})")
    ax.set_ylabel("query i")
    colors = plt.cm.tab10(np.arange(len(rows)))
    for r, c in zip(rows, colors):
        ax.plot(-1.2, r, marker=">", color=c, ms=5, clip_on=False)
    if step == 0:
        title = "before any block"
    else:
        blk = walk["trace"][step - 1]
        (s0, s1), (r0, _) = blk["keys"], blk["rows"]
        title = f"block {step}/{n}: keys {s0}-{s1 - 1}" + (f", rows {r0}+" if r0 else "")
    ax.set_title(title, fontsize=9)
    handles = [
        Patch(color=_COLORS[c], label=lab)
        for c, lab in (
            ("done", "done"),
            ("current", "this block"),
            ("masked", "masked (-inf)"),
            ("skipped", "skipped"),
        )
    ]
    ax.legend(
        handles=handles,
        fontsize=6.5,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        frameon=False,
        handlelength=1,
    )

    xs = np.arange(n + 1)
    for ax, key, label in ((axes[1], "m", "running max m"), (axes[2], "l", "running sum l")):
        arr = walk[key]
        finite = arr[np.isfinite(arr)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        pad = 0.08 * (hi - lo or 1.0)
        for r, c in zip(rows, colors):
            y = arr[: step + 1, r]
            ok = np.isfinite(y) & ((y != 0) if key == "l" else True)
            ax.plot(xs[: step + 1][ok], y[ok], "-o", color=c, ms=3, lw=1.2)
            ax.plot(n, arr[n, r], "_", color=c, ms=10, mew=2, alpha=0.5)
            ax.annotate(
                f"row {r}",
                (n, arr[n, r]),
                xytext=(6, 0),
                textcoords="offset points",
                color=c,
                fontsize=7,
                va="center",
            )
        ax.set_xlim(-0.3, n + 1.1)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xticks(xs)
        ax.set_xlabel("key blocks processed")
        ax.set_ylabel(key)
        ax.set_title(label + " (ticks: final)", fontsize=9)
        ax.grid(alpha=0.3)
    mode = "causal" if walk["is_causal"] else "no mask"
    fig.suptitle(f"Tiled attention, online softmax: T={T}, S={S}, block {bs}, {mode}", fontsize=10)
    fig.tight_layout()
    return fig
