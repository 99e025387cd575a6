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
"""

from __future__ import annotations

from typing import Any

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
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
