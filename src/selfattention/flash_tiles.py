"""Which tiles FlashAttention-2's forward visits: the kernel's loop bounds, in plain Python.

A tile is one (query block, key block) pair. The forward kernel (``flash_kernels._fwd_kernel``)
gives each query block one program; for it, key blocks fall in three kinds:

* ``FULL``: inside the sequence and visible to every query of the block: computed with no mask;
* ``MASKED``: the diagonal block(s) under a causal mask, or the ragged last block: computed, then
  masked;
* ``SKIPPED``: every key is in the future of every query of the block: never loaded.

:func:`tile_schedule` reproduces the kernel's bounds (``full_end`` and ``hi``) so chapter 9 can
count and draw them; tests check it against the rule "key j is visible to query i iff j <= i".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SKIPPED, FULL, MASKED = 0, 1, 2


def tile_schedule(T: int, S: int, block_m: int, block_n: int, is_causal: bool) -> np.ndarray:
    """(ceil(T / block_m), ceil(S / block_n)) int array of SKIPPED / FULL / MASKED per tile."""
    for name, value in (("T", T), ("S", S), ("block_m", block_m), ("block_n", block_n)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    n_m, n_n = math.ceil(T / block_m), math.ceil(S / block_n)
    out = np.full((n_m, n_n), SKIPPED, dtype=np.int64)
    for pid in range(n_m):
        start_m = pid * block_m
        full_end, hi = (S // block_n) * block_n, S
        if is_causal:
            full_end = min(full_end, ((start_m + 1) // block_n) * block_n)
            hi = min(S, start_m + block_m)
        for start_n in range(0, full_end, block_n):
            out[pid, start_n // block_n] = FULL
        for start_n in range(full_end, hi, block_n):
            out[pid, start_n // block_n] = MASKED
    return out


def plot_tile_schedule(schedule: np.ndarray, title: str, query_block: int | None = None, ax: Any = None):
    """Draw a schedule: grey skipped, blue full, orange masked; one query block's row outlined."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch, Rectangle

    colors = ["#e8e8e8", "#4c72b0", "#dd8452"]
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.imshow(schedule, cmap=ListedColormap(colors), vmin=0, vmax=2)
    ax.set_xlabel("key block (program's loop)")
    ax.set_ylabel("query block (one program each)")
    ax.set_title(title, fontsize=10)
    ax.set_xticks(range(schedule.shape[1]))
    ax.set_yticks(range(schedule.shape[0]))
    if query_block is not None:
        ax.add_patch(
            Rectangle((-0.5, query_block - 0.5), schedule.shape[1], 1, fill=False, lw=2.5, edgecolor="black")
        )
    ax.legend(
        handles=[Patch(color=c, label=lab) for c, lab in zip(colors, ("skipped", "full", "masked"))],
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=8,
        frameon=False,
    )
    return ax.figure
