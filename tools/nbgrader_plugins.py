"""The course's four additions to nbgrader, plugged in by ``nbgrader_config.py``.

* :class:`HintedClearSolutions` replaces each ``### BEGIN SOLUTION`` ... ``### END SOLUTION``
  block with ``# YOUR CODE HERE`` and ``raise NotImplementedError("<hint>")``, the hint being the
  block's ``### HINT:`` line (nbgrader's own stub has no hint).
* :class:`RemoveWebSolutions` takes out what the website shows behind a *Solution* toggle: the
  ``{solution-start}`` ... ``{solution-end}`` markdown and every ``{solution}`` directive (the
  written answers), and the saved widget state. A code cell inside such a region that is not a
  solution cell is an error, since it would hand out the answer.
* :class:`PlainMarkdown` rewrites the book's MyST markup that Jupyter does not know (exercise and
  admonition boxes, ``{cite}`` and ``{ref}`` roles, ``(label)=`` targets) as plain Markdown, so a
  student version reads well in JupyterLab, Notebook, Colab and nbgrader's feedback pages, where
  the book's markup would show as raw text.
* :class:`GradingExecute` runs the autograder's kernel with ``SELFATTENTION_CHECKS_RAISE=1``, so a
  failing check raises with the mistake it named: the check cell scores 0 and its message is in
  the feedback. A learner's own kernel never has the variable, so in JupyterLab checks only print.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from nbgrader.preprocessors import ClearSolutions, Execute, NbGraderPreprocessor

from selfattention.checks._core import RAISE_VAR

HINT_RE = re.compile(r"^[ \t]*###\s*HINT:\s*(?P<hint>.*?)\s*$", re.M)
DEFAULT_HINT = "write this part, then run the check below it."
FENCE_OPEN_RE = re.compile(r"^[ \t]*(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}")
SOLUTION_DIRECTIVES = {"solution", "solution-start", "solution-end"}


class HintedClearSolutions(ClearSolutions):
    """nbgrader's ClearSolutions, with the exercise's hint in the stub's NotImplementedError."""

    def _replace_solution_region(self, cell, language):
        hints = [h for h in HINT_RE.findall(cell.source) if h]
        hint = " ".join(hints) or DEFAULT_HINT
        stub = f"# YOUR CODE HERE\nraise NotImplementedError({json.dumps(hint, ensure_ascii=False)})"
        saved = dict(self.code_stub)
        self.code_stub = {**saved, language: stub}
        try:
            return super()._replace_solution_region(cell, language)
        finally:
            self.code_stub = saved


def strip_solution_markdown(text: str, in_region: bool) -> tuple[str, bool]:
    """Drop ``{solution}`` blocks and the ``{solution-start}``/``{solution-end}`` region.

    ``in_region`` says whether the cell starts inside a solution-start ... solution-end region
    (the region spans cells); the new state is returned with the kept text.
    """
    kept: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE_OPEN_RE.match(lines[i])
        if m and m.group("name") in SOLUTION_DIRECTIVES:
            fence = m.group("fence")
            close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
            i += 1
            while i < len(lines) and not close.match(lines[i]):
                i += 1
            i += 1  # the closing fence
            if m.group("name") == "solution-start":
                in_region = True
            elif m.group("name") == "solution-end":
                in_region = False
            continue
        if not in_region:
            kept.append(lines[i])
        i += 1
    text = "\n".join(kept)
    if len(kept) < len(lines):  # a block was cut out: no gap of blank lines where it was
        text = re.sub(r"\n[ \t]*(\n[ \t]*)+\n", "\n\n", text)
    return text.strip("\n"), in_region


class RemoveWebSolutions(NbGraderPreprocessor):
    """Remove the website's solution dropdowns and the saved widget state from a release."""

    def preprocess(self, nb, resources):
        name = resources.get("unique_key", "notebook")
        cells, in_region = [], False
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown":
                cell.source, in_region = strip_solution_markdown(cell.source, in_region)
                if not cell.source.strip():
                    continue
            elif in_region and not cell.metadata.get("nbgrader", {}).get("solution"):
                raise ValueError(
                    f"{name}: cell {index} is a code cell between {{solution-start}} and "
                    "{solution-end} that is not a solution cell, so it would hand out the answer: "
                    "tag it 'solution' and mark the part to hide (docs/authoring.md)."
                )
            cells.append(cell)
        if in_region:
            raise ValueError(f"{name}: a {{solution-start}} without its {{solution-end}}")
        nb.cells = cells
        nb.metadata.pop("widgets", None)  # the student's kernel makes its own widgets
        return nb, resources


BOXES = {"exercise", "admonition", "note", "tip", "hint", "important", "warning", "caution"}
DIRECTIVE_RE = re.compile(r"^[ \t]*(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}[ \t]*(?P<title>.*?)\s*$")
OPTION_RE = re.compile(r"^[ \t]*:(?P<key>[\w-]+):[ \t]*(?P<value>.*?)\s*$")
CITE_RE = re.compile(r"\{cite(?::[pt])?\}`(?P<keys>[^`]+)`")
REF_RE = re.compile(r"\{(?:ref|numref|doc)\}`(?:(?P<text>[^`<]*?)\s*<[^`>]+>|(?P<bare>[^`]+))`")
TARGET_RE = re.compile(r"^\([\w:.-]+\)=[ \t]*(\n|$)", re.M)
BIB_ENTRY_RE = re.compile(r"@\w+\s*\{\s*(?P<key>[^,\s]+)\s*,")


def _braced(text: str, start: int) -> str:
    """The text inside the balanced braces that open at ``text[start]``."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i]
    return text[start + 1 :]


def _bib_field(entry: str, name: str) -> str | None:
    m = re.search(rf"\b{name}\s*=\s*\{{", entry, re.I)
    return None if m is None else _braced(entry, m.end() - 1)


def load_citations(bib: Path) -> dict[str, str]:
    """``{key: "Vaswani *et al.*, 2017"}`` for every entry of a BibTeX file (author-year, as the book)."""
    text = bib.read_text(encoding="utf-8")
    found = {}
    for entry in BIB_ENTRY_RE.finditer(text):
        body = _braced(text, text.index("{", entry.start()))
        author, year = _bib_field(body, "author"), _bib_field(body, "year")
        if not (author and year):
            continue
        names = [n.strip() for n in re.split(r"\s+and\s+", author)]
        surnames = [re.sub(r"[{}\\]", "", n.split(",")[0] if "," in n else n.split()[-1]) for n in names]
        who = surnames[0] if len(names) == 1 else " and ".join(surnames) if len(names) == 2 else (
            f"{surnames[0]} *et al.*"
        )
        found[entry.group("key")] = f"{who}, {year}"
    return found


def _box(name: str, title: str, options: dict[str, str], body: str) -> str:
    """A directive's box as a Markdown blockquote headed by its bold title."""
    if name == "exercise":
        label = f" `{options['label']}`" if "label" in options else ""
        head = f"**Exercise{label}" + (f": {title}**" if title else "**")
    else:
        head = f"**{title or name.capitalize()}**"
    lines = [head, ""] + body.splitlines()
    return "\n".join(f"> {line}".rstrip() for line in lines)


def myst_to_markdown(text: str, citations: dict[str, str]) -> str:
    """Rewrite the MyST markup Jupyter cannot render as plain Markdown (see the module docstring).

    Exercise and admonition boxes become blockquotes with a bold title (an exercise's label is kept:
    the grade report names its checks after it); ``{cite}`` becomes "[Author *et al.*, year]", as
    the book shows it, ``{ref}`` its link text, and ``(label)=`` targets go. Other directives are
    left as they are.
    """
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        m = DIRECTIVE_RE.match(lines[i])
        if not (m and m.group("name") in BOXES):
            out.append(lines[i])
            i += 1
            continue
        fence = m.group("fence")
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        i += 1
        options = {}
        while i < len(lines) and (o := OPTION_RE.match(lines[i])):
            options[o.group("key")] = o.group("value")
            i += 1
        body = []
        while i < len(lines) and not close.match(lines[i]):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        inner = myst_to_markdown("\n".join(body).strip("\n"), citations)
        out.append(_box(m.group("name"), m.group("title"), options, inner))
    text = "\n".join(out)

    def cite(match: re.Match) -> str:
        keys = [k.strip() for k in match.group("keys").split(",")]
        return "[" + "; ".join(citations.get(k, k) for k in keys) + "]"

    text = CITE_RE.sub(cite, text)
    text = REF_RE.sub(lambda r: r.group("text") or f"`{r.group('bare')}`", text)
    return TARGET_RE.sub("", text)


class PlainMarkdown(NbGraderPreprocessor):
    """Rewrite a release's MyST-only markup as plain Markdown (:func:`myst_to_markdown`)."""

    bib = Path(__file__).resolve().parent.parent / "references.bib"

    def preprocess(self, nb, resources):
        citations = load_citations(self.bib)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = myst_to_markdown(cell.source, citations)
        return nb, resources


class GradingExecute(Execute):
    """nbgrader's Execute, with failing checks raising in the kernel (see the module docstring)."""

    def preprocess(self, nb, resources, *args, **kwargs):
        # The kernel is a child process: it inherits the environment it is started in.
        saved = os.environ.get(RAISE_VAR)
        os.environ[RAISE_VAR] = "1"
        try:
            return super().preprocess(nb, resources, *args, **kwargs)
        finally:
            if saved is None:
                del os.environ[RAISE_VAR]
            else:
                os.environ[RAISE_VAR] = saved
