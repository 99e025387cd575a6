"""environment.yml (conda) and pyproject.toml (pip) must list the same packages."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from the PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}
# conda-only entries that are not Python dependencies of the project
CONDA_ONLY = {"python", "pip"}
# PyPI names that conda-forge does not provide under that name: environment.yml must take them
# from PyPI, in its `pip:` section (playwright's own conda package lives on another channel)
PIP_ONLY = {"playwright"}


def normalise(requirement: str) -> str:
    """PEP 503 name of a requirement string: 'Jupyter_Book>=1 ; extra' -> 'jupyter-book'."""
    name = re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_names() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = data["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [r for r in extra if not normalise(r) == "selfattention"]
    return {normalise(r) for r in reqs}


def environment_sections() -> tuple[set[str], set[str]]:
    """PyPI names of environment.yml's dependencies: (from conda-forge, from its pip section)."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda: set[str] = set()
    pip: set[str] = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip |= {normalise(r) for r in dep.get("pip", []) if not r.startswith("-e")}
        else:
            name = normalise(dep)
            if name not in CONDA_ONLY:
                conda.add(CONDA_TO_PYPI.get(name, name))
    return conda, pip


def environment_names() -> set[str]:
    conda, pip = environment_sections()
    return conda | pip


def test_environment_yml_matches_pyproject() -> None:
    py, env = pyproject_names(), environment_names()
    assert py == env, (
        f"only in pyproject.toml: {sorted(py - env)}; only in environment.yml: {sorted(env - py)}"
    )


def test_packages_missing_from_conda_forge_come_from_pip() -> None:
    conda, pip = environment_sections()
    assert not PIP_ONLY & conda, f"move {sorted(PIP_ONLY & conda)} to the pip: section of environment.yml"
    assert PIP_ONLY <= pip, f"{sorted(PIP_ONLY - pip)} missing from the pip: section of environment.yml"


def test_environment_yml_installs_the_library_itself() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    assert "-e ." in pip


def test_normalise() -> None:
    assert normalise("Jupyter_Book>=1.0.4.post1,<2") == "jupyter-book"
    assert normalise("ipywidgets>=8.1,<9") == "ipywidgets"
    assert normalise("sphinx.mathjax-offline") == "sphinx-mathjax-offline"
