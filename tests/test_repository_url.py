"""The repository URL is set once, in ``_config.yml``; every place that repeats it agrees.

Readers meet the URL where they are: the first cell of every chapter installs the library from it,
and the README, ``CITATION.cff``, ``intro.md`` and the instructor guide print it. This test reads
the configured URL and checks that each of those places carries exactly that URL, and that no
file names another address for the course's repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
PAGES = ["README.md", "CITATION.cff", "intro.md", "appendices/instructor_guide.md"]
GITHUB_RE = re.compile(r"https?://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?(?=[/\s\"')\]>]|$)")


def configured_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")


def first_code_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code")


def course_urls(text: str) -> set[str]:
    """Every GitHub repository address in ``text`` that names the course (owner or repository)."""
    return {f"https://github.com/{owner}/{name}" for owner, name in GITHUB_RE.findall(text)
            if "selfattention" in (owner + name).replace("-", "").lower()}


def test_config_url_is_a_github_repository():
    assert GITHUB_RE.fullmatch(configured_url()), configured_url()


def test_course_urls_sees_only_the_course():
    text = ("pip install git+https://github.com/selfattention-course/new-name and "
            "https://github.com/jupyter-widgets/ipywidgets and https://github.com/Self-Attention/x.git")
    assert course_urls(text) == {"https://github.com/selfattention-course/new-name",
                                 "https://github.com/Self-Attention/x"}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_first_cell_installs_from_the_configured_url(path):
    assert course_urls(first_code_cell(path)) == {configured_url()}


@pytest.mark.parametrize("page", PAGES)
def test_pages_print_the_configured_url(page):
    text = (ROOT / page).read_text()
    assert course_urls(text) == {configured_url()}, f"{page} names another repository address"


def test_no_file_names_another_address():
    files = [*CHAPTERS, *(ROOT / p for p in PAGES), *(ROOT / "docs").glob("*.md"),
             *(ROOT / "appendices").glob("*.md"), ROOT / "pyproject.toml"]
    wrong = {str(f.relative_to(ROOT)): course_urls(f.read_text()) - {configured_url()} for f in files}
    assert not {f: urls for f, urls in wrong.items() if urls}
