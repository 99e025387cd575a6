#!/usr/bin/env python3
"""Give the chapters' exercise cells the nbgrader metadata that makes them an nbgrader source.

Usage: python tools/nbgrader_cells.py --write chapters/*.ipynb   (add or update the metadata)
       python tools/nbgrader_cells.py --check chapters/*.ipynb   (exit 1 if a notebook differs)

The exercise convention (docs/authoring.md) already marks what nbgrader needs: a code cell tagged
``solution`` holds ``### BEGIN SOLUTION`` ... ``### END SOLUTION``, and the code cell tagged
``check`` after it calls one check. This tool writes, into ``cell.metadata.nbgrader``:

* solution cells: ``solution: true``, ``grade: false``, grade_id ``<label>-solution``;
* check cells: ``grade: true``, ``locked: true``, ``points: 1``, grade_id ``<label>-check``,

where ``<label>`` is the label of the ``{exercise}`` directive above the cell (``ex-02-dot``), so
the ids stay the same when cells move or other exercises are added. A check cell with no exercise
above it takes ``check-<name>`` from its ``check.<name>(`` call. Every other cell loses any
nbgrader metadata it had, so running ``--write`` twice changes nothing the second time.

The book, nbval and JupyterLab ignore this metadata; only nbgrader reads it. It is an error (the
notebook is named, with the cell and the reason) when a solution cell has no markers or no
exercise label above it, or when a check cell calls no check: nbgrader would hand out the whole
answer or grade nothing.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

from selfattention.checks import CHECK_CALL_RE  # one definition, shared with the library

EXERCISE_LABEL_RE = re.compile(r"\{exercise\}[^\n]*\n(?:[ \t]*:[\w-]+:[^\n]*\n)*?[ \t]*:label:\s*(\S+)")
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SCHEMA_VERSION = 3
POINTS_PER_CHECK = 1


class CellError(ValueError):
    """A cell breaks the exercise convention; the message names notebook, cell and reason."""


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _unique(grade_id: str, used: set[str]) -> str:
    candidate, n = grade_id, 2
    while candidate in used:
        candidate, n = f"{grade_id}-{n}", n + 1
    used.add(candidate)
    return candidate


def expected_metadata(nb, name: str = "notebook") -> list[dict | None]:
    """The nbgrader metadata every cell of ``nb`` should have (None: no nbgrader metadata)."""
    label: str | None = None
    used: set[str] = set()
    wanted: list[dict | None] = []
    for index, cell in enumerate(nb.cells):
        where = f"{name}: cell {index}"
        if cell.cell_type == "markdown":
            labels = EXERCISE_LABEL_RE.findall(cell.source)
            label = labels[-1] if labels else label
            wanted.append(None)
            continue
        tags = _tags(cell)
        if "solution" in tags:
            if BEGIN not in cell.source or END not in cell.source:
                raise CellError(
                    f"{where}: tagged 'solution' but has no '{BEGIN}' ... '{END}' markers; "
                    "nbgrader would hand out the whole cell as the answer"
                )
            if label is None:
                raise CellError(
                    f"{where}: a solution cell with no {{exercise}} label above it; "
                    "its grade_id is made from that label"
                )
            wanted.append(
                {
                    "grade": False,
                    "grade_id": _unique(f"{label}-solution", used),
                    "locked": False,
                    "schema_version": SCHEMA_VERSION,
                    "solution": True,
                    "task": False,
                }
            )
        elif "check" in tags:
            calls = CHECK_CALL_RE.findall(cell.source)
            if not calls:
                raise CellError(f"{where}: tagged 'check' but calls no check.<name>(...)")
            base = f"{label}-check" if label else f"check-{calls[0].replace('_', '-')}"
            wanted.append(
                {
                    "grade": True,
                    "grade_id": _unique(base, used),
                    "locked": True,
                    "points": POINTS_PER_CHECK,
                    "schema_version": SCHEMA_VERSION,
                    "solution": False,
                    "task": False,
                }
            )
        else:
            wanted.append(None)
    return wanted


def apply(nb, name: str = "notebook") -> bool:
    """Set the nbgrader metadata of ``nb`` in place; return whether anything changed."""
    changed = False
    for cell, wanted in zip(nb.cells, expected_metadata(nb, name)):
        have = cell.metadata.get("nbgrader")
        if wanted is None and have is not None:
            del cell.metadata["nbgrader"]
            changed = True
        elif wanted is not None and have != wanted:
            cell.metadata["nbgrader"] = copy.deepcopy(wanted)
            changed = True
    return changed


def grade_ids(nb) -> list[str]:
    """The grade_ids of the graded (check) cells of ``nb``, in order."""
    return [
        c.metadata["nbgrader"]["grade_id"] for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
    ]


def check_calls(nb) -> list[str]:
    """The names of the checks ``nb``'s code cells call (``check.softmax(...)`` -> "softmax"), in order."""
    return [n for c in nb.cells if c.cell_type == "code" for n in CHECK_CALL_RE.findall(c.source)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="add or update the metadata in place")
    mode.add_argument("--check", action="store_true", help="exit 1 when a notebook is not up to date")
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failed = 0
    for path in args.notebooks:
        try:
            nb = nbformat.read(path, as_version=4)
            changed = apply(nb, str(path))
        except (CellError, OSError, ValueError) as exc:
            print(f"nbgrader_cells: {exc}", file=sys.stderr)
            failed += 1
            continue
        if changed and args.write:
            nbformat.write(nb, path)
            print(f"nbgrader_cells: updated {path} ({len(grade_ids(nb))} graded checks)")
        elif changed:
            print(
                f"nbgrader_cells: {path} lacks nbgrader metadata: run tools/nbgrader_cells.py --write {path}",
                file=sys.stderr,
            )
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
