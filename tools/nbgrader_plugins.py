"""The course's three additions to nbgrader, plugged in by ``nbgrader_config.py``.

* :class:`HintedClearSolutions` replaces each ``### BEGIN SOLUTION`` ... ``### END SOLUTION``
  block with ``# YOUR CODE HERE`` and ``raise NotImplementedError("<hint>")``, the hint being the
  block's ``### HINT:`` line (nbgrader's own stub has no hint).
* :class:`RemoveWebSolutions` takes out what the website shows behind a *Solution* toggle: the
  ``{solution-start}`` ... ``{solution-end}`` markdown and every ``{solution}`` directive (the
  written answers), and the saved widget state. A code cell inside such a region that is not a
  solution cell is an error, since it would hand out the answer.
* :class:`GradingExecute` runs the autograder's kernel with ``SELFATTENTION_CHECKS_RAISE=1``, so a
  failing check raises with the mistake it named: the check cell scores 0 and its message is in
  the feedback. A learner's own kernel never has the variable, so in JupyterLab checks only print.
"""

from __future__ import annotations

import json
import os
import re

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
