"""Every chapter is an nbgrader source notebook, and tools/nbgrader_cells.py is idempotent."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9]*.ipynb"))

spec = importlib.util.spec_from_file_location("nbgrader_cells", ROOT / "tools" / "nbgrader_cells.py")
nbgrader_cells = importlib.util.module_from_spec(spec)
sys.modules["nbgrader_cells"] = nbgrader_cells
spec.loader.exec_module(nbgrader_cells)


def _code(source, tags=()):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = list(tags)
    return cell


def _exercise(label):
    return nbformat.v4.new_markdown_cell(f"```{{exercise}} Title\n:label: {label}\n\nText.\n```")


SOLUTION = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_has_nbgrader_metadata(path):
    nb = nbformat.read(path, as_version=4)
    assert not nbgrader_cells.apply(copy.deepcopy(nb), path.name), (
        f"{path.name} lacks nbgrader metadata: run .venv/bin/python tools/nbgrader_cells.py --write "
        f"chapters/{path.name}"
    )
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids))
    checks = [c for c in nb.cells if "check" in c.metadata.get("tags", [])]
    assert nbgrader_cells.grade_ids(nb) == [c.metadata["nbgrader"]["grade_id"] for c in checks]


def test_ids_come_from_the_labels_and_writing_twice_changes_nothing():
    nb = nbformat.v4.new_notebook(
        cells=[
            _exercise("ex-09-a"),
            _code(SOLUTION, ["solution"]),
            _code("check.a(f)", ["check"]),
            _code("check.b(f)", ["check"]),
            _code("x = 1"),
        ]
    )
    nb.cells[4].metadata["nbgrader"] = {"grade": True, "grade_id": "stale"}
    assert nbgrader_cells.apply(nb)
    assert [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells] == [
        None,
        "ex-09-a-solution",
        "ex-09-a-check",
        "ex-09-a-check-2",
        None,
    ]
    assert nb.cells[2].metadata["nbgrader"]["locked"] and nb.cells[2].metadata["nbgrader"]["points"] == 1
    assert not nbgrader_cells.apply(nb)


def test_a_check_without_an_exercise_is_named_after_its_check():
    nb = nbformat.v4.new_notebook(cells=[_code("check.softmax_list(f)", ["check"])])
    nbgrader_cells.apply(nb)
    assert nb.cells[0].metadata["nbgrader"]["grade_id"] == "check-softmax-list"


@pytest.mark.parametrize(
    "cells, message",
    [
        ([_exercise("ex-x"), _code("def f():\n    return 1", ["solution"])], "has no '### BEGIN SOLUTION'"),
        ([_code(SOLUTION, ["solution"])], "no {exercise} label above it"),
        ([_code("print('hi')", ["check"])], "calls no check"),
    ],
    ids=["no markers", "no label", "no check call"],
)
def test_broken_cells_are_errors(cells, message):
    nb = nbformat.v4.new_notebook(cells=cells)
    with pytest.raises(nbgrader_cells.CellError, match="09_x.ipynb: cell") as exc:
        nbgrader_cells.apply(nb, "09_x.ipynb")
    assert message in str(exc.value)


def test_cli_check_fails_on_a_chapter_without_metadata(tmp_path, capsys):
    path = tmp_path / "09_x.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(cells=[_exercise("ex-09-a"), _code(SOLUTION, ["solution"])]), path
    )
    assert nbgrader_cells.main(["--check", str(path)]) == 1
    assert "tools/nbgrader_cells.py --write" in capsys.readouterr().err
    assert nbgrader_cells.main(["--write", str(path)]) == 0
    assert nbgrader_cells.main(["--check", str(path)]) == 0
