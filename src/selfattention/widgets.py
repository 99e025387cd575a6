"""Widgets that work where the reader is: in Jupyter, in Colab and on the static website.

Two kinds, and only two:

``frames`` (and ``frames_from_function``, ``frames_grid``, ``frames_grid_from_function``)
    Precompute one small PNG per setting, put them in an ``ipywidgets.Stack`` and link a slider (or
    a dropdown) to the stack's ``selected_index`` with ``ipywidgets.jslink``. The link runs in the
    browser, so the control really switches pictures on the static site, where there is no kernel,
    as well as in every live front end.

``live``
    Python callbacks for inputs that cannot be precomputed (the reader types a sentence). On the
    static site the callbacks cannot run, so the widget always carries a visible one-line note
    saying so, and shows the output for its default inputs.

Example::

    import matplotlib.pyplot as plt
    from selfattention.widgets import frames_from_function

    def draw(query):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.bar(range(6), weights[query])
        return fig

    frames_from_function(draw, range(6), labels=tokens, description="query")
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ipywidgets
import traitlets

from ._validate import require_int

__all__ = [
    "DEFAULT_COLORS",
    "DEFAULT_DPI",
    "LIVE_NOTE",
    "MAX_FRAME_BYTES",
    "figure_to_png",
    "frames",
    "frames_from_function",
    "frames_grid",
    "frames_grid_from_function",
    "live",
]

#: Resolution used to turn matplotlib figures into frames.
DEFAULT_DPI = 80
#: Palette size of the PNG frames: a page stores every frame, and 128 colours keep plots and
#: colour maps as they look while making each frame two to three times smaller.
DEFAULT_COLORS = 128
#: Largest PNG accepted as one frame, in bytes (keeps the pages light).
MAX_FRAME_BYTES = 25_000
#: The note every ``live`` widget shows.
LIVE_NOTE = (
    "Live widget: runs in Jupyter or Colab; on the static site you see its default output."
)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CONTROLS = ("slider", "dropdown")


def _is_figure(obj: Any) -> bool:
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return False
    return isinstance(obj, Figure)


def figure_to_png(fig: Any, *, dpi: int = DEFAULT_DPI, close: bool = True,
                  colors: int | None = None) -> bytes:
    """Render a matplotlib ``Figure`` to PNG bytes, optionally as a small palette PNG.

    Args:
        fig: a ``matplotlib.figure.Figure``.
        dpi: resolution in dots per inch (default ``DEFAULT_DPI`` = 80).
        close: close the figure afterwards so that it is not also shown inline.
        colors: ``None`` for a full-colour PNG, or a palette size (2 to 256): the image is
            quantised to that many colours (median cut) and saved optimised. Plots with flat
            colours lose nothing visible and shrink two- to threefold; ``DEFAULT_COLORS`` (the
            widgets' default) also keeps colour maps smooth.

    Returns:
        The PNG file as bytes.

    Raises:
        TypeError: ``fig`` is not a matplotlib Figure.
        TypeError: ``dpi`` or ``colors`` is not an int (NumPy integers are fine).
        ValueError: ``dpi`` is not positive, or ``colors`` is not None or in 2..256.
    """
    if not _is_figure(fig):
        raise TypeError(f"fig: expected a matplotlib Figure, got {type(fig).__name__}")
    require_int("dpi", dpi)  # NumPy integers are fine; a float or a bool is a TypeError
    _check_colors(colors)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    if colors is None:
        return buf.getvalue()
    from PIL import Image

    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(out, format="png", optimize=True)
    return out.getvalue()


def _check_colors(colors: Any) -> None:
    if colors is not None and not 2 <= require_int("colors", colors, minimum=None) <= 256:
        raise ValueError(f"colors: expected None or an int from 2 to 256, got {colors!r}")


def _to_png(image: Any, where: str, dpi: int, max_frame_bytes: int, close: bool,
            colors: int | None) -> bytes:
    if _is_figure(image):
        png = figure_to_png(image, dpi=dpi, close=close, colors=colors)
    elif isinstance(image, (bytes, bytearray)):
        png = bytes(image)
        if not png.startswith(_PNG_SIGNATURE):
            raise ValueError(f"{where}: bytes given are not a PNG file (bad signature)")
    else:
        raise TypeError(
            f"{where}: expected a matplotlib Figure or PNG bytes, got {type(image).__name__}"
        )
    if len(png) > max_frame_bytes:
        raise ValueError(
            f"{where}: the frame is {len(png)} bytes as PNG, over max_frame_bytes="
            f"{max_frame_bytes}; use a smaller figsize, a lower dpi or fewer annotations"
        )
    return png


def _render(fig: Any, kwargs: dict[str, Any]) -> bytes:
    """A figure of a ``*_from_function`` widget as PNG, with that widget's own options."""
    return figure_to_png(fig, dpi=kwargs.get("dpi", DEFAULT_DPI), close=kwargs.get("close_figures", True),
                         colors=kwargs.get("colors", DEFAULT_COLORS))


def _check_labels(labels: Any, n: int, name: str) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Iterable):
        raise TypeError(f"{name}: expected a sequence of strings, got {type(labels).__name__}")
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"{name}: expected {n} labels (one per frame), got {len(labels)}")
    out = [str(label) for label in labels]
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: labels must be unique, got {out}")
    return out


def _check_common(control: str, dpi: int, max_frame_bytes: int, colors: int | None) -> None:
    _check_colors(colors)
    if control not in _CONTROLS:
        raise ValueError(f"control: expected one of {_CONTROLS}, got {control!r}")
    require_int("dpi", dpi)
    require_int("max_frame_bytes", max_frame_bytes)


def _initial_index(value: str | None, labels: list[str], name: str) -> int:
    if value is None:
        return 0
    if str(value) not in labels:
        raise ValueError(f"{name}: {value!r} is not one of the labels {labels}")
    return labels.index(str(value))


def _make_control(
    kind: str, labels: list[str], description: str, index: int
) -> ipywidgets.SelectionSlider | ipywidgets.Dropdown:
    style = {"description_width": "initial"}
    if kind == "slider":
        return ipywidgets.SelectionSlider(
            options=labels,
            index=index,
            description=description,
            continuous_update=True,
            style=style,
            layout=ipywidgets.Layout(width="min(100%, 32em)"),
        )
    return ipywidgets.Dropdown(
        options=labels, index=index, description=description, style=style
    )


class _FrameImage(ipywidgets.Image):
    """An ``Image`` that carries a text alternative in its ``tooltip``.

    The widget front end copies ``tooltip`` to the element's ``title`` only when the model has an
    empty ``description``, which ``Image`` lacks, so one is added. On the website,
    ``_ext/course_ext.py`` copies the title of every widget image to its ``alt`` attribute.
    """

    description = traitlets.Unicode("").tag(sync=True)


def _image(png: bytes, alt: str = "") -> ipywidgets.Image:
    return _FrameImage(value=png, format="png", tooltip=alt or None,
                       layout=ipywidgets.Layout(max_width="100%"))


def _alt(title: str | None, *parts: tuple[str, str]) -> str:
    """Alt text of one frame: the widget's title, then ``description = label`` per control."""
    what = ", ".join(f"{d} = {v}" if d else v for d, v in parts)
    return f"{title}: {what}" if title else f"Figure for {what}"


def _box(title: str | None, controls: list[ipywidgets.Widget], stack: ipywidgets.Stack):
    children: list[ipywidgets.Widget] = []
    if title:
        children.append(ipywidgets.HTML(value=f"<strong>{title}</strong>"))
    children.extend(controls)
    children.append(stack)
    box = ipywidgets.VBox(children)
    box.add_class("sa-frames")
    return box


def frames(
    images: Sequence[Any],
    labels: Sequence[Any],
    *,
    description: str = "",
    title: str | None = None,
    control: str = "slider",
    value: str | None = None,
    dpi: int = DEFAULT_DPI,
    max_frame_bytes: int = MAX_FRAME_BYTES,
    close_figures: bool = True,
    colors: int | None = DEFAULT_COLORS,
) -> ipywidgets.VBox:
    """A control that flips through precomputed frames, in the browser.

    Each image becomes an ``ipywidgets.Image`` in an ``ipywidgets.Stack``; the control's ``index``
    is ``jslink``-ed to the stack's ``selected_index``, so moving it switches the frame without a
    kernel (the static site) and with one (Jupyter, Colab).

    Args:
        images: one frame per label: matplotlib ``Figure`` objects (rendered at ``dpi`` and
            closed) or PNG bytes.
        labels: the control's option names, one per frame, unique.
        description: the control's label (e.g. ``"query"``).
        title: an optional bold line above the control.
        control: ``"slider"`` (a ``SelectionSlider``) or ``"dropdown"`` (a ``Dropdown``).
        value: the label shown first (default: the first).
        dpi: resolution used for figures.
        max_frame_bytes: largest PNG accepted per frame (default 25 000 bytes).
        close_figures: close figures once rendered.
        colors: palette size of the frames rendered from figures (default ``DEFAULT_COLORS``),
            or ``None`` for full-colour PNGs; see :func:`figure_to_png`.

    Returns:
        A ``VBox`` with attributes ``control``, ``stack`` and ``links`` (the ``jslink``).

    Raises:
        TypeError: ``images`` holds something that is neither a Figure nor PNG bytes, or
            ``labels`` is not a sequence.
        ValueError: no images, a label count that differs from the image count, repeated labels,
            an unknown ``control`` or ``value``, or a frame over ``max_frame_bytes``.
    """
    _check_common(control, dpi, max_frame_bytes, colors)
    if isinstance(images, (str, bytes)) or not isinstance(images, Iterable):
        raise TypeError(f"images: expected a sequence of figures, got {type(images).__name__}")
    images = list(images)
    if not images:
        raise ValueError("images: expected at least one frame, got 0")
    label_list = _check_labels(labels, len(images), "labels")
    index = _initial_index(value, label_list, "value")
    pngs = [
        _to_png(img, f"images[{i}]", dpi, max_frame_bytes, close_figures, colors)
        for i, img in enumerate(images)
    ]
    stack = ipywidgets.Stack(
        [_image(png, _alt(title, (description, lab))) for png, lab in zip(pngs, label_list)],
        selected_index=index,
    )
    ctrl = _make_control(control, label_list, description, index)
    link = ipywidgets.jslink((ctrl, "index"), (stack, "selected_index"))
    box = _box(title, [ctrl], stack)
    box.control, box.stack, box.links = ctrl, stack, (link,)
    return box


def frames_from_function(
    fn: Callable[[Any], Any],
    values: Iterable[Any],
    *,
    labels: Sequence[Any] | None = None,
    **kwargs: Any,
) -> ipywidgets.VBox:
    """Call ``fn(value)`` for each value and flip through the figures it returns.

    Args:
        fn: a function of one value that returns a matplotlib ``Figure`` (it is closed after
            rendering).
        values: the settings to precompute, in control order.
        labels: option names, one per value (default: ``str(value)``).
        **kwargs: passed to :func:`frames` (``description``, ``title``, ``control``, ``value``,
            ``dpi``, ``max_frame_bytes``, ``colors``).

    Returns:
        The widget built by :func:`frames`.

    Raises:
        TypeError: ``fn`` is not callable, or it returned something other than a Figure.
        ValueError: see :func:`frames`.
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable returning a Figure, got {type(fn).__name__}")
    values = list(values)
    if not values:
        raise ValueError("values: expected at least one value, got 0")
    figures = []
    for v in values:
        fig = fn(v)
        if not _is_figure(fig):
            raise TypeError(
                f"fn: expected fn({v!r}) to return a matplotlib Figure, got {type(fig).__name__}"
            )
        # Render now and close: keeping every figure open until the end makes matplotlib warn
        # (and hold memory) for widgets of more than 20 frames.
        figures.append(_render(fig, kwargs))
    if labels is None:
        labels = [str(v) for v in values]
    return frames(figures, labels, **kwargs)


def frames_grid(
    images: Sequence[Sequence[Any]],
    row_labels: Sequence[Any],
    col_labels: Sequence[Any],
    *,
    row_description: str = "",
    col_description: str = "",
    title: str | None = None,
    row_control: str = "dropdown",
    col_control: str = "slider",
    dpi: int = DEFAULT_DPI,
    max_frame_bytes: int = MAX_FRAME_BYTES,
    close_figures: bool = True,
    colors: int | None = DEFAULT_COLORS,
) -> ipywidgets.VBox:
    """Two controls over a grid of precomputed frames, both linked in the browser.

    ``images[r][c]`` is shown when the row control reads ``row_labels[r]`` and the column control
    reads ``col_labels[c]``. It is built as a ``Stack`` of row ``Stack`` s: the row control is linked
    to the outer stack and the column control to every inner stack, so no arithmetic is needed in
    the browser. Keep grids small: every frame is stored in the page.

    Args:
        images: a rectangular grid (rows of equal length) of Figures or PNG bytes.
        row_labels, col_labels: option names of the two controls.
        row_description, col_description: the controls' labels.
        title: an optional bold line above the controls.
        row_control, col_control: ``"slider"`` or ``"dropdown"`` for each control.
        dpi, max_frame_bytes, close_figures, colors: as in :func:`frames`.

    Returns:
        A ``VBox`` with attributes ``controls`` (row, column), ``stack`` (the outer stack) and
        ``links`` (one per inner stack plus one for the outer stack).

    Raises:
        TypeError, ValueError: as in :func:`frames`, and for a ragged grid.
    """
    _check_common(row_control, dpi, max_frame_bytes, colors)
    _check_common(col_control, dpi, max_frame_bytes, colors)
    if isinstance(images, (str, bytes)) or not isinstance(images, Iterable):
        raise TypeError(f"images: expected a grid (list of rows), got {type(images).__name__}")
    rows = [list(r) for r in images]
    if not rows or not rows[0]:
        raise ValueError("images: expected at least one row and one column")
    n_cols = len(rows[0])
    for r, row in enumerate(rows):
        if len(row) != n_cols:
            raise ValueError(
                f"images: rows must have equal length, row 0 has {n_cols}, row {r} has {len(row)}"
            )
    rl = _check_labels(row_labels, len(rows), "row_labels")
    cl = _check_labels(col_labels, n_cols, "col_labels")
    inner = [
        ipywidgets.Stack(
            [
                _image(
                    _to_png(img, f"images[{r}][{c}]", dpi, max_frame_bytes, close_figures, colors),
                    _alt(title, (row_description, rl[r]), (col_description, cl[c])),
                )
                for c, img in enumerate(row)
            ],
            selected_index=0,
        )
        for r, row in enumerate(rows)
    ]
    outer = ipywidgets.Stack(inner, selected_index=0)
    rctrl = _make_control(row_control, rl, row_description, 0)
    cctrl = _make_control(col_control, cl, col_description, 0)
    links = [ipywidgets.jslink((rctrl, "index"), (outer, "selected_index"))]
    links += [ipywidgets.jslink((cctrl, "index"), (s, "selected_index")) for s in inner]
    box = _box(title, [rctrl, cctrl], outer)
    box.controls, box.stack, box.links = (rctrl, cctrl), outer, tuple(links)
    return box


def frames_grid_from_function(
    fn: Callable[[Any, Any], Any],
    row_values: Iterable[Any],
    col_values: Iterable[Any],
    *,
    row_labels: Sequence[Any] | None = None,
    col_labels: Sequence[Any] | None = None,
    **kwargs: Any,
) -> ipywidgets.VBox:
    """Call ``fn(row_value, col_value)`` over a grid and link two controls to the frames.

    Args:
        fn: a function of two values that returns a matplotlib ``Figure``.
        row_values, col_values: the settings of the two controls.
        row_labels, col_labels: option names (default: ``str`` of the values).
        **kwargs: passed to :func:`frames_grid`.

    Returns:
        The widget built by :func:`frames_grid`.

    Raises:
        TypeError: ``fn`` is not callable or returned something other than a Figure.
        ValueError: see :func:`frames_grid`.
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable returning a Figure, got {type(fn).__name__}")
    rv, cv = list(row_values), list(col_values)
    if not rv:
        raise ValueError("row_values: expected at least one value, got 0")
    if not cv:
        raise ValueError("col_values: expected at least one value, got 0")
    grid = []
    for r in rv:
        row = []
        for c in cv:
            fig = fn(r, c)
            if not _is_figure(fig):
                raise TypeError(
                    f"fn: expected fn({r!r}, {c!r}) to return a matplotlib Figure, "
                    f"got {type(fig).__name__}"
                )
            row.append(_render(fig, kwargs))
        grid.append(row)
    return frames_grid(
        grid,
        row_labels if row_labels is not None else [str(v) for v in rv],
        col_labels if col_labels is not None else [str(v) for v in cv],
        **kwargs,
    )


def _as_control(name: str, control: Any) -> ipywidgets.ValueWidget:
    if isinstance(control, ipywidgets.ValueWidget):
        return control
    if isinstance(control, str):
        return ipywidgets.Text(
            value=control, description=name, continuous_update=False,
            layout=ipywidgets.Layout(width="min(100%, 32em)"),
        )
    if isinstance(control, bool):
        return ipywidgets.Checkbox(value=control, description=name)
    raise TypeError(
        f"{name}: expected an ipywidgets value widget or a default string, "
        f"got {type(control).__name__}"
    )


def live(fn: Callable[..., Any], /, **controls: Any) -> ipywidgets.VBox:
    """Controls that call Python, for inputs that cannot be precomputed.

    ``fn(**values)`` is called once with the controls' default values, and again whenever a
    control changes (in Jupyter or Colab). Whatever it prints or displays (including matplotlib
    figures) appears under the controls. The widget always shows ``LIVE_NOTE``, so that on the
    static site, where no Python runs, nobody mistakes the controls for working ones.

    Args:
        fn: called with one keyword argument per control.
        **controls: ``name=widget`` (any ipywidgets value widget, e.g. ``ipywidgets.Text``),
            or ``name="default text"`` for a text box, or ``name=True/False`` for a checkbox.

    Returns:
        A ``VBox`` [note, controls, output] with attributes ``note``, ``controls`` (a dict) and
        ``output`` (the ``ipywidgets.Output``).

    Raises:
        TypeError: ``fn`` is not callable or a control is of an unsupported type.
        ValueError: no controls were given.
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    if not controls:
        raise ValueError("controls: expected at least one control, e.g. sentence='The cat sat'")
    widgets = {name: _as_control(name, c) for name, c in controls.items()}
    note = ipywidgets.HTML(value=f'<span class="sa-live-note">&#9888; {LIVE_NOTE}</span>')
    note.add_class("sa-live-note")
    output = ipywidgets.interactive_output(fn, widgets)
    box = ipywidgets.VBox([note, ipywidgets.VBox(list(widgets.values())), output])
    box.add_class("sa-live")
    box.note, box.controls, box.output = note, widgets, output
    return box
