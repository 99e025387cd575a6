#!/usr/bin/env python3
"""Write the student versions of the chapters: solutions replaced by stubs, checks kept.

Usage: python tools/make_student.py [--chapters chapters] [--out student] [--zip student.zip]
       (``make student`` runs it with these defaults; ``--no-zip`` skips the archive)

For every ``chapters/**/*.ipynb`` it writes ``student/chapters/<same path>.ipynb`` where

* each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block of a code cell (the convention of
  docs/authoring.md; cells tagged ``solution``) becomes, at the block's indentation::

      # YOUR CODE HERE
      raise NotImplementedError("<the block's ### HINT: line, or a default hint>")

  A cell tagged ``solution`` without markers is an error (the whole cell would be the answer);
* the solutions shown on the website are removed: the ``{solution-start}`` ... ``{solution-end}``
  region (its markdown cells and the directives) and any ``{solution}`` directive block. A code
  cell inside that region that is not a solution cell is an error, since it would leak the answer;
* the check cells (``check.softmax(my_softmax)``) are kept, so that running an unfinished
  exercise stops at its check with the hint, and a finished one says whether it is right;
* every output and execution count is cleared, and the saved widget state is dropped.

It also writes ``student/README.md`` (how to work through an exercise) and ``student.zip``
(the ``student/`` folder, with fixed timestamps so that the same chapters give the same archive).
It needs only the repository's own files and ``nbformat``, so it works from a fresh clone.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from selfattention.checks import CHECK_CALL_RE

ROOT = Path(__file__).resolve().parent.parent

BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)###\s*BEGIN SOLUTION\s*$")
END_RE = re.compile(r"^[ \t]*###\s*END SOLUTION\s*$")
HINT_RE = re.compile(r"^[ \t]*###\s*HINT:\s*(?P<hint>.*?)\s*$")
FENCE_OPEN_RE = re.compile(r"^[ \t]*(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}")
SOLUTION_DIRECTIVES = {"solution", "solution-start", "solution-end"}
DEFAULT_HINT = "write this part, then run the check below it."
STUB_COMMENT = "# YOUR CODE HERE"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class StudentError(ValueError):
    """A chapter does not follow the exercise convention; the message names notebook and cell."""


@dataclass
class Report:
    """What was done to one notebook."""

    source: Path
    target: Path
    stubs: int = 0
    checks: int = 0
    removed_cells: int = 0
    hints: list[str] = field(default_factory=list)


def _where(nb_path: Path | str, index: int, cell) -> str:
    cid = cell.get("id")
    return f"{nb_path}: cell {index}" + (f" (id {cid})" if cid else "")


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def has_markers(source: str) -> bool:
    """Whether a code cell has solution markers (a lone END counts: it is reported as an error)."""
    return any(BEGIN_RE.match(line) or END_RE.match(line) for line in source.splitlines())


def count_checks(nb) -> int:
    """Number of ``check.<name>(`` calls in the notebook's code cells."""
    return sum(len(CHECK_CALL_RE.findall(c.source)) for c in nb.cells if c.cell_type == "code")


def stub_source(source: str, where: str = "cell") -> tuple[str, list[str]]:
    """Replace every marked solution block of ``source`` by a stub; return it and the hints."""
    out: list[str] = []
    hints: list[str] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        begin = BEGIN_RE.match(lines[i])
        if END_RE.match(lines[i]):
            raise StudentError(f"{where}: '### END SOLUTION' on line {i + 1} without a BEGIN")
        if not begin:
            out.append(lines[i])
            i += 1
            continue
        indent, start = begin.group("indent"), i
        hint_parts: list[str] = []
        i += 1
        while i < len(lines) and not END_RE.match(lines[i]):
            if BEGIN_RE.match(lines[i]):
                raise StudentError(f"{where}: a second '### BEGIN SOLUTION' on line {i + 1} "
                                   f"before the END of the one on line {start + 1}")
            h = HINT_RE.match(lines[i])
            if h and h.group("hint"):
                hint_parts.append(h.group("hint"))
            i += 1
        if i == len(lines):
            raise StudentError(f"{where}: '### BEGIN SOLUTION' on line {start + 1} has no "
                               "'### END SOLUTION'")
        hint = " ".join(hint_parts) or DEFAULT_HINT
        hints.append(hint)
        out.append(f"{indent}{STUB_COMMENT}")
        out.append(f"{indent}raise NotImplementedError({json.dumps(hint, ensure_ascii=False)})")
        i += 1  # skip the END line
    return "\n".join(out), hints


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


def make_student_notebook(nb, nb_path: Path | str = "notebook") -> tuple[object, Report]:
    """A student copy of ``nb`` (an nbformat notebook); ``nb`` itself is left unchanged."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # a deep copy
    report = Report(Path(str(nb_path)), Path())
    cells = []
    in_region = False
    region_start = str(nb_path)
    for index, cell in enumerate(nb.cells):
        where = _where(nb_path, index, cell)
        if cell.cell_type == "markdown":
            text, in_region_after = strip_solution_markdown(cell.source, in_region)
            if in_region_after and not in_region:
                region_start = where
            in_region = in_region_after
            if not text.strip():
                report.removed_cells += 1
                continue
            cell.source = text
        elif cell.cell_type == "code":
            tagged = "solution" in _tags(cell)
            marked = has_markers(cell.source)
            if tagged and not marked:
                raise StudentError(
                    f"{where}: tagged 'solution' but has no '### BEGIN SOLUTION' ... "
                    "'### END SOLUTION' markers, so the whole answer would be handed out. Mark "
                    "the part to hide (see docs/authoring.md, 'Exercises that check themselves')."
                )
            if in_region and not (tagged or marked):
                raise StudentError(
                    f"{where}: a code cell between {{solution-start}} and {{solution-end}} that is "
                    "not a solution cell: tag it 'solution' and mark the part to hide, or move it "
                    "out of the solution."
                )
            if marked:
                cell.source, hints = stub_source(cell.source, where)
                report.stubs += len(hints)
                report.hints.extend(hints)
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "ExecuteTime", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
        cells.append(cell)
    if in_region:
        raise StudentError(f"{region_start}: a {{solution-start}} without its {{solution-end}}")
    nb.cells = cells
    nb.metadata.pop("widgets", None)  # saved widget state: the students' kernel makes its own
    report.checks = count_checks(nb)
    return nb, report


def find_notebooks(chapters: Path) -> list[Path]:
    return sorted(p for p in chapters.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _repository_url(root: Path) -> str | None:
    """The repository URL from _config.yml (read with a regex: no YAML parser needed)."""
    config = root / "_config.yml"
    if not config.exists():
        return None
    m = re.search(r"^repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+url:\s*(\S+)",
                  config.read_text(encoding="utf-8"), re.M)
    return m.group(1) if m else None


def student_readme(reports: list[Report], out: Path, url: str | None) -> str:
    install = (f'pip install "selfattention @ git+{url}"' if url
               else "pip install <the course repository>")
    rows = "\n".join(
        f"| `{r.target.relative_to(out).as_posix()}` | {r.stubs} | {r.checks} |" for r in reports
    )
    return f"""# Self-Attention, from Loops to GPUs: student notebooks

These are the course's chapters with the solutions of the exercises taken out. Everything else,
the explanations, figures and widgets, is as on the course website.

## Working through an exercise

1. Run the notebook from the top (*Run all*). It stops at the first exercise you have not
   written yet, with a `NotImplementedError` that carries a **hint**.
2. Find the cell marked `# YOUR CODE HERE`, delete the `raise NotImplementedError(...)` line and
   write your code there. Keep the function's name and arguments.
3. Run that cell, then the check below it (`check.softmax(my_softmax)` and the like):
   - `✅ softmax: correct on all 4 test cases.` means you are done;
   - `❌ ...` says what is wrong, names the classic mistake when it recognises one, and shows a
     small input with the expected and the obtained values. Fix, re-run both cells.
4. Carry on: the later cells may use your functions.

The checks only call your function on small examples; they never look at your code.

## Running the notebooks

- **Colab or a JupyterHub:** open a notebook; its first code cell installs the course library
  (`selfattention`) when it is missing. That needs internet access once.
- **Your own computer** (Python 3.10 or newer):

  ```bash
  python -m venv .venv && source .venv/bin/activate
  {install} jupyterlab
  jupyter lab chapters
  ```

A CPU is enough for every chapter; chapter 7 uses a GPU when there is one.

## Contents

| notebook | exercises to write | checks |
| --- | --- | --- |
{rows}
"""


def _write_zip(out: Path, zip_path: Path) -> None:
    files = sorted(p for p in out.rglob("*") if p.is_file())
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            info = zipfile.ZipInfo(f"{out.name}/{p.relative_to(out).as_posix()}", ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, p.read_bytes())


def build(
    chapters: Path | str = ROOT / "chapters",
    out: Path | str = ROOT / "student",
    zip_path: Path | str | None = ROOT / "student.zip",
    notebooks: list[Path] | None = None,
    repository_root: Path | str = ROOT,
) -> list[Report]:
    """Write the student versions of ``notebooks`` (default: every notebook under ``chapters``).

    Returns one :class:`Report` per notebook. Raises :class:`StudentError` (naming the notebook
    and the cell) when a chapter breaks the exercise convention; nothing is written then.
    """
    chapters, out = Path(chapters), Path(out)
    notebooks = find_notebooks(chapters) if notebooks is None else [Path(p) for p in notebooks]
    shown_root = Path(repository_root)
    results = []
    for path in notebooks:  # convert everything first, so that an error writes nothing
        try:
            shown = path.resolve().relative_to(shown_root.resolve())
        except ValueError:
            shown = path
        nb = nbformat.read(path, as_version=4)
        student_nb, report = make_student_notebook(nb, shown)
        nbformat.validate(student_nb)
        report.target = out / "chapters" / path.resolve().relative_to(chapters.resolve())
        results.append((student_nb, report))

    shutil.rmtree(out / "chapters", ignore_errors=True)  # no stale chapters from an earlier run
    for student_nb, report in results:
        report.target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student_nb, report.target)
    reports = [r for _, r in results]
    (out / "README.md").write_text(
        student_readme(reports, out, _repository_url(Path(repository_root))), encoding="utf-8"
    )
    if zip_path is not None:
        _write_zip(out, Path(zip_path))
    return reports


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chapters", type=Path, default=ROOT / "chapters",
                    help="folder of chapter notebooks (default: chapters/)")
    ap.add_argument("--out", type=Path, default=ROOT / "student",
                    help="output folder (default: student/)")
    ap.add_argument("--zip", type=Path, default=ROOT / "student.zip",
                    help="zip archive of the output folder (default: student.zip)")
    ap.add_argument("--no-zip", action="store_true", help="do not write the zip archive")
    args = ap.parse_args(argv)
    if not args.chapters.is_dir():
        print(f"make_student: ERROR: no chapters folder at {args.chapters}", file=sys.stderr)
        return 1
    try:
        reports = build(args.chapters, args.out, None if args.no_zip else args.zip)
    except StudentError as exc:
        print(f"make_student: ERROR: {exc}", file=sys.stderr)
        return 1
    for r in reports:
        print(f"make_student: {r.source} -> {r.target}: {r.stubs} exercise stub(s), "
              f"{r.checks} check(s)")
    where = args.out if args.no_zip else f"{args.out} and {args.zip}"
    print(f"make_student: {len(reports)} notebook(s) written to {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
