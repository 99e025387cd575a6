"""The code style is checked, not hoped for: ruff (configured in pyproject.toml) over the library,
the tests, the tools, the Sphinx extension and every chapter's code cells."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    paths = ["src", "tests", "tools", "_ext", "chapters", "nbgrader_config.py"]
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", *paths]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
