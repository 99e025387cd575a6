#!/usr/bin/env python3
"""The two instructor commands, thin wrappers around nbgrader (configured in nbgrader_config.py).

Usage: python tools/classroom.py release [--out student]    (make student)
       python tools/classroom.py grade [--chapter ID ...]   (make grade)

``release`` copies every chapter to ``course/source/<id>/<id>.ipynb`` (one assignment per chapter,
named after its file), runs ``nbgrader generate_assignment`` on all of them into
``course/release/``, then copies the student versions to ``student/chapters/``. It never
overwrites a notebook a student has changed: a notebook is replaced only when it is still
byte-for-byte the version released last time (``student/.released.json`` keeps their hashes);
otherwise the new version goes to ``student/updates/`` and a line says so.

``grade`` grades ``course/submitted/<student>/...`` (what ``nbgrader collect`` or
``nbgrader zip_collect`` writes, or folders copied by hand). It first sorts what each student
handed in: every notebook found is recognised by its exercise checks, so a renamed file
(``02_attention_with_loops (1).ipynb``) is graded as its chapter and a chapter-3 notebook saved
under a chapter-2 name is graded as chapter 3, each with a line in the report. The sorted copies
go to ``course/triaged/`` (rebuilt every time; the students' files are only read). Then it runs
``nbgrader autograde`` and ``generate_feedback`` (HTML in ``course/feedback/``), exports the
gradebook to ``course/grades.csv`` and prints one row per student and chapter. Corrupt notebooks,
empty folders, missing chapters and syntax errors get their own rows; the batch goes on.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbgrader_cells import check_calls, grade_ids  # noqa: E402 (a sibling tool)

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ".released.json"


def nbgrader(args: list[str], course: Path) -> subprocess.CompletedProcess:
    """Run one nbgrader command on the course folder ``course`` (from the repository root)."""
    env = dict(os.environ)
    # nbgrader runs `alembic` (its database migrations) as a program: it must be on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [
        sys.executable,
        "-m",
        "nbgrader",
        *args,
        f"--CourseDirectory.root={course}",
        f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}",
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)


def _fail(what: str, proc: subprocess.CompletedProcess) -> None:
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line or "Error" in line]
    raise SystemExit(f"classroom: {what} failed (exit {proc.returncode}):\n" + "\n".join(errors[-15:]))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def find_chapters(chapters: Path) -> list[Path]:
    return sorted(p for p in chapters.glob("*.ipynb") if not p.name.startswith("_"))


# ---------------------------------------------------------------------------------------------
# release (make student)
# ---------------------------------------------------------------------------------------------


def release(chapters: Path, course: Path, out: Path) -> list[str]:
    """Generate the student versions and copy them to ``out/chapters``; return the report lines."""
    sources = find_chapters(chapters)
    if not sources:
        raise SystemExit(f"classroom: no chapter notebooks in {chapters}")
    for nb in sources:
        target = course / "source" / nb.stem / nb.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(nb, target)
    proc = nbgrader(["generate_assignment", "*", "--force"], course)
    if proc.returncode != 0:
        _fail("nbgrader generate_assignment", proc)

    (out / "chapters").mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    released = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    lines = []
    for nb in sources:
        new = course / "release" / nb.stem / nb.name
        dest = out / "chapters" / nb.name
        if dest.exists() and _sha(dest) == _sha(new):
            lines.append(f"unchanged  {dest}")
        elif not dest.exists() or released.get(nb.name) == _sha(dest):
            shutil.copyfile(new, dest)
            lines.append(f"written    {dest}")
        else:  # the student worked in it: theirs stays, the new release goes beside it
            update = out / "updates" / nb.name
            update.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(new, update)
            lines.append(f"KEPT       {dest} (you changed it; the new version is {update})")
            continue
        released[nb.name] = _sha(dest)
    manifest_path.write_text(json.dumps(released, indent=1, sort_keys=True) + "\n")
    readme = ROOT / "docs" / "student_readme.md"
    if readme.exists():
        shutil.copyfile(readme, out / "README.md")
    return lines


# ---------------------------------------------------------------------------------------------
# grade (make grade)
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the grade report: a student's chapter, or a problem with what they handed in."""

    student: str
    chapter: str
    score: str = ""
    notes: list[str] = field(default_factory=list)


def chapter_fingerprints(course: Path) -> dict[str, list[str]]:
    """Each released chapter's check names, in order (``{"02_attention_with_loops": ["dot", ...]}``)."""
    return {
        path.parent.name: check_calls(nbformat.read(path, as_version=4))
        for path in sorted((course / "source").glob("*/*.ipynb"))
    }


def recognise(nb, prints: dict[str, list[str]]) -> str | None:
    """The chapter whose checks ``nb`` calls (most in common), or None when it calls none of them."""
    calls = set(check_calls(nb))
    best = max(prints, key=lambda ch: (len(calls & set(prints[ch])), ch), default=None)
    return best if best is not None and calls & set(prints[best]) else None


def deleted_checks(nb, source) -> list[str]:
    """A line for each graded check cell of ``source`` that ``nb`` no longer has."""
    have = set(grade_ids(nb))
    return [f"check cell {gid} was deleted: it scores 0" for gid in grade_ids(source) if gid not in have]


def syntax_errors(nb) -> list[str]:
    """A line for each solution cell of ``nb`` that is not valid Python."""
    found = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("solution"):
            continue
        try:
            ast.parse(cell.source)
        except SyntaxError as exc:
            found.append(
                f"syntax error in {meta.get('grade_id', 'a solution cell')}, line {exc.lineno}: {exc.msg}"
            )
    return found


def triage(
    submitted: Path, triaged: Path, prints: dict[str, list[str]], chapters: list[str] | None
) -> tuple[list[Row], list[str]]:
    """Copy each student's notebooks to ``triaged/<student>/<chapter>/<chapter>.ipynb``.

    Returns the problem rows and the chapters to grade. Nothing under ``submitted`` is changed.
    """
    shutil.rmtree(triaged, ignore_errors=True)
    rows: list[Row] = []
    placed: dict[tuple[str, str], Path] = {}
    sources: dict[str, nbformat.NotebookNode] = {}
    students = sorted(p for p in submitted.iterdir() if p.is_dir()) if submitted.is_dir() else []
    for folder in students:
        found = [p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
        # A file with its chapter's own name comes first: it wins over a renamed copy of the same chapter.
        notebooks = sorted(found, key=lambda p: (p.stem not in prints, str(p)))
        if not notebooks:
            rows.append(Row(folder.name, "-", "", [f"no notebook in {folder}"]))
        for path in notebooks:
            shown = path.relative_to(submitted)
            try:
                nb = nbformat.read(path, as_version=4)
            except Exception as exc:  # any unreadable file: a row, and the batch goes on
                rows.append(
                    Row(
                        folder.name,
                        "?",
                        "not graded",
                        [
                            f"{shown} is not a readable notebook ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:80]})"
                        ],
                    )
                )
                continue
            chapter = recognise(nb, prints)
            if chapter is None:
                rows.append(
                    Row(
                        folder.name,
                        "?",
                        "not graded",
                        [f"{shown} calls none of the course's checks: not a chapter notebook"],
                    )
                )
                continue
            named = path.stem if path.stem in prints else path.parent.name
            notes = []
            if named in prints and named != chapter:
                notes.append(f"{shown} is {chapter}, not {named}: graded as {chapter}")
            elif path.name != f"{chapter}.ipynb":
                notes.append(f"{shown} was renamed: graded as {chapter}")
            if (folder.name, chapter) in placed:
                notes = [
                    f"{shown} ignored: {placed[folder.name, chapter].relative_to(submitted)} "
                    f"is already graded as {chapter}"
                ]
                rows.append(Row(folder.name, chapter, "duplicate", notes))
                continue
            dest = triaged / folder.name / chapter / f"{chapter}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            stamp = path.parent / "timestamp.txt"
            if stamp.is_file():  # nbgrader collect's submission time, for late penalties
                shutil.copyfile(stamp, dest.parent / "timestamp.txt")
            placed[folder.name, chapter] = path
            if chapter not in sources:  # read once per chapter, not once per student
                released = submitted.parent / "source" / chapter / f"{chapter}.ipynb"
                sources[chapter] = nbformat.read(released, as_version=4)
            notes += deleted_checks(nb, sources[chapter]) + syntax_errors(nb)
            rows.append(Row(folder.name, chapter, "", notes))
    wanted = chapters or sorted({ch for (_, ch) in placed})
    for folder in students:
        for chapter in wanted:
            if (folder.name, chapter) not in placed and any(p.is_file() for p in folder.rglob("*.ipynb")):
                rows.append(
                    Row(
                        folder.name,
                        chapter,
                        "0 (missing)",
                        [f"no notebook for {chapter} in {folder.relative_to(submitted.parent)}"],
                    )
                )
    if chapters:  # a run for some chapters: the others handed in are not graded, nor reported as if they were
        skipped = f"not graded: this run grades {', '.join(wanted)}"
        rows = [
            row
            if row.chapter in ("-", "?") or row.chapter in wanted
            else Row(row.student, row.chapter, "not graded", [*row.notes, skipped])
            for row in rows
            if row.chapter in ("-", "?") or row.chapter in wanted or row.notes
        ]
    return rows, wanted


def failed_checks(autograded: Path) -> list[str]:
    """The first line of each failing check cell's error in an autograded notebook."""
    nb = nbformat.read(autograded, as_version=4)
    found = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade"):
            continue
        for out in cell.get("outputs", []):
            if out.output_type == "error" and out.ename == "KeyboardInterrupt":
                # nbgrader interrupts a cell that runs past c.Execute.timeout (nbgrader_config.py)
                found.append(
                    f"{meta['grade_id']}: did not finish in time and was stopped "
                    "(an endless loop, or far too slow)"
                )
                break
            if out.output_type == "error":
                text = out.evalue.splitlines()[0] if out.evalue else out.ename
                found.append(f"{meta['grade_id']}: {out.ename}: {text[:160]}")
                break
    return found


def grade(course: Path, chapters: list[str] | None = None) -> list[Row]:
    """Triage, autograde, generate feedback and export; return the report rows."""
    submitted, triaged = course / "submitted", course / "triaged"
    prints = chapter_fingerprints(course)
    if not prints:
        raise SystemExit(f"classroom: no assignments in {course / 'source'}: run `make student` first")
    rows, wanted = triage(submitted, triaged, prints, chapters)
    handed_in = [ch for ch in wanted if any(triaged.glob(f"*/{ch}/*.ipynb"))]
    rows += [Row("-", ch, "", [f"nobody handed in {ch}"]) for ch in wanted if ch not in handed_in]
    if not handed_in:
        if not rows:
            rows.append(Row("-", "-", "", [f"nothing to grade: {submitted} has no student folders"]))
        return rows
    steps = [
        ["autograde", ch, f"--CourseDirectory.submitted_directory={triaged.name}", "--force"]
        for ch in handed_in
    ] + [["generate_feedback", ch, "--force"] for ch in handed_in]
    for step in steps:
        proc = nbgrader(step, course)
        if proc.returncode != 0:  # one student's failure is reported below; the batch goes on
            rows.append(
                Row(
                    "-",
                    step[1],
                    "",
                    [f"nbgrader {step[0]} reported errors: " + "; ".join(_errors(proc))[:300]],
                )
            )
    proc = nbgrader(["export", f"--to={course / 'grades.csv'}"], course)
    if proc.returncode != 0:
        _fail("nbgrader export", proc)
    scores = {(r["student_id"], r["assignment"]): r for r in csv.DictReader(open(course / "grades.csv"))}
    for row in rows:
        got = scores.get((row.student, row.chapter))
        autograded = course / "autograded" / row.student / row.chapter / f"{row.chapter}.ipynb"
        if got and not row.score and autograded.exists():
            row.score = f"{float(got['raw_score']):g}/{float(got['max_score']):g}"
            row.notes += failed_checks(autograded)
    return rows


def _errors(proc: subprocess.CompletedProcess) -> list[str]:
    return [line.split("] ", 1)[-1] for line in proc.stderr.splitlines() if "| ERROR]" in line]


def format_rows(rows: list[Row]) -> str:
    rows = sorted(rows, key=lambda r: (r.student, r.chapter))
    width = max([len(r.student) for r in rows] + [7])
    cw = max([len(r.chapter) for r in rows] + [7])
    lines = [f"{'student':<{width}}  {'chapter':<{cw}}  {'score':<11}  notes", "-" * (width + cw + 30)]
    for r in rows:
        first, *rest = r.notes or [""]
        lines.append(f"{r.student:<{width}}  {r.chapter:<{cw}}  {r.score:<11}  {first}")
        lines += [f"{'':<{width + cw + 17}}{note}" for note in rest]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--course", type=Path, default=ROOT / "course", help="nbgrader's course folder")
    sub = parser.add_subparsers(dest="command", required=True)
    rel = sub.add_parser("release", help="student versions of every chapter (make student)")
    rel.add_argument("--chapters", type=Path, default=ROOT / "chapters")
    rel.add_argument("--out", type=Path, default=ROOT / "student")
    gr = sub.add_parser("grade", help="autograde course/submitted and write feedback (make grade)")
    gr.add_argument("--chapter", action="append", help="grade this chapter only (repeatable)")
    args = parser.parse_args(argv)
    course = args.course.resolve()
    if args.command == "release":
        for line in release(args.chapters.resolve(), course, args.out.resolve()):
            print(f"make student: {line}")
        return 0
    rows = grade(course, args.chapter)
    report = format_rows(rows)
    (course / "grade_report.txt").write_text(report + "\n", encoding="utf-8")
    print(report)
    print(
        f"\nfeedback: {course / 'feedback'}/<student>/<chapter>/<chapter>.html; "
        f"grades: {course / 'grades.csv'}; this report: {course / 'grade_report.txt'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
