"""Shared plotting helpers, so that every chapter draws attention the same way.

One colormap (``CMAP``), weights on a fixed 0..1 scale by default, keys along x, queries along y,
a colorbar and a title on every heatmap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["CMAP", "heatmap", "heatmaps", "to_numpy"]

#: The colormap used for attention weights throughout the course.
CMAP = "viridis"


def to_numpy(x: Any, name: str = "weights") -> np.ndarray:
    """Convert a NumPy array, a nested list or a torch tensor (any device) to a float array.

    Raises:
        TypeError: ``x`` cannot be converted to a numeric array.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected a numeric array, got {type(x).__name__}") from exc
    return arr


def _check_labels(labels: Sequence[Any] | None, n: int, name: str) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        raise TypeError(f"{name}: expected a sequence of labels, got a str")
    labels = [str(label) for label in labels]
    if len(labels) != n:
        raise ValueError(f"{name}: expected {n} labels, got {len(labels)}")
    return labels


def heatmap(
    weights: Any,
    row_labels: Sequence[Any] | None = None,
    col_labels: Sequence[Any] | None = None,
    *,
    ax: Any = None,
    title: str | None = "attention weights",
    xlabel: str = "key",
    ylabel: str = "query",
    annotate: bool = True,
    fmt: str = ".2f",
    cmap: str = CMAP,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    colorbar: bool = True,
) -> Any:
    """Draw a (T, S) matrix, such as attention weights, as a labelled heatmap.

    Args:
        weights: a 2-D array-like (T, S): NumPy, nested lists or a torch tensor.
        row_labels: T labels for the rows (queries), e.g. tokens.
        col_labels: S labels for the columns (keys).
        ax: the matplotlib Axes to draw on (default: a new figure sized to the matrix).
        title: the Axes title (``None`` for none).
        xlabel, ylabel: axis labels (default ``"key"`` and ``"query"``).
        annotate: write each value in its cell (only when the matrix has at most 16 x 16 cells).
        fmt: format of the annotations.
        cmap: colormap (default ``CMAP``).
        vmin, vmax: colour scale (default 0..1, right for weights; ``None`` to autoscale, e.g.
            for raw scores).
        colorbar: add a colorbar.

    Returns:
        The matplotlib Axes.

    Raises:
        TypeError: ``weights`` is not numeric or a label list is a plain string.
        ValueError: ``weights`` is not 2-D or is empty, or a label count does not match.
    """
    import matplotlib.pyplot as plt

    w = to_numpy(weights)
    if w.ndim != 2:
        raise ValueError(f"weights: expected a 2-D array (T, S), got shape {w.shape}")
    if w.size == 0:
        raise ValueError(f"weights: expected a non-empty array, got shape {w.shape}")
    t, s = w.shape
    rows = _check_labels(row_labels, t, "row_labels")
    cols = _check_labels(col_labels, s, "col_labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.55 * s + (0.8 if colorbar else 0), 0.8 + 0.45 * t))
    im = ax.imshow(w, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(s))
    ax.set_yticks(range(t))
    ax.set_xticklabels(cols if cols is not None else range(s), rotation=45 if cols else 0,
                       ha="right" if cols else "center")
    ax.set_yticklabels(rows if rows is not None else range(t))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if annotate and t <= 16 and s <= 16:
        lo = np.nanmin(w) if vmin is None else vmin
        hi = np.nanmax(w) if vmax is None else vmax
        mid = (lo + hi) / 2
        for i in range(t):
            for j in range(s):
                v = w[i, j]
                ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7,
                        color="black" if v > mid else "white")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def heatmaps(
    weights: Any,
    row_labels: Sequence[Any] | None = None,
    col_labels: Sequence[Any] | None = None,
    *,
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    ncols: int = 4,
    annotate: bool = False,
    **kwargs: Any,
) -> Any:
    """Draw a stack of (T, S) matrices, e.g. one per head (H, T, S), side by side.

    Args:
        weights: a 3-D array-like (H, T, S).
        row_labels, col_labels: as in :func:`heatmap`.
        titles: one title per panel (default ``"head 0"``, ``"head 1"``, ...).
        suptitle: a title for the whole figure.
        ncols: panels per row.
        annotate: write values in the cells (off by default: panels are small).
        **kwargs: passed to :func:`heatmap` (``cmap``, ``vmin``, ``vmax``, ...).

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: ``weights`` is not 3-D, ``titles`` has the wrong length or ``ncols`` < 1.
    """
    import matplotlib.pyplot as plt

    w = to_numpy(weights)
    if w.ndim != 3:
        raise ValueError(f"weights: expected a 3-D array (H, T, S), got shape {w.shape}")
    if not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols: expected a positive int, got {ncols!r}")
    h, t, s = w.shape
    if h == 0:
        raise ValueError(f"weights: expected at least one panel, got shape {w.shape}")
    if titles is None:
        titles = [f"head {i}" for i in range(h)]
    elif len(titles) != h:
        raise ValueError(f"titles: expected {h} titles, got {len(titles)}")
    nc = min(ncols, h)
    nr = -(-h // nc)
    fig, axes = plt.subplots(nr, nc, figsize=(nc * (0.9 + 0.4 * s), nr * (0.9 + 0.4 * t)),
                             squeeze=False, constrained_layout=True)
    for i, ax in enumerate(axes.flat):
        if i >= h:
            ax.axis("off")
            continue
        heatmap(w[i], row_labels, col_labels, ax=ax, title=titles[i], annotate=annotate,
                colorbar=False, **kwargs)
    im = axes.flat[0].images[0]
    fig.colorbar(im, ax=axes, fraction=0.03, pad=0.02)
    if suptitle:
        fig.suptitle(suptitle)
    return fig
