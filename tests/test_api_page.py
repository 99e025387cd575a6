"""The API page (appendices/api.md) documents every public module of the library.

The modules are discovered, not listed: a module that a later change adds to ``selfattention``
fails this test until the page gains an ``automodule`` directive for it (or for a package above it
that documents its imported members, as ``selfattention.checks`` does).
"""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import selfattention

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = ROOT / "appendices" / "api.md"

# ".. automodule:: name" and the option lines under it.
DIRECTIVE_RE = re.compile(r"^\.\. automodule:: (\S+)\n((?:[ \t]+:[\w-]+:.*\n)*)", re.MULTILINE)


def public_modules() -> list[str]:
    """Every module and subpackage of ``selfattention`` whose dotted name has no ``_`` part."""
    names = [m.name for m in pkgutil.walk_packages(selfattention.__path__, prefix="selfattention.")]
    return sorted(n for n in names if not any(part.startswith("_") for part in n.split(".")))


def documented(text: str) -> tuple[set[str], set[str]]:
    """The modules with an automodule directive, and those of them that document imported members."""
    modules, with_imported = set(), set()
    for name, options in DIRECTIVE_RE.findall(text):
        modules.add(name)
        if ":imported-members:" in options:
            with_imported.add(name)
    return modules, with_imported


def missing_modules(text: str, modules: list[str]) -> list[str]:
    """The modules neither documented themselves nor covered by a package documenting imported
    members."""
    direct, covering = documented(text)

    def covered(name: str) -> bool:
        parts = name.split(".")
        return name in direct or any(".".join(parts[:i]) in covering for i in range(2, len(parts)))

    return [m for m in modules if not covered(m)]


def test_discovery_finds_the_known_modules():
    found = public_modules()
    for name in ("selfattention.loops", "selfattention.bench", "selfattention.bench.suite",
                 "selfattention.gpu_demos", "selfattention.checks"):
        assert name in found
    assert not any("._" in name for name in found)


def test_api_page_lists_every_public_module():
    missing = missing_modules(API_PAGE.read_text(), public_modules())
    assert not missing, (f"appendices/api.md has no automodule directive for {missing}; add a section "
                         "for each (see how the page documents the others).")


def test_the_rule_can_fail():
    page = ".. automodule:: selfattention.checks\n   :members:\n   :imported-members:\n\n" \
           ".. automodule:: selfattention.bench\n   :members:\n"
    mods = ["selfattention.checks", "selfattention.checks.layer", "selfattention.bench",
            "selfattention.bench.suite", "selfattention.loops"]
    assert missing_modules(page, mods) == ["selfattention.bench.suite", "selfattention.loops"]
