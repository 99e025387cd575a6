"""Shared plotting helpers: labelled heatmaps with a consistent colormap."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from selfattention import plotting  # noqa: E402

TOKENS = ["The", "cat", "sat", "on", "the", "mat"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_heatmap_labels_titles_colorbar_and_annotations() -> None:
    w = np.full((6, 6), 1 / 6)
    ax = plotting.heatmap(w, TOKENS, TOKENS, title="uniform")
    assert ax.get_title() == "uniform"
    assert ax.get_xlabel() == "key" and ax.get_ylabel() == "query"
    assert [t.get_text() for t in ax.get_xticklabels()] == TOKENS
    assert [t.get_text() for t in ax.get_yticklabels()] == TOKENS
    assert len(ax.texts) == 36 and ax.texts[0].get_text() == "0.17"
    assert len(ax.figure.axes) == 2  # the heatmap and its colorbar
    image = ax.images[0]
    assert image.get_cmap().name == plotting.CMAP
    assert image.get_clim() == (0.0, 1.0)


def test_heatmap_draws_on_a_given_axes_without_extras() -> None:
    fig, ax = plt.subplots()
    out = plotting.heatmap([[0.2, 0.8]], ["q"], ["a", "b"], ax=ax, annotate=False, colorbar=False,
                           title=None, vmin=None, vmax=None)
    assert out is ax and len(ax.texts) == 0 and len(fig.axes) == 1 and ax.get_title() == ""


def test_heatmap_accepts_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    w = torch.softmax(torch.randn(3, 4, requires_grad=True), dim=-1)
    ax = plotting.heatmap(w)
    np.testing.assert_allclose(ax.images[0].get_array(), w.detach().numpy(), rtol=1e-6)


def test_heatmaps_one_panel_per_head() -> None:
    w = np.random.default_rng(0).random((3, 4, 4))
    fig = plotting.heatmaps(w, TOKENS[:4], TOKENS[:4], ncols=2, suptitle="heads")
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == ["head 0", "head 1", "head 2"]


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: plotting.heatmap(np.ones(3)), ValueError, "weights"),
        (lambda: plotting.heatmap(np.ones((0, 3))), ValueError, "weights"),
        (lambda: plotting.heatmap(np.ones((2, 2)), ["a"]), ValueError, "row_labels"),
        (lambda: plotting.heatmap(np.ones((2, 2)), None, ["a", "b", "c"]), ValueError,
         "col_labels"),
        (lambda: plotting.heatmap(np.ones((2, 2)), "ab"), TypeError, "row_labels"),
        (lambda: plotting.heatmap([["x", object()]]), TypeError, "weights"),
        (lambda: plotting.heatmaps(np.ones((2, 2))), ValueError, "weights"),
        (lambda: plotting.heatmaps(np.ones((2, 2, 2)), titles=["a"]), ValueError, "titles"),
        (lambda: plotting.heatmaps(np.ones((2, 2, 2)), ncols=0), ValueError, "ncols"),
    ],
)
def test_bad_input_names_the_argument(call, exc, words) -> None:
    with pytest.raises(exc, match=words):
        call()
