"""The GitHub Pages workflow builds with `make book` and takes the repository from _config.yml."""

from __future__ import annotations

import re

import pytest
import yaml
from sitecheck import REPO

WORKFLOW = REPO / ".github" / "workflows" / "pages.yml"


@pytest.fixture(scope="module")
def workflow_text() -> str:
    return WORKFLOW.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def workflow(workflow_text) -> dict:
    return yaml.safe_load(workflow_text)


def _steps(workflow):
    for job in workflow["jobs"].values():
        yield from job.get("steps", [])


def test_builds_with_make_book_and_tests_in_a_browser(workflow):
    runs = [s.get("run", "") for s in _steps(workflow)]
    assert any(re.search(r"^\s*make book\s*$", r, re.M) for r in runs), runs
    assert any("make browser-test" in r for r in runs), runs


def test_publishes_the_built_site_with_the_pages_actions(workflow):
    uses = {s["uses"].split("@")[0]: s for s in _steps(workflow) if "uses" in s}
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "_build/html"
    assert "actions/deploy-pages" in uses
    deploy = workflow["jobs"]["deploy"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}


def test_repository_and_branch_are_not_hard_coded(workflow_text, workflow):
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    url = config["repository"]["url"].rstrip("/")
    owner_repo = "/".join(url.split("/")[-2:])
    assert url not in workflow_text and owner_repo not in workflow_text
    assert not re.search(r"github\.com/[\w.-]+/[\w.-]+", workflow_text), "a repository URL"
    # YAML reads the key `on:` as True.
    triggers = workflow.get("on", workflow.get(True))
    for event in ("push", "pull_request"):
        assert not (triggers.get(event) or {}).get("branches"), f"{event} filters branches by name"
    # The published branch is read from _config.yml and compared with the pushed ref.
    assert "_config.yml" in workflow_text
    assert "needs.build.outputs.branch" in workflow["jobs"]["deploy"]["if"]
    for branch in {config["repository"].get("branch", "master"), "main", "master"}:
        assert not re.search(rf"['\"]{branch}['\"]|refs/heads/{branch}", workflow_text), branch
