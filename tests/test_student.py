"""Tests of ``tools/make_student.py`` (the student versions) and ``tools/grade.py`` (grading).

A synthetic notebook exercises every rule of the convention (docs/authoring.md, "Exercises that
check themselves") without depending on chapter content; then the real chapters are converted,
and one of them is executed up to its first stub.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


make_student = _load("make_student")
grade = _load("grade")

HINT = "subtract the row maximum before np.exp."
SECRETS = ("secret_line_one", "secret_dot", "THE SECRET ANSWER", "solution prose")


def _code(source, tags=(), outputs=True):
    cell = nbformat.v4.new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    if outputs:  # as an executed chapter would have them
        cell.execution_count = 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="stored output\n")]
    return cell


def _md(source):
    return nbformat.v4.new_markdown_cell(source)


def synthetic_notebook():
    """Two exercises in the book's convention, plus a text exercise with a `{solution}`."""
    cells = [
        _md("# 0. A synthetic chapter"),
        _code("import numpy as np\nfrom selfattention import checks as check\nran = []"),
        _code("ran.append('before')\nprint('before the exercises')"),
        _md("```{exercise} Softmax\n:label: ex-syn-softmax\n\nWrite `my_softmax(x)`.\n```"),
        _md("```{solution-start} ex-syn-softmax\n:class: dropdown\n```"),
        _code(
            "def my_softmax(x):\n"
            '    """Row-wise stable softmax; zeros for a fully masked row."""\n'
            "    ### BEGIN SOLUTION\n"
            f"    ### HINT: {HINT}\n"
            "    m = x.max(axis=-1, keepdims=True)\n"
            "    m = np.where(np.isneginf(m), 0.0, m)\n"
            "    e = np.exp(x - m)\n"
            "    secret_line_one = e.sum(axis=-1, keepdims=True)\n"
            "    return np.divide(e, secret_line_one, out=np.zeros_like(e), "
            "where=secret_line_one > 0)\n"
            "    ### END SOLUTION",
            tags=["solution"],
        ),
        _md("Some solution prose explaining the trick.\n\n```{solution-end}\n```\n\nKept text."),
        _code("check.softmax(my_softmax);", tags=["check"]),
        _md(
            "```{exercise} Why?\n:label: ex-syn-why\n\nWhy do rows sum to 1?\n```\n\n"
            "````{solution} ex-syn-why\n:class: dropdown\n\nTHE SECRET ANSWER\n```python\n"
            "x = 1\n```\n````\n\nText after the solution."
        ),
        _md("```{exercise} Dot\n:label: ex-syn-dot\n\nWrite `my_dot(a, b)`.\n```"),
        _code(
            "def my_dot(a, b):\n"
            "    total = 0.0\n"
            "    for x, y in zip(a, b):\n"
            "        ### BEGIN SOLUTION\n"
            "        total += x * y  # secret_dot\n"
            "        ### END SOLUTION\n"
            "    return total",
            tags=["solution"],
        ),
        _code("check.dot(my_dot);", tags=["check"]),
        _code("ran.append('after')"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def _solution_lines(source: str) -> list[str]:
    """The non-blank lines strictly between the markers, except the hint."""
    lines, inside = [], False
    for line in source.splitlines():
        if make_student.BEGIN_RE.match(line):
            inside = True
        elif make_student.END_RE.match(line):
            inside = False
        elif inside and line.strip() and not make_student.HINT_RE.match(line):
            lines.append(line.strip())
    return lines


def _execute_until_error(nb, cwd: Path):
    """Run ``nb`` in place; return the index of the failing cell and its error output."""
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    with pytest.raises(CellExecutionError):
        client.execute()
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                return index, out
    raise AssertionError("no cell recorded an error")


@pytest.fixture
def synthetic(tmp_path):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    source = chapters / "00_synthetic.ipynb"
    nbformat.write(synthetic_notebook(), source)
    reports = make_student.build(chapters, tmp_path / "student", tmp_path / "student.zip",
                                 repository_root=tmp_path)
    return source, tmp_path / "student" / "chapters" / "00_synthetic.ipynb", reports


def test_synthetic_student_version(synthetic, tmp_path):
    source, target, (report,) = synthetic
    nb = nbformat.read(target, as_version=4)
    nbformat.validate(nb)
    text = target.read_text(encoding="utf-8")
    for secret in SECRETS:
        assert secret not in text, secret
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert "solution-start" not in text and "solution-end" not in text and "{solution}" not in text
    assert report.stubs == 2 and report.hints == [HINT, make_student.DEFAULT_HINT]

    code = [c for c in nb.cells if c.cell_type == "code"]
    softmax_cell, dot_cell = (c for c in code if "solution" in c.metadata.get("tags", []))
    assert softmax_cell.source.splitlines()[-2:] == [
        "    # YOUR CODE HERE", f'    raise NotImplementedError("{HINT}")']
    assert '        # YOUR CODE HERE\n        raise NotImplementedError("write this part' \
        in dot_cell.source
    for cell in code:
        ast.parse(cell.source)  # the stubs keep the code valid Python
        assert cell.outputs == [] and cell.execution_count is None
    assert "widgets" not in nb.metadata

    # The checks and the statements stay; text around the removed solutions too.
    src_nb = nbformat.read(source, as_version=4)
    assert make_student.count_checks(nb) == make_student.count_checks(src_nb) == 2
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert markdown.count("{exercise}") == 3
    assert "Kept text." in markdown and "Text after the solution." in markdown
    assert len(nb.cells) == len(src_nb.cells) - 1  # only the solution-start cell is gone
    assert "secret_line_one" in src_nb.cells[5].source  # the source is left alone

    with zipfile.ZipFile(tmp_path / "student.zip") as zf:
        assert sorted(zf.namelist()) == ["student/README.md", "student/chapters/00_synthetic.ipynb"]
    assert "YOUR CODE HERE" in (tmp_path / "student" / "README.md").read_text(encoding="utf-8")


def test_synthetic_student_runs_to_its_first_stub(synthetic):
    _, target, _ = synthetic
    nb = nbformat.read(target, as_version=4)
    index, error = _execute_until_error(nb, target.parent)
    assert error.ename == "NotImplementedError" and HINT in error.evalue
    assert "check.softmax" in nb.cells[index].source  # it stops at the first exercise's check
    before = [c for c in nb.cells[:index] if c.cell_type == "code"]
    assert before and all(c.execution_count is not None for c in before)
    assert any("before the exercises" in o.get("text", "") for c in before for o in c.outputs)


def test_grade_scores_the_checks(synthetic, capsys):
    source, target, _ = synthetic
    solved = grade.grade_notebook(source)
    assert (solved.expected, solved.passed, solved.score, solved.error) == (2, 2, 1.0, None)
    stubbed = grade.grade_notebook(target)
    assert (stubbed.passed, stubbed.failed, stubbed.not_run) == (0, 2, 0)
    assert [o.mistake for o in stubbed.checks] == ["not implemented"] * 2
    assert stubbed.first_error.startswith("NotImplementedError")
    table = grade.format_table([solved, stubbed])
    assert "2/2 (100%)" in table and "0/2 (0%)" in table and "check.dot failed" in table
    assert json.loads(json.dumps(grade.asdict(stubbed)))["checks"][0]["status"] == "failed"


def test_grade_matches_checks_in_order():
    logged = [{"check": "dot", "passed": False, "mistake": "m"},
              {"check": "dot", "passed": True, "mistake": None}]
    outcomes = grade.match(["dot", "softmax", "dot"], logged)
    assert [(o.check, o.status) for o in outcomes] == [
        ("dot", "failed"), ("softmax", "not run"), ("dot", "passed")]


@pytest.mark.parametrize(
    "cells, message",
    [
        ([_code("def f():\n    return 1", tags=["solution"])], "no '### BEGIN SOLUTION'"),
        ([_code("x = 1\n### BEGIN SOLUTION\nx = 2", tags=["solution"])], "has no '### END SOLUTION'"),
        ([_code("### END SOLUTION", tags=["solution"])], "without a BEGIN"),
        ([_code("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", tags=["solution"])],
         "a second '### BEGIN SOLUTION'"),
        ([_md("```{solution-start} ex\n```"), _code("answer = 42")], "not a solution cell"),
        ([_md("```{solution-start} ex\n```")], "without its {solution-end}"),
    ],
    ids=["no markers", "no end", "no begin", "nested", "untagged code in solution", "no end cell"],
)
def test_broken_conventions_are_errors(cells, message):
    nb = nbformat.v4.new_notebook(cells=[_md("# x")] + cells)
    with pytest.raises(make_student.StudentError, match="02_x.ipynb: cell") as exc:
        make_student.make_student_notebook(nb, "chapters/02_x.ipynb")
    assert message in str(exc.value)


def test_cli_reports_the_broken_cell_and_writes_nothing(tmp_path):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    nb = nbformat.v4.new_notebook(cells=[_md("# x"), _code("f = 1", tags=["solution"])])
    nbformat.write(nb, chapters / "03_bad.ipynb")
    out = tmp_path / "student"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_student.py"), "--chapters", str(chapters),
         "--out", str(out), "--zip", str(tmp_path / "s.zip")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert "03_bad.ipynb: cell 1" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "s.zip").exists()


def test_works_from_a_fresh_clone(tmp_path):
    """Only the project's files: the tool, the chapters and the book's config."""
    clone = tmp_path / "clone"
    (clone / "tools").mkdir(parents=True)
    shutil.copy(ROOT / "tools" / "make_student.py", clone / "tools")
    shutil.copy(ROOT / "_config.yml", clone)
    shutil.copytree(CHAPTERS, clone / "chapters",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    proc = subprocess.run([sys.executable, "tools/make_student.py"], cwd=clone,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in (clone / "student" / "chapters").rglob("*.ipynb"))
    assert written == sorted(p.name for p in make_student.find_notebooks(CHAPTERS))
    assert (clone / "student.zip").is_file() and (clone / "student" / "README.md").is_file()


# ---------------------------------------------------------------------------------------------
# The real chapters.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "student"
    reports = make_student.build(CHAPTERS, out, None)
    assert reports, "no chapters found"
    return reports


def test_real_chapters_student_versions(real):
    for report in real:
        src = nbformat.read(report.source if report.source.is_absolute()
                            else ROOT / report.source, as_version=4)
        nb = nbformat.read(report.target, as_version=4)
        nbformat.validate(nb)
        assert make_student.count_checks(nb) == make_student.count_checks(src), report.source
        by_id = {c.get("id"): c for c in nb.cells}
        for cell in src.cells:
            if cell.cell_type != "code" or not make_student.has_markers(cell.source):
                continue
            student_cell = by_id[cell.get("id")]
            outside = set(make_student.stub_source(cell.source)[0].splitlines())
            left = [line for line in _solution_lines(cell.source)
                    if line in {s.strip() for s in student_cell.source.splitlines()}
                    and line not in {s.strip() for s in outside}]
            assert not left, f"{report.source}: solution code left in the student version: {left}"
            assert "raise NotImplementedError(" in student_cell.source
        text = report.target.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text and "{solution-start}" not in text
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_a_real_chapter_runs_to_its_first_stub(real):
    """Executing one chapter is enough (10 to 30 s): the first one that has exercises to write."""
    with_stubs = [r for r in real if r.stubs]
    report = with_stubs[0] if with_stubs else real[0]
    nb = nbformat.read(report.target, as_version=4)
    if not with_stubs:  # no exercise to write yet: the student version must simply run
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(CHAPTERS)}}).execute()
        return
    index, error = _execute_until_error(nb, CHAPTERS)
    assert error.ename == "NotImplementedError", (report.source, error.evalue)
    assert report.hints[0] in error.evalue
    before = [c for c in nb.cells[:index] if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in before)
    assert not any(o.output_type == "error" for c in before for o in c.outputs)
