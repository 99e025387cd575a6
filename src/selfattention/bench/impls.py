"""The attention implementations the benchmark and chapter 7 time: one table, one callable each.

:data:`IMPLEMENTATIONS` is the single table of them. Each entry holds a long label (tables and
the suite's results), a short one (plots and chapter 7's printouts), a colour and a marker (every
plot of them), whether it runs on the CPU only, and, for the forced SDPA backends, the backend's
name. :func:`attention_fn` turns a key of the table into a zero-argument callable, and
:func:`make_inputs` makes the random q, k, v they all share.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .. import loops, multihead, tiled, vectorized

__all__ = ["IMPLEMENTATIONS", "STYLE", "Implementation", "attention_fn", "make_inputs", "settle"]


@dataclass(frozen=True)
class Implementation:
    """One implementation under test.

    Attributes:
        label: the long name, with the library function it calls (tables, results files).
        short: the short name (plot legends, chapter 7's printouts).
        color, marker: its colour and marker in every plot.
        cpu_only: it runs on the CPU only (Python lists, NumPy arrays).
        sdpa_backend: the ``torch.nn.attention.SDPBackend`` member it forces, or None.
        settle_s: seconds to wait, untimed, after its calls before timing another implementation
            (:func:`settle`).
            OpenBLAS (under NumPy) keeps its worker threads spinning for about 0.1 s after a
            product; on a 2-core machine a torch call started in that time shares a core with
            a spinning thread and measured 1.5-1.9x slower (the next call's time, not NumPy's).
    """

    label: str
    short: str
    color: str
    marker: str
    cpu_only: bool = False
    sdpa_backend: str | None = None
    settle_s: float = 0.0

    def __str__(self) -> str:
        return self.label


#: key -> :class:`Implementation`. ``loops`` and ``numpy`` run on the CPU only; the ``sdpa_*``
#: backends other than math are tried on CUDA (a backend that raises is recorded as skipped, with why).
IMPLEMENTATIONS: dict[str, Implementation] = {
    "loops": Implementation("Python loops (loops.attention)", "Python loops", "tab:gray", "o", cpu_only=True),
    "numpy": Implementation(
        "NumPy (vectorized.attention)", "NumPy", "tab:blue", "s", cpu_only=True, settle_s=0.2
    ),
    "course_torch": Implementation(
        "course PyTorch (multihead.scaled_dot_product_attention)", "course PyTorch", "tab:orange", "^"
    ),
    "tiled": Implementation(
        "tiled online softmax (tiled.tiled_attention, block 128)", "tiled (online softmax)", "tab:green", "D"
    ),
    "sdpa": Implementation("torch SDPA, default backend", "torch SDPA (default)", "tab:red", "v"),
    "sdpa_math": Implementation(
        "torch SDPA, MATH backend forced", "torch SDPA, MATH", "tab:purple", "P", sdpa_backend="MATH"
    ),
    "sdpa_flash": Implementation(
        "torch SDPA, FLASH_ATTENTION backend",
        "torch SDPA, FLASH",
        "tab:brown",
        "X",
        sdpa_backend="FLASH_ATTENTION",
    ),
    "sdpa_efficient": Implementation(
        "torch SDPA, EFFICIENT_ATTENTION backend",
        "torch SDPA, EFFICIENT",
        "tab:pink",
        "*",
        sdpa_backend="EFFICIENT_ATTENTION",
    ),
    "sdpa_cudnn": Implementation(
        "torch SDPA, CUDNN_ATTENTION backend",
        "torch SDPA, CUDNN",
        "tab:olive",
        "h",
        sdpa_backend="CUDNN_ATTENTION",
    ),
}

def settle(impl: str) -> None:
    """Wait out ``impl``'s ``settle_s`` (untimed), so that its library's idle-spinning threads do
    not slow whatever is timed next; every timing of several implementations calls it."""
    if IMPLEMENTATIONS[impl].settle_s > 0:
        time.sleep(IMPLEMENTATIONS[impl].settle_s)


#: Colour and marker of each implementation in the plots (read from :data:`IMPLEMENTATIONS`).
STYLE: dict[str, tuple[str, str]] = {key: (i.color, i.marker) for key, i in IMPLEMENTATIONS.items()}


def make_inputs(
    B: int,
    H: int,
    T: int,
    d: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[torch.Tensor, ...]:
    """Random q, k, v, each (B, H, T, d), drawn on the CPU from ``seed + T`` (so each length has its
    own inputs, the same on every device) and then moved to ``device`` and ``dtype``."""
    gen = torch.Generator().manual_seed(seed + T)
    return tuple(torch.randn(B, H, T, d, generator=gen).to(device=device, dtype=dtype) for _ in range(3))


def attention_fn(
    impl: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    is_causal: bool = False,
    block_size: int = 128,
) -> Callable[[], Any]:
    """A zero-argument callable computing attention of q (B, H, T, d), k, v (B, H, S, d) with
    ``impl`` (a key of :data:`IMPLEMENTATIONS`).

    Conversions (to lists for the loops, to NumPy) are done here, once, so that a timer measures
    the attention only. Used by the suite and by chapter 7's live measurements.

    Raises:
        ValueError: an unknown ``impl``, or ``loops``/``numpy`` asked for a tensor not on the CPU.
        RuntimeError: the SDPA backend does not exist in this torch.
    """
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be one of {sorted(IMPLEMENTATIONS)}, got {impl!r}.")
    if IMPLEMENTATIONS[impl].cpu_only and q.device.type != "cpu":
        raise ValueError(f"impl={impl!r} runs on the CPU only, but q is on {q.device}.")
    if impl == "loops":
        B, H = q.shape[:2]
        qkv = [(q[b, h].tolist(), k[b, h].tolist(), v[b, h].tolist()) for b in range(B) for h in range(H)]
        # The pure-Python level names its flag ``causal``.
        return lambda: [loops.attention(Q, K, V, causal=is_causal) for Q, K, V in qkv]
    if impl == "numpy":
        qn, kn, vn = q.numpy(), k.numpy(), v.numpy()
        return lambda: vectorized.attention(qn, kn, vn, causal=is_causal)
    if impl == "course_torch":
        return lambda: multihead.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    if impl == "tiled":
        return lambda: tiled.tiled_attention(q, k, v, block_size=block_size, is_causal=is_causal)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    name = IMPLEMENTATIONS[impl].sdpa_backend
    if name is None:
        return lambda: sdpa(q, k, v, is_causal=is_causal)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, name, None)
    if backend is None:
        raise RuntimeError(f"SDPBackend.{name} does not exist in torch {torch.__version__}")

    def run() -> torch.Tensor:
        with sdpa_kernel(backend):
            return sdpa(q, k, v, is_causal=is_causal)

    return run
