"""Self-check quizzes: the questions are data (``NN.json`` beside this file), shown by jupyterquiz.

Each chapter ``NN`` has 4 to 8 questions, multiple choice or "predict the output" with a numeric
answer, in jupyterquiz's JSON format: every answer carries a feedback line, and each wrong one
names the misconception it stands for. A chapter shows its quiz with one hidden cell::

    from selfattention import quizzes
    quizzes.show("02")

The quiz is plain HTML and JavaScript inlined in the cell's output, so it works on the static
website without a kernel and offline, and in JupyterLab. One change is made to jupyterquiz's
script: when the page's MathJax 3 is still loading, jupyterquiz replaces ``window.MathJax`` and
loads MathJax from a CDN; that branch is removed, so the quiz never makes an off-site request and
never disturbs the page's own (local) MathJax, and a read of ``MathJax.version`` before MathJax has
loaded is guarded. The questions contain no math for that reason.
"""

from __future__ import annotations

import json
import re
from importlib import resources

CHAPTER_RE = re.compile(r"^\d\d$")
# jupyterquiz's MathJax fallback: from its warning to the end of the function that adds the script.
CDN_FALLBACK_RE = re.compile(
    r"console\.log\('WARNING: Trying to force load MathJax 3'\);"
    r".*?document\.head\.appendChild\(script\);\s*\}\)\(\);",
    re.S,
)
NO_FALLBACK = "console.log('quiz: MathJax is not ready; the quiz has no math to typeset');"
# 500 ms after rendering, jupyterquiz reads MathJax.version[0]: a TypeError while MathJax still loads.
AFTER_SLEEP = "console.log('After sleep, MathJax version', version);"
AFTER_SLEEP_GUARDED = AFTER_SLEEP + "\n            if (typeof version == 'undefined') { return; }"


def chapters() -> list[str]:
    """The chapters that have a quiz: ``["01", "02", ...]``."""
    names = (p.name for p in resources.files(__name__).iterdir())
    return sorted(n[:-5] for n in names if n.endswith(".json") and CHAPTER_RE.match(n[:-5]))


def load(chapter: str | int) -> list[dict]:
    """The questions of ``chapter`` (``"02"`` or ``2``), as jupyterquiz question dicts.

    Raises ValueError when the chapter has no quiz.
    """
    name = f"{int(chapter):02d}" if isinstance(chapter, int) or str(chapter).isdigit() else str(chapter)
    if name not in chapters():
        raise ValueError(f"chapter={chapter!r}: there is no quiz for it; quizzes exist for {chapters()}")
    return json.loads(resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8"))


def render(chapter: str | int) -> tuple[str, str]:
    """The quiz of ``chapter`` as ``(html, javascript)``: the same text every time it is rendered."""
    from jupyterquiz.dynamic.loader import load_questions_script
    from jupyterquiz.dynamic.renderer import build_script, build_styles, render_div

    questions = load(chapter)
    div_id = f"quiz{int(chapter):02d}"  # a JavaScript identifier: jupyterquiz uses it as one
    div = render_div(div_id, False, True, False, len(questions), 700, 10, "left")
    html = div + build_styles(div_id, _COLORS) + "</div>"
    prefix, _, _ = load_questions_script(questions, div_id)  # a list: embedded, never fetched
    script, n = CDN_FALLBACK_RE.subn(NO_FALLBACK, build_script(prefix, True, "", div_id, True))
    if AFTER_SLEEP not in script or n == 0 or "https://" in script or "http://" in script:
        raise RuntimeError(
            "the installed jupyterquiz's MathJax fallback was not found where expected, so the quiz "
            "could make an off-site request; check selfattention.quizzes against this jupyterquiz version"
        )
    return html, script.replace(AFTER_SLEEP, AFTER_SLEEP_GUARDED)


def show(chapter: str | int) -> None:
    """Display the quiz of ``chapter`` in the notebook (and on the static page built from it)."""
    from IPython.display import HTML, Javascript, display

    html, script = render(chapter)
    display(HTML(html))
    display(Javascript(script))


# jupyterquiz's default palette, kept here so the quizzes look the same whatever its version.
_COLORS = {
    "--jq-multiple-choice-bg": "#392061",
    "--jq-mc-button-bg": "#fafafa",
    "--jq-mc-button-border": "#e0e0e0e0",
    "--jq-mc-button-inset-shadow": "#555555",
    "--jq-many-choice-bg": "#f75c03ff",
    "--jq-numeric-bg": "#392061ff",
    "--jq-numeric-input-bg": "#c0c0c0",
    "--jq-numeric-input-label": "#101010",
    "--jq-numeric-input-shadow": "#999999",
    "--jq-string-bg": "#4c1a57",
    "--jq-incorrect-color": "#c80202",
    "--jq-correct-color": "#009113",
    "--jq-text-color": "#fafafa",
    "--jq-link-color": "#9abafa",
}
