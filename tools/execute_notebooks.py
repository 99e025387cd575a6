#!/usr/bin/env python3
"""Re-execute chapter notebooks in place, in a clean kernel, with tidy metadata.

Usage: python tools/execute_notebooks.py [--timeout 600] chapters/01_*.ipynb ...

For each notebook it:
- runs every cell from the top in a fresh ``python3`` kernel (nbclient), cwd = the notebook's
  folder, with PYTHONHASHSEED=0 (set by the Makefile) and no MPLBACKEND (inline figures);
- saves the outputs and the widget state (``metadata.widgets``), which the static site and
  nbval need;
- tidies metadata so that diffs stay small: no execution timings (``metadata.execution``,
  ``ExecuteTime``), the kernelspec fixed to ``python3``, no Python patch version in
  ``language_info``, and widget model ids renumbered in order of appearance (they are random
  UUIDs otherwise, and every re-run would rewrite them).

It stops with a non-zero exit at the first notebook whose cell raises (the notebook is then
left untouched), naming the notebook and the cell.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CELL_METADATA_DROP = ("execution", "ExecuteTime", "collapsed", "scrolled", "jupyter")
UUID_RE = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


def _renumber_widget_ids(nb: nbformat.NotebookNode) -> None:
    """Replace random widget model ids by deterministic ones, consistently everywhere."""
    widgets = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    if not widgets:
        return
    known = set(widgets)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view:
                known.add(view["model_id"])
    mapping: dict[str, str] = {}

    def visit(text: str) -> None:
        for m in UUID_RE.findall(text):
            if m in known and m not in mapping:
                mapping[m] = f"{len(mapping) + 1:032x}"

    outputs_text = json.dumps([c.get("outputs", []) for c in nb.cells])
    visit(outputs_text)
    visit(json.dumps(widgets))
    for mid in sorted(known):  # anything not reached above (unreferenced models)
        if mid not in mapping:
            mapping[mid] = f"{len(mapping) + 1:032x}"

    def sub(text: str) -> str:
        return UUID_RE.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)

    for cell in nb.cells:
        if cell.get("outputs"):
            cell["outputs"] = nbformat.from_dict(json.loads(sub(json.dumps(cell["outputs"]))))
    state = json.loads(sub(json.dumps(widgets)))
    nb.metadata["widgets"][WIDGET_STATE]["state"] = dict(
        sorted(state.items(), key=lambda kv: kv[0])
    )


def tidy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Normalise notebook and cell metadata (see the module docstring)."""
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    info = nb.metadata.get("language_info", {})
    info.pop("version", None)
    if info:
        nb.metadata["language_info"] = info
    for cell in nb.cells:
        for key in CELL_METADATA_DROP:
            cell.metadata.pop(key, None)
    _renumber_widget_ids(nb)
    return nb


def execute(path: Path, timeout: int) -> None:
    """Execute one notebook in place."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent.resolve())}},
        store_widget_state=True,
        record_timing=False,
        allow_errors=False,
    )
    client.execute()
    tidy(nb)
    nbformat.validate(nb)
    nbformat.write(nb, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to execute")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    if not args.notebooks:
        print("execute_notebooks: no notebooks given (chapters/ has none?)")
        return 0
    # A kernel started with MPLBACKEND=Agg never switches to the inline backend, and then
    # plt.show() stores no figure in the notebook: leave the choice to ipykernel.
    os.environ.pop("MPLBACKEND", None)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for path in args.notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            print(f"execute_notebooks: {path}: not a notebook file", file=sys.stderr)
            return 2
        start = time.perf_counter()
        print(f"execute_notebooks: {path} ...", end=" ", flush=True)
        try:
            execute(path, args.timeout)
        except CellExecutionError as exc:
            print("FAILED", flush=True)
            print(f"execute_notebooks: {path}: a cell raised; the notebook was not changed.\n{exc}",
                  file=sys.stderr)
            return 1
        print(f"ok ({time.perf_counter() - start:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
