"""A small local Sphinx extension for the course site.

1. It removes repeated entries from a page's script list. Jupyter Book 1.0.4 includes
   sphinx-thebe's script twice, and the browser then logs ``Identifier 'THEBE_JS_URL' has already
   been declared``. Keeping only the first occurrence of each script (same file, same inline body,
   same attributes) leaves the page's behaviour unchanged and its console clean.
2. It adds a tiny ``MathJax.Hub.Queue`` shim. The widget manager (``@jupyter-widgets/html-manager``
   1.0.15) typesets widget descriptions with the MathJax 2 API whenever ``window.MathJax``
   exists; the site runs MathJax 3, which has no ``Hub``, so every widget with a ``description``
   logged ``Cannot read properties of undefined (reading 'Queue')``. The shim forwards the call to
   MathJax 3's ``typesetPromise`` and survives MathJax replacing its global object at start-up.
3. It gives every image alt text. Notebook output images (matplotlib figures) get one built from
   the figure titles and axis labels written in the cell's code (``title=...``, ``set_title(...)``,
   ``set_xlabel(...)``...), unless the cell sets its own with the MyST-NB cell metadata
   ``mystnb: {image: {alt: ...}}``. Widget images (frames of ``selfattention.widgets``) carry
   their alt text in the widget's ``tooltip``, which the widget manager shows as the ``title``
   attribute; a small script copies it to ``alt`` as the frames are rendered, and gives figures
   that a widget prints (a live widget's output for its default inputs) a generic one.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx


def _script_key(script: Any) -> tuple:
    """Return a hashable identity for one entry of ``context['script_files']``."""
    # Inline scripts come with filename None or "" depending on who added them.
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    body = attributes.get("body", "")
    others = tuple(sorted((k, str(v)) for k, v in attributes.items() if k not in {"body"}))
    return (str(filename), str(body), others)


MATHJAX2_HUB_SHIM = """(function () {
  function shim(mj) {
    if (mj && typeof mj === "object" && !("Hub" in mj)) {
      Object.defineProperty(mj, "Hub", {configurable: true, enumerable: false, value: {
        Queue: function (job) {
          var el = Array.isArray(job) ? job[2] : null;
          var m = window.MathJax;
          if (el && m && typeof m.typesetPromise === "function") {
            m.typesetPromise([el]).catch(function () {});
          }
        }
      }});
    }
    return mj;
  }
  var current = shim(window.MathJax);
  Object.defineProperty(window, "MathJax", {configurable: true,
    get: function () { return current; },
    set: function (v) { current = shim(v); }});
})();"""


WIDGET_IMAGE_ALT = """(function () {
  function fix(root) {
    if (!root.querySelectorAll) { return; }
    root.querySelectorAll("img.widget-image[title]:not([alt])").forEach(function (img) {
      img.setAttribute("alt", img.getAttribute("title"));
    });
    // Figures printed inside a widget (a live widget's output for its default inputs).
    root.querySelectorAll(".jupyter-widgets img:not([alt]):not(.widget-image)")
      .forEach(function (img) {
        img.setAttribute("alt", img.closest(".sa-live")
          ? "Figure drawn by the live widget above for its default inputs"
          : "Figure shown by the widget above");
      });
  }
  function start() {
    fix(document);
    new MutationObserver(function (records) {
      records.forEach(function (r) {
        if (r.type === "attributes") { fix(r.target.parentNode || document); }
        r.addedNodes.forEach(function (n) { if (n.nodeType === 1) { fix(n.parentNode || n); } });
      });
    }).observe(document.body, {childList: true, subtree: true, attributes: true,
                               attributeFilter: ["title"]});
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); }
  else { start(); }
})();"""

# String literals given as a figure's title or axis label in a cell's code.
_TEXT = r"[rfRF]{0,2}(?P<q>[\"'])(?P<text>.+?)(?<!\\)(?P=q)"
_TITLE_RE = re.compile(r"(?:\b(?:title|suptitle)\s*=\s*|\.(?:set_title|suptitle|title)\(\s*)" + _TEXT)
_XLABEL_RE = re.compile(r"(?:\bxlabel\s*=\s*|\.(?:set_xlabel|xlabel)\(\s*)" + _TEXT)
_YLABEL_RE = re.compile(r"(?:\bylabel\s*=\s*|\.(?:set_ylabel|ylabel)\(\s*)" + _TEXT)


def _clean(text: str) -> str:
    """A string literal as a reader would see it: f-string fields become an ellipsis."""
    text = re.sub(r"\{[^{}]*\}", "\u2026", text)
    return re.sub(r"\$([^$]*)\$", r"\1", text).replace("\\n", " ").strip()


def output_image_alt(source: str) -> str:
    """Alt text for a figure drawn by a code cell with this ``source`` (the cell's code)."""
    titles = list(dict.fromkeys(_clean(m["text"]) for m in _TITLE_RE.finditer(source)))
    xlabels = list(dict.fromkeys(_clean(m["text"]) for m in _XLABEL_RE.finditer(source)))
    ylabels = list(dict.fromkeys(_clean(m["text"]) for m in _YLABEL_RE.finditer(source)))
    alt = "Figure drawn by the code above"
    if titles:
        alt += ": " + "; ".join(titles[:4])
    axes_text = []
    if xlabels:
        axes_text.append("x axis " + ", ".join(xlabels[:2]))
    if ylabels:
        axes_text.append("y axis " + ", ".join(ylabels[:2]))
    if axes_text:
        alt += " (" + "; ".join(axes_text) + ")"
    return alt[:300]


def add_output_image_alt(app: Sphinx, doctree: nodes.document) -> None:
    """Give notebook output images without alt text one built from their cell's code."""
    for image in list(doctree.findall(nodes.image)):
        if image.get("alt"):
            continue
        cell = image.parent
        while cell is not None and cell.get("nb_element") != "cell_code":
            cell = cell.parent
        if cell is None:
            continue
        source = "".join(
            block.astext()
            for container in cell.findall(nodes.container)
            if container.get("nb_element") == "cell_code_source"
            for block in container.findall(nodes.literal_block)
        )
        image["alt"] = output_image_alt(source)


def dedupe_scripts(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    """Drop repeated scripts from the page context, keeping the first of each."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _script_key(script)
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict:
    """Register the handler late, after the other extensions have added their scripts."""
    app.add_js_file(None, body=MATHJAX2_HUB_SHIM, priority=100)
    app.add_js_file(None, body=WIDGET_IMAGE_ALT, priority=100)
    app.connect("doctree-read", add_output_image_alt)
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
