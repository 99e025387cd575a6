"""The instructor kit end to end: release with nbgrader, then grade a small class.

A short chapter (chapter 2's standard first cell and its three exercises) is released into a
temporary course folder, and four students hand it in: one with every answer right, one with a
classic mistake (no 1/sqrt(d_k)), one with a syntax error, one whose file was renamed and who
deleted a check cell. Two more hand in nothing usable (an empty folder, a corrupt file). The test
asserts each score, the rows of the report, and that the named mistake reaches the feedback HTML.
About a minute on two cores: nbgrader starts a kernel per student.
"""

from __future__ import annotations

import copy
import csv
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = "02_attention_with_loops"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


classroom = _load("classroom")
nbgrader_cells = _load("nbgrader_cells")


def short_chapter() -> nbformat.NotebookNode:
    """Chapter 2 cut to its first code cell and its exercises (the checks and their solutions)."""
    nb = nbformat.read(ROOT / "chapters" / f"{CHAPTER}.ipynb", as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    imports = next(i for i, c in enumerate(nb.cells) if "import math" in c.source)
    start = next(i for i, c in enumerate(nb.cells) if "{exercise}" in c.source) - 1
    nb.cells = [nb.cells[0], nb.cells[first], nb.cells[imports]] + nb.cells[start:]
    return nb


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("class")
    (tmp / "chapters").mkdir()
    nbformat.write(short_chapter(), tmp / "chapters" / f"{CHAPTER}.ipynb")
    lines = classroom.release(tmp / "chapters", tmp / "course", tmp / "student")
    return tmp, lines


def test_release_is_a_student_version(course):
    tmp, lines = course
    assert lines == [f"written    {tmp / 'student' / 'chapters' / f'{CHAPTER}.ipynb'}"]
    nb = nbformat.read(tmp / "student" / "chapters" / f"{CHAPTER}.ipynb", as_version=4)
    text = json.dumps(nb)
    assert "BEGIN SOLUTION" not in text and "{solution-start}" not in text and "{solution}" not in text
    assert "{exercise}" not in text and "{cite}" not in text  # plain Markdown (PlainMarkdown)
    statement = next(c.source for c in nb.cells if "`ex-02-row`" in c.source)
    head = "> **Exercise `ex-02-row`: One attention row**\n>\n> Write `my_attention_row("
    assert statement.startswith(head)
    assert "for x, y in zip(a, b)" not in _cell(nb, "ex-02-dot-solution").source
    assert 'raise NotImplementedError("multiply matching entries' in _cell(nb, "ex-02-dot-solution").source
    check = _cell(nb, "ex-02-dot-check")
    assert check.source == "check.dot(my_dot)" and check.metadata["editable"] is False
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_release_never_overwrites_a_changed_notebook(course, tmp_path):
    tmp, _ = course
    out = tmp_path / "student"
    shutil.copytree(tmp / "student", out)
    mine = out / "chapters" / f"{CHAPTER}.ipynb"
    nb = nbformat.read(mine, as_version=4)
    _cell(nb, "ex-02-dot-solution").source = "def my_dot(a, b):\n    return 42  # my work"
    nbformat.write(nb, mine)
    before = mine.read_bytes()
    lines = classroom.release(tmp / "chapters", tmp / "course", out)
    assert mine.read_bytes() == before
    assert lines[0].startswith("KEPT") and "updates" in lines[0]
    assert (out / "updates" / f"{CHAPTER}.ipynb").is_file()


def _submit(tmp, student, nb, name=f"{CHAPTER}.ipynb"):
    folder = tmp / "course" / "submitted" / student / CHAPTER
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)


def answered(tmp) -> nbformat.NotebookNode:
    """The released student version, with every stub replaced by the author's solution code."""
    nb = nbformat.read(tmp / "course" / "release" / CHAPTER / f"{CHAPTER}.ipynb", as_version=4)
    source = nbformat.read(tmp / "chapters" / f"{CHAPTER}.ipynb", as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if cell.metadata.get("nbgrader", {}).get("solution"):
            lines = _cell(source, grade_id).source.splitlines()
            cell.source = "\n".join(line for line in lines if not line.strip().startswith("### "))
    return nb


@pytest.fixture(scope="module")
def graded(course):
    tmp, _ = course
    _submit(tmp, "ana", answered(tmp))

    mistake = answered(tmp)
    row = _cell(mistake, "ex-02-row-solution")
    row.source = row.source.replace("my_dot(q, k) / math.sqrt(len(q)) for", "my_dot(q, k) for")
    _submit(tmp, "ben", mistake)

    broken = answered(tmp)
    missing_colon = "def my_dot(a, b)\n    return sum(x * y for x, y in zip(a, b))"
    _cell(broken, "ex-02-dot-solution").source = missing_colon
    _submit(tmp, "cem", broken)

    renamed = answered(tmp)
    renamed.cells.remove(_cell(renamed, "ex-02-row-check"))  # a deleted check cell still counts
    _submit(tmp, "dora", renamed, name=f"{CHAPTER} (1).ipynb")

    (tmp / "course" / "submitted" / "eve").mkdir()
    (tmp / "course" / "submitted" / "fay" / CHAPTER).mkdir(parents=True)
    (tmp / "course" / "submitted" / "fay" / CHAPTER / f"{CHAPTER}.ipynb").write_text("{not json")
    submitted = {p: p.read_bytes() for p in (tmp / "course" / "submitted").rglob("*") if p.is_file()}

    rows = classroom.grade(tmp / "course")
    after = {p: p.read_bytes() for p in (tmp / "course" / "submitted").rglob("*") if p.is_file()}
    assert after == submitted  # grading only reads what students wrote
    return tmp, {(r.student, r.chapter): r for r in rows}, rows


def test_scores(graded):
    _, by, _ = graded
    assert by["ana", CHAPTER].score == "3/3"
    assert by["ben", CHAPTER].score == "2/3"
    assert by["cem", CHAPTER].score == "1/3"  # my_dot is broken, and my_attention_row uses it
    assert by["dora", CHAPTER].score == "2/3"  # out of 3: the deleted check is not forgotten


def test_report_lines(graded):
    _, by, rows = graded
    assert any("missing 1/sqrt(d_k) scaling" in n for n in by["ben", CHAPTER].notes)
    assert any(n.startswith("syntax error in ex-02-dot-solution, line 1") for n in by["cem", CHAPTER].notes)
    assert any("was renamed: graded as 02_attention_with_loops" in n for n in by["dora", CHAPTER].notes)
    assert "check cell ex-02-row-check was deleted: it scores 0" in by["dora", CHAPTER].notes
    assert any("no notebook in" in n for r in rows if r.student == "eve" for n in r.notes)
    fay = [n for r in rows if r.student == "fay" for n in r.notes]
    assert any("is not a readable notebook" in n for n in fay)
    report = classroom.format_rows(rows)
    print(report)  # the class's grade table, shown with pytest -s
    for student in ("ana", "ben", "cem", "dora", "eve", "fay"):
        assert student in report


def test_named_mistake_reaches_the_feedback(graded):
    tmp, _, _ = graded
    html = (tmp / "course" / "feedback" / "ben" / CHAPTER / f"{CHAPTER}.html").read_text()
    assert "missing 1/sqrt(d_k) scaling" in html
    assert "Score: 2.0 / 3.0" in html or "2.0 / 3.0" in html


def test_grades_csv(graded):
    tmp, _, _ = graded
    rows = list(csv.DictReader(open(tmp / "course" / "grades.csv")))
    scores = {r["student_id"]: float(r["raw_score"]) for r in rows if r["assignment"] == CHAPTER}
    assert scores == {"ana": 3.0, "ben": 2.0, "cem": 1.0, "dora": 2.0}


def test_foreign_chapter_is_recognised():
    prints = {
        "02_attention_with_loops": ["dot", "softmax_list", "attention_row"],
        "03_vectorising_with_numpy": ["scores", "softmax", "attention"],
    }
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("check.scores(f)\ncheck.softmax(g)")])
    assert classroom.recognise(nb, prints) == "03_vectorising_with_numpy"
    assert classroom.recognise(nbformat.v4.new_notebook(), prints) is None


def test_a_failing_check_raises_only_under_the_autograder(monkeypatch, capsys):
    from selfattention import checks
    from selfattention.checks._core import RAISE_VAR, CheckError

    def my_dot(a, b):
        return [x * y for x, y in zip(a, b)]

    monkeypatch.delenv(RAISE_VAR, raising=False)
    assert not checks.dot(my_dot)  # a learner's kernel: the check prints, the notebook goes on
    monkeypatch.setenv(RAISE_VAR, "1")
    with pytest.raises(CheckError, match="an elementwise product that was not summed"):
        checks.dot(my_dot)
    assert checks.dot(lambda a, b: sum(x * y for x, y in zip(a, b)))


plugins = _load("nbgrader_plugins")
REAL_CHAPTERS = sorted((ROOT / "chapters").glob("[0-9]*.ipynb"))


@pytest.mark.parametrize("path", REAL_CHAPTERS, ids=[p.stem for p in REAL_CHAPTERS])
def test_every_real_chapter_loses_its_solutions(path):
    """The course's three release plugins on every chapter (fast: no nbgrader process, no kernel)."""
    source = nbformat.read(path, as_version=4)
    nb, _ = plugins.RemoveWebSolutions().preprocess(copy.deepcopy(source), {"unique_key": path.stem})
    nb, _ = plugins.PlainMarkdown().preprocess(nb, {})
    nb, _ = plugins.HintedClearSolutions().preprocess(nb, {})
    text = json.dumps(nb)
    assert "BEGIN SOLUTION" not in text and "{solution" not in text and "widgets" not in nb.metadata
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert not re.search(r"\{(exercise|admonition|cite|ref)\}|^\([\w:.-]+\)=", markdown, re.M)
    exercises = sum(c.source.count("{exercise}") for c in source.cells if c.cell_type == "markdown")
    assert markdown.count("> **Exercise `ex-") == exercises
    solutions = [c for c in source.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert text.count("raise NotImplementedError(") == len(solutions)
    assert "# YOUR CODE HERE" in text and plugins.DEFAULT_HINT not in text  # every exercise has a hint


def test_myst_markup_becomes_plain_markdown():
    citations = {
        "vaswani2017attention": "Vaswani *et al.*, 2017",
        "dao2022flashattention": "Dao *et al.*, 2022",
    }
    text = (
        "(sec-x)=\n## Title\n\nAs {cite}`vaswani2017attention` and {cite}`dao2022flashattention, nokey` say,"
        " see {ref}`the masks <sec-masks>` and {ref}`ex-06-fix`.\n\n"
        "````{exercise} Fix it\n:label: ex-06-fix\n\nThe code:\n\n```python\nx = 1\n```\n\nFix $x$.\n````\n\n"
        "```{admonition} Heads up\n:class: note\n\nA {cite}`vaswani2017attention` note.\n```\n\n"
        ":::{tip}\nNested:\n```{exercise}\nNo title, no label.\n```\n:::\n\n"
        "```{figure} keep.png\nA figure stays.\n```"
    )
    assert plugins.myst_to_markdown(text, citations) == (
        "## Title\n\nAs [Vaswani *et al.*, 2017] and [Dao *et al.*, 2022; nokey] say,"
        " see the masks and `ex-06-fix`.\n\n"
        "> **Exercise `ex-06-fix`: Fix it**\n>\n> The code:\n>\n"
        "> ```python\n> x = 1\n> ```\n>\n> Fix $x$.\n\n"
        "> **Heads up**\n>\n> A [Vaswani *et al.*, 2017] note.\n\n"
        "> **Tip**\n>\n> Nested:\n> > **Exercise**\n> >\n> > No title, no label.\n\n"
        "```{figure} keep.png\nA figure stays.\n```"
    )


def test_citations_come_from_the_bibliography():
    citations = plugins.load_citations(ROOT / "references.bib")
    assert citations["vaswani2017attention"] == "Vaswani *et al.*, 2017"
    assert citations["shazeer2019fast"] == "Shazeer, 2019"  # one author: no et al.
    bib_keys = re.findall(r"^@\w+\{([^,\s]+),", (ROOT / "references.bib").read_text(), re.M)
    assert sorted(citations) == sorted(bib_keys)


def test_a_code_cell_inside_a_solution_dropdown_is_an_error():
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("```{solution-start} ex-x\n:class: dropdown\n```"),
            nbformat.v4.new_code_cell("answer = 42"),
            nbformat.v4.new_markdown_cell("```{solution-end}\n```"),
        ]
    )
    with pytest.raises(ValueError, match="02_x: cell 1 is a code cell between .* would hand out the answer"):
        plugins.RemoveWebSolutions().preprocess(nb, {"unique_key": "02_x"})


def test_triage_grades_a_foreign_chapter_as_what_it_is(tmp_path):
    """A chapter-3 notebook saved under chapter 2's name (no nbgrader run: triage only)."""
    prints = {
        "02_attention_with_loops": ["dot", "softmax_list", "attention_row"],
        "03_vectorising_with_numpy": ["scores", "softmax", "attention"],
    }
    for chapter, calls in prints.items():
        cells = [nbformat.v4.new_code_cell(f"check.{name}(f)") for name in calls]
        source = tmp_path / "course" / "source" / chapter / f"{chapter}.ipynb"
        source.parent.mkdir(parents=True)
        nbformat.write(nbformat.v4.new_notebook(cells=cells), source)
    chapter3 = nbformat.read(
        tmp_path / "course" / "source" / "03_vectorising_with_numpy" / "03_vectorising_with_numpy.ipynb",
        as_version=4,
    )
    wrong = tmp_path / "course" / "submitted" / "gus" / CHAPTER / f"{CHAPTER}.ipynb"
    wrong.parent.mkdir(parents=True)
    nbformat.write(chapter3, wrong)
    rows, wanted = classroom.triage(
        tmp_path / "course" / "submitted",
        tmp_path / "course" / "triaged",
        prints,
        [CHAPTER, "03_vectorising_with_numpy"],
    )
    by = {(r.student, r.chapter): r for r in rows}
    assert by["gus", "03_vectorising_with_numpy"].notes[0] == (
        f"gus/{CHAPTER}/{CHAPTER}.ipynb is 03_vectorising_with_numpy, not {CHAPTER}: "
        "graded as 03_vectorising_with_numpy"
    )
    assert by["gus", CHAPTER].score == "0 (missing)"
    assert (
        tmp_path
        / "course"
        / "triaged"
        / "gus"
        / "03_vectorising_with_numpy"
        / "03_vectorising_with_numpy.ipynb"
    ).is_file()
    assert wrong.is_file()  # the student's file stays where it was


def test_a_run_for_one_chapter_reports_only_that_chapter(tmp_path):
    """make grade CHAPTERS=02...: another chapter handed in is neither graded nor shown as graded."""
    prints = {CHAPTER: ["dot"], "03_vectorising_with_numpy": ["scores"]}
    for chapter, call in prints.items():
        source = tmp_path / "course" / "source" / chapter / f"{chapter}.ipynb"
        source.parent.mkdir(parents=True)
        cells = [nbformat.v4.new_code_cell(f"check.{call[0]}(f)")]
        nbformat.write(nbformat.v4.new_notebook(cells=cells), source)
    chapter3 = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("check.scores(f)")])
    for student, name in (("ivy", "03_vectorising_with_numpy"), ("gus", CHAPTER)):  # gus: the wrong name
        folder = tmp_path / "course" / "submitted" / student
        folder.mkdir(parents=True)
        nbformat.write(chapter3, folder / f"{name}.ipynb")
    ivy2 = tmp_path / "course" / "submitted" / "ivy" / f"{CHAPTER}.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("check.dot(f)")]), ivy2)
    rows, wanted = classroom.triage(
        tmp_path / "course" / "submitted", tmp_path / "course" / "triaged", prints, [CHAPTER]
    )
    assert wanted == [CHAPTER]
    table = sorted((r.student, r.chapter, r.score) for r in rows)
    assert table == [
        ("gus", CHAPTER, "0 (missing)"),
        ("gus", "03_vectorising_with_numpy", "not graded"),
        ("ivy", CHAPTER, ""),
    ]
    gus3 = next(r for r in rows if r.chapter == "03_vectorising_with_numpy")
    assert gus3.notes == [
        f"gus/{CHAPTER}.ipynb is 03_vectorising_with_numpy, not {CHAPTER}: "
        "graded as 03_vectorising_with_numpy",
        f"not graded: this run grades {CHAPTER}",
    ]


def test_a_chapter_nobody_handed_in_is_a_row_not_an_nbgrader_error(tmp_path):
    chapter3 = "03_vectorising_with_numpy"
    for chapter, call in ((CHAPTER, "dot"), (chapter3, "scores")):
        source = tmp_path / "course" / "source" / chapter / f"{chapter}.ipynb"
        source.parent.mkdir(parents=True)
        cells = [nbformat.v4.new_code_cell(f"check.{call}(f)")]
        nbformat.write(nbformat.v4.new_notebook(cells=cells), source)
    (tmp_path / "course" / "submitted" / "ivy").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("check.scores(f)")])
    nbformat.write(nb, tmp_path / "course" / "submitted" / "ivy" / f"{chapter3}.ipynb")
    rows = classroom.grade(tmp_path / "course", [CHAPTER])  # returns before nbgrader: nothing to grade
    assert sorted((r.student, r.chapter, r.score, r.notes[0]) for r in rows) == [
        ("-", CHAPTER, "", f"nobody handed in {CHAPTER}"),
        ("ivy", CHAPTER, "0 (missing)", f"no notebook for {CHAPTER} in submitted/ivy"),
    ]


def test_a_check_stopped_by_the_time_limit_says_so(tmp_path):
    cell = nbformat.v4.new_code_cell("check.dot(my_dot)")
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "ex-02-dot-check", "points": 1}
    cell.outputs = [nbformat.v4.new_output("error", ename="KeyboardInterrupt", evalue="", traceback=[])]
    path = tmp_path / "autograded.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    assert classroom.failed_checks(path) == [
        "ex-02-dot-check: did not finish in time and was stopped (an endless loop, or far too slow)"
    ]


def test_triage_prefers_the_file_with_the_chapters_name(tmp_path):
    prints = {CHAPTER: ["dot"]}
    source = tmp_path / "course" / "source" / CHAPTER / f"{CHAPTER}.ipynb"
    source.parent.mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("check.dot(f)")])
    nbformat.write(nb, source)
    folder = tmp_path / "course" / "submitted" / "hal" / CHAPTER
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{CHAPTER} (1).ipynb")
    nbformat.write(nb, folder / f"{CHAPTER}.ipynb")
    rows, _ = classroom.triage(
        tmp_path / "course" / "submitted", tmp_path / "course" / "triaged", prints, None
    )
    notes = [n for r in rows for n in r.notes]
    assert notes == [
        f"hal/{CHAPTER}/{CHAPTER} (1).ipynb ignored: hal/{CHAPTER}/{CHAPTER}.ipynb is already "
        f"graded as {CHAPTER}"
    ]
