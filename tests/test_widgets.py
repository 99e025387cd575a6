"""The two widget kinds: frames (linked in the browser) and live (with a visible note)."""

from __future__ import annotations

import ipywidgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from selfattention import widgets  # noqa: E402
from selfattention.plotting import heatmap  # noqa: E402

TOKENS = ["The", "cat", "sat", "on", "the", "mat"]


def weights_figure(query: int):
    rng = np.random.default_rng(query)
    w = rng.random((1, 6))
    fig, ax = plt.subplots(figsize=(4.2, 1.6))
    heatmap(w / w.sum(), [TOKENS[query]], TOKENS, ax=ax)
    return fig


def test_frames_one_image_per_label_and_a_jslink() -> None:
    w = widgets.frames_from_function(weights_figure, range(6), labels=TOKENS[:3] + ["a", "b", "c"],
                                     description="query")
    assert isinstance(w, ipywidgets.VBox)
    assert isinstance(w.stack, ipywidgets.Stack)
    assert len(w.stack.children) == 6
    assert all(isinstance(c, ipywidgets.Image) for c in w.stack.children)
    assert isinstance(w.control, ipywidgets.SelectionSlider)
    assert w.control.options == ("The", "cat", "sat", "a", "b", "c")
    (link,) = w.links
    assert isinstance(link, ipywidgets.widget_link.Link)  # jslink: runs in the browser, not in Python
    assert link.source == (w.control, "index")
    assert link.target == (w.stack, "selected_index")
    assert w.control in w.children and w.stack in w.children


def test_frames_closes_figures_and_respects_the_size_budget() -> None:
    before = len(plt.get_fignums())
    w = widgets.frames_from_function(weights_figure, range(6))
    assert len(plt.get_fignums()) == before
    for image in w.stack.children:
        assert bytes(image.value).startswith(b"\x89PNG")
        assert len(image.value) < widgets.MAX_FRAME_BYTES


def test_frames_initial_value_and_dropdown() -> None:
    w = widgets.frames_from_function(weights_figure, range(3), control="dropdown", value="2",
                                     title="Pick a word")
    assert isinstance(w.control, ipywidgets.Dropdown)
    assert w.control.index == 2 and w.stack.selected_index == 2
    assert "Pick a word" in w.children[0].value


def test_frames_accepts_png_bytes() -> None:
    png = widgets.figure_to_png(weights_figure(0))
    w = widgets.frames([png, png], ["a", "b"])
    assert [c.value for c in w.stack.children] == [png, png]


def test_frames_grid_links_every_inner_stack() -> None:
    w = widgets.frames_grid_from_function(lambda r, c: weights_figure(c), ["causal", "none"],
                                          range(3), row_description="mask",
                                          col_description="query")
    assert len(w.stack.children) == 2
    assert all(len(s.children) == 3 for s in w.stack.children)
    row, col = w.controls
    assert len(w.links) == 1 + 2
    assert w.links[0].source == (row, "index") and w.links[0].target == (w.stack, "selected_index")
    assert {link.target[0] for link in w.links[1:]} == set(w.stack.children)


def test_numpy_integers_are_ints() -> None:
    fig = matplotlib.figure.Figure(figsize=(1, 1))
    png = widgets.figure_to_png(fig, dpi=np.int64(20), colors=np.int32(8))
    assert png.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: widgets.frames([], []), ValueError, "images"),
        (lambda: widgets.frames([b"\x89PNG\r\n\x1a\nxx"], ["a", "b"]), ValueError, "labels"),
        (lambda: widgets.frames([b"\x89PNG\r\n\x1a\nxx"] * 2, ["a", "a"]), ValueError, "unique"),
        (lambda: widgets.frames([b"not a png"], ["a"]), ValueError, "images[0]"),
        (lambda: widgets.frames([42], ["a"]), TypeError, "images[0]"),
        (lambda: widgets.frames([b"\x89PNG\r\n\x1a\nxx"], "a"), TypeError, "labels"),
        (lambda: widgets.frames([b"\x89PNG\r\n\x1a\nxx"], ["a"], control="knob"), ValueError,
         "control"),
        (lambda: widgets.frames([b"\x89PNG\r\n\x1a\nxx"], ["a"], value="z"), ValueError, "value"),
        (lambda: widgets.frames([b"\x89PNG\r\n\x1a\n" + b"x" * 30_000], ["a"]), ValueError,
         "max_frame_bytes"),
        (lambda: widgets.frames_from_function(42, [1]), TypeError, "fn"),
        (lambda: widgets.frames_from_function(lambda v: "no figure", [1]), TypeError, "fn"),
        (lambda: widgets.frames_from_function(weights_figure, []), ValueError, "values"),
        (lambda: widgets.frames_grid([[b"\x89PNG\r\n\x1a\nx"], []], ["a", "b"], ["c"]),
         ValueError, "rows"),
        (lambda: widgets.figure_to_png("fig"), TypeError, "fig"),
        (lambda: widgets.figure_to_png(matplotlib.figure.Figure(), colors=300), ValueError,
         "colors: expected None or an int from 2 to 256, got 300"),
        (lambda: widgets.frames([b"\x89PNG\r\n\x1a\nxx"], ["a"], colors=1), ValueError, "colors"),
        (lambda: widgets.figure_to_png(matplotlib.figure.Figure(), dpi=72.0), TypeError,
         "dpi must be an int >= 1, got 72.0 (a float)"),
        (lambda: widgets.frames([b"\x89PNG\r\n\x1a\nxx"], ["a"], dpi=0), ValueError,
         "dpi must be an int >= 1, got 0"),
        (lambda: widgets.live(print), ValueError, "controls"),
        (lambda: widgets.live(42, s="x"), TypeError, "fn"),
        (lambda: widgets.live(print, s=3.5), TypeError, "s"),
    ],
)
def test_bad_input_names_the_argument(call, exc, words) -> None:
    with pytest.raises(exc, match=__import__("re").escape(words)):
        call()


def test_live_shows_a_visible_note_and_its_controls() -> None:
    calls = []
    w = widgets.live(lambda sentence, causal: calls.append((sentence, causal)),
                     sentence="The cat sat on the mat", causal=False)
    assert isinstance(w.note, ipywidgets.HTML)
    assert widgets.LIVE_NOTE in w.note.value
    assert "sa-live-note" in w.note._dom_classes
    assert w.children[0] is w.note
    assert isinstance(w.controls["sentence"], ipywidgets.Text)
    assert isinstance(w.controls["causal"], ipywidgets.Checkbox)
    assert isinstance(w.output, ipywidgets.Output)
    assert calls[0] == ("The cat sat on the mat", False)  # the default output is computed
    w.controls["sentence"].value = "A dog"
    assert calls[-1] == ("A dog", False)


def test_live_accepts_any_value_widget() -> None:
    slider = ipywidgets.IntSlider(value=3, min=1, max=8, description="n")
    seen = []
    w = widgets.live(lambda n: seen.append(n), n=slider)
    assert w.controls["n"] is slider and seen == [3]


def test_function_frames_close_each_figure_as_they_go():
    """25 frames must not leave figures open (matplotlib warns past 20 open figures)."""
    import warnings

    import matplotlib.pyplot as plt

    from selfattention.widgets import frames_grid_from_function

    def draw(r, c):
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.set_title(f"{r}{c}")
        assert len(plt.get_fignums()) <= 1  # the previous frame is already closed
        return fig

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        box = frames_grid_from_function(draw, range(5), range(5))
    assert len(box.stack.children) == 5
    assert plt.get_fignums() == []


def test_palette_frames_are_smaller_and_look_the_same():
    import io

    from PIL import Image

    full = widgets.figure_to_png(weights_figure(1))
    small = widgets.figure_to_png(weights_figure(1), colors=widgets.DEFAULT_COLORS)
    assert Image.open(io.BytesIO(full)).mode in ("RGB", "RGBA")
    assert Image.open(io.BytesIO(small)).mode == "P"
    assert len(small) < 0.6 * len(full)
    a = np.asarray(Image.open(io.BytesIO(full)).convert("RGB"), dtype=float)
    b = np.asarray(Image.open(io.BytesIO(small)).convert("RGB"), dtype=float)
    assert a.shape == b.shape and np.abs(a - b).mean() < 2.0  # out of 255: no visible change


def test_frames_use_the_palette_by_default():
    import io

    from PIL import Image

    box = widgets.frames_from_function(weights_figure, range(2))
    assert all(Image.open(io.BytesIO(img.value)).mode == "P" for img in box.stack.children)
    box = widgets.frames_from_function(weights_figure, range(2), colors=None)
    assert all(Image.open(io.BytesIO(img.value)).mode != "P" for img in box.stack.children)
