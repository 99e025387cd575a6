"""Facts that the prose of chapters 2 and 3 states in Markdown.

Strict nbval compares the *outputs* of the chapters' code cells, but not the numbers written in
their text ("the scores of *cat* are 0.030, 0.027, 0.242, ...", "The and the get the same row",
"the unscaled weights collapse onto one key"). If the running example (``data``) or the library
changes, these tests fail and point at the sentence to rewrite.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from selfattention import data, loops, vectorized

ROOT = Path(__file__).resolve().parents[1]


def markdown(chapter: str) -> str:
    """The Markdown text of a chapter (``"03"`` -> chapters/03_*.ipynb), cells joined."""
    path = next((ROOT / "chapters").glob(f"{chapter}_*.ipynb"))
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


@pytest.fixture(scope="module")
def qkv():
    X = data.embeddings()
    W_q, W_k, W_v = data.example_projections()
    return X @ W_q, X @ W_k, X @ W_v


def test_running_example_shapes_in_the_text(qkv):
    Q, K, V = qkv
    assert data.TOKENS == ("The", "cat", "sat", "on", "the", "mat")
    assert Q.shape == K.shape == V.shape == (6, 4)  # "d_k = 4, so sqrt(d_k) = 2"


def test_the_and_the_share_every_row(qkv):
    # Chapter 2: "rows 0 (The) and 4 (the) are identical ... identical scores, weights, outputs".
    Q, K, V = qkv
    out, w = vectorized.attention(Q, K, V)
    for M in (Q, K, V, out, w):
        np.testing.assert_array_equal(M[0], M[4])


def test_cat_scores_quoted_in_chapter_3(qkv):
    # Chapter 3 quotes chapter 2's scores of 'cat': (0.030, 0.027, 0.242, 0.213, 0.030, 0.187).
    Q, K, _ = qkv
    scores = Q @ K.T / 2.0
    assert np.round(scores[1], 3).tolist() == [0.030, 0.027, 0.242, 0.213, 0.030, 0.187]
    # ... and the sentence quotes what the library computes (a rewritten sentence is checked too)
    assert ", ".join(f"{x:.3f}" for x in scores[1]) in markdown("03")


def test_scores_and_weights_ranges_quoted(qkv):
    # Chapter 2: "all within +-0.3"; chapter 3: "weights between about 0.13 and 0.20".
    Q, K, V = qkv
    scores = Q @ K.T / 2.0
    assert np.abs(scores).max() < 0.3
    _, w = vectorized.attention(Q, K, V)
    assert 0.13 <= w.min() and w.max() <= 0.20
    assert "all within $\\pm 0.3$" in markdown("02")
    assert "weights between about $0.13$ and $0.20$" in markdown("03")


def test_overflow_threshold_quoted():
    # Chapter 2: "exp(x) overflows for x > 709.78" (float64) and "in 16-bit ... as soon as x > 11".
    assert math.log(np.finfo(np.float64).max) == pytest.approx(709.78, abs=0.01)
    assert 11 < math.log(float(np.finfo(np.float16).max)) < 11.1
    with pytest.raises(OverflowError):
        math.exp(1000.0)


def test_causal_count_in_the_exercise():
    # Chapter 2, exercise "Counting a causal layer": T(T+1) d multiply-adds, 7/12 of the full layer at T=6.
    T, d = 6, 4
    pairs = sum(1 for i in range(T) for j in range(T) if j <= i)
    causal = pairs * 2 * d
    assert causal == T * (T + 1) * d
    assert causal / loops.count_multiply_adds(T, T, d, d) == pytest.approx(7 / 12)


def test_sharpening_widget_query_shows_the_described_trend():
    # Chapter 3's d_k widget (seed 144): unscaled collapses onto one key at d_k = 512 while the
    # scaled weights keep a spread at every width, as the text says.
    rng = np.random.default_rng(144)
    q = rng.standard_normal(512)
    K = rng.standard_normal((6, 512))
    widths = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    raw = [vectorized.softmax(K[:, :d] @ q[:d]).max() for d in widths]
    scaled = [vectorized.softmax(K[:, :d] @ q[:d] / np.sqrt(d)).max() for d in widths]
    assert raw[0] < 0.4 and raw[-1] > 0.98
    assert max(scaled) < 0.5
