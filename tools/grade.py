#!/usr/bin/env python3
"""Grade notebooks by their exercise checks: run each one and count the checks that pass.

Usage: python tools/grade.py [--json] [--timeout 120] [--reference chapters] NOTEBOOK.ipynb [...]
       make grade NOTEBOOKS="submissions/*/02_attention_with_loops.ipynb"

Each notebook is executed from the top in a fresh ``python3`` kernel (nbclient), in its own folder,
with ``allow_errors``: a failing cell does not stop the run, so every exercise gets its chance.
The environment variable ``SELFATTENTION_CHECKS_LOG`` points the checks at a temporary file, where
every check call appends one JSON line (``{"check", "passed", "mistake", "message"}``, see
``selfattention/checks/_core.py``).

The checks a notebook *should* run are the ``check.<name>(...)`` calls in its code cells, or, with
``--reference DIR``, those of the notebook of the same name in DIR (the instructor's chapter), so
that deleting a check cell does not remove the exercise from the score. Each expected call is
matched, in order, with the next logged result of that check: passed, failed (with the mistake the
check named, "not implemented" for an untouched stub) or "not run" (the kernel never reached it).
The score is the number passed over the number expected.

The output is a table (one row per notebook) followed by each failure; ``--json`` prints the same
as JSON instead. The exit status is 0 when every notebook could be read and executed, whatever the
score; 1 otherwise.

The checks are formative feedback, not an exam: a student who edits the notebook can fool them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from selfattention.checks import CHECK_CALL_RE

LOG_VAR = "SELFATTENTION_CHECKS_LOG"


@dataclass
class CheckOutcome:
    check: str
    status: str  # "passed", "failed" or "not run"
    mistake: str | None = None


@dataclass
class Grade:
    notebook: str
    expected: int = 0
    passed: int = 0
    failed: int = 0
    not_run: int = 0
    score: float = 0.0
    cell_errors: int = 0
    first_error: str | None = None
    seconds: float = 0.0
    error: str | None = None  # the notebook could not be read or executed at all
    checks: list[CheckOutcome] = field(default_factory=list)


def expected_checks(nb) -> list[str]:
    """The check names called in the notebook's code cells, in order."""
    return [name for cell in nb.cells if cell.cell_type == "code"
            for name in CHECK_CALL_RE.findall(cell.source)]


def read_log(path: Path) -> list[dict]:
    entries = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kernel that died mid-write
    return entries


def match(expected: list[str], logged: list[dict]) -> list[CheckOutcome]:
    """Pair each expected check call with the next unused log entry of the same check."""
    used = [False] * len(logged)
    outcomes = []
    for name in expected:
        for i, entry in enumerate(logged):
            if not used[i] and entry.get("check") == name:
                used[i] = True
                ok = bool(entry.get("passed"))
                outcomes.append(CheckOutcome(name, "passed" if ok else "failed",
                                             None if ok else entry.get("mistake")))
                break
        else:
            outcomes.append(CheckOutcome(name, "not run"))
    return outcomes


def grade_notebook(path: Path, timeout: int = 120, reference: Path | None = None,
                   kernel_name: str = "python3") -> Grade:
    """Execute one notebook and grade its checks (the notebook file is not modified)."""
    grade = Grade(notebook=str(path))
    start = time.monotonic()
    try:
        nb = nbformat.read(path, as_version=4)
        ref_nb = nb
        if reference is not None and (reference / path.name).exists():
            ref_nb = nbformat.read(reference / path.name, as_version=4)
        expected = expected_checks(ref_nb)
    except Exception as exc:  # not a notebook, unreadable JSON, ...
        grade.error = f"could not read: {type(exc).__name__}: {exc}"
        return grade

    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        log = Path(tmp) / "checks.jsonl"
        old = os.environ.get(LOG_VAR)
        os.environ[LOG_VAR] = str(log)  # the kernel inherits the environment at start
        try:
            client = NotebookClient(
                nb, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
                resources={"metadata": {"path": str(path.resolve().parent)}},
            )
            client.execute()
        except Exception as exc:  # a cell timed out, the kernel died or could not start
            grade.error = f"execution stopped: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        finally:
            if old is None:
                os.environ.pop(LOG_VAR, None)
            else:
                os.environ[LOG_VAR] = old
        logged = read_log(log)

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                grade.cell_errors += 1
                if grade.first_error is None:
                    grade.first_error = f"{out.get('ename')}: {out.get('evalue', '')}"[:300]
    grade.checks = match(expected, logged)
    grade.expected = len(expected)
    grade.passed = sum(o.status == "passed" for o in grade.checks)
    grade.failed = sum(o.status == "failed" for o in grade.checks)
    grade.not_run = sum(o.status == "not run" for o in grade.checks)
    grade.score = grade.passed / grade.expected if grade.expected else 0.0
    grade.seconds = round(time.monotonic() - start, 1)
    return grade


def _short_names(grades: list[Grade]) -> tuple[str, dict[str, str]]:
    """Names relative to the notebooks' common folder (``submissions/``), to keep rows short."""
    names = [g.notebook for g in grades]
    if len(names) < 2:
        return "", {n: n for n in names}
    try:
        common = os.path.commonpath([os.path.dirname(n) or "." for n in names])
    except ValueError:  # absolute and relative paths mixed
        return "", {n: n for n in names}
    if common in ("", "."):
        return "", {n: n for n in names}
    return common, {n: os.path.relpath(n, common) for n in names}


def format_table(grades: list[Grade]) -> str:
    common, short = _short_names(grades)
    grades = [Grade(**{**asdict(g), "notebook": short[g.notebook], "checks": g.checks})
              for g in grades]
    name_w = max([len("notebook")] + [len(g.notebook) for g in grades])
    head = f"{'notebook':<{name_w}}  passed  failed  not run  score"
    lines = ([f"notebooks in {common}{os.sep}"] if common else []) + [head, "-" * len(head)]
    for g in grades:
        if g.error and not g.checks:
            lines.append(f"{g.notebook:<{name_w}}  ERROR: {g.error}")
            continue
        lines.append(f"{g.notebook:<{name_w}}  {g.passed:>6}  {g.failed:>6}  {g.not_run:>7}  "
                     f"{g.passed}/{g.expected} ({100 * g.score:.0f}%)")
    total_p = sum(g.passed for g in grades)
    total_e = sum(g.expected for g in grades)
    if len(grades) > 1:
        lines.append("-" * len(head))
        pct = f" ({100 * total_p / total_e:.0f}%)" if total_e else ""
        lines.append(f"{'total':<{name_w}}  {'':>6}  {'':>6}  {'':>7}  {total_p}/{total_e}{pct}")
    details = []
    for g in grades:
        problems = [o for o in g.checks if o.status != "passed"]
        if problems or g.error:
            details.append(f"\n{g.notebook}:")
            if g.error:
                details.append(f"  ! {g.error}")
            for o in problems:
                why = f": {o.mistake}" if o.mistake else ""
                details.append(f"  - check.{o.check} {o.status}{why}")
    return "\n".join(lines + details)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="+", type=Path, help="notebooks to grade")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per cell (default 120)")
    ap.add_argument("--reference", type=Path, default=None,
                    help="folder of the original chapters: the expected checks come from the "
                         "notebook of the same name there")
    ap.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    args = ap.parse_args(argv)

    grades = []
    for path in args.notebooks:
        if not args.json:
            print(f"grade: running {path} ...", file=sys.stderr, flush=True)
        grades.append(grade_notebook(path, args.timeout, args.reference, args.kernel))
    if args.json:
        total_p = sum(g.passed for g in grades)
        total_e = sum(g.expected for g in grades)
        print(json.dumps({"notebooks": [asdict(g) for g in grades],
                          "passed": total_p, "expected": total_e,
                          "score": total_p / total_e if total_e else 0.0},
                         indent=2, ensure_ascii=False))
    else:
        print(format_table(grades))
    return 1 if any(g.error for g in grades) else 0


if __name__ == "__main__":
    sys.exit(main())
