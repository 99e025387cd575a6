"""Fixtures of the browser tests: the built site served on 127.0.0.1 and Debian's Chromium.

Run them with ``make browser-test`` after ``make book`` (``make test`` leaves this folder out).
The site under test is ``$SELFATTENTION_SITE`` (default ``_build/html``); screenshots of each
page's first screen go to ``$SELFATTENTION_SCREENSHOTS`` (default ``_build/screenshots``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sitecheck  # noqa: E402

#: Reports of the pages visited in this session, printed at the end.
REPORTS: dict[str, sitecheck.PageReport] = {}


def _site_built() -> bool:
    return (sitecheck.SITE / "intro.html").is_file() or (sitecheck.SITE / "index.html").is_file()


def pytest_generate_tests(metafunc):
    if "page" in metafunc.fixturenames:
        pages = sitecheck.discover_pages() if _site_built() else []
        metafunc.parametrize("page", pages or ["<no site built>"])
    if "chapter" in metafunc.fixturenames:
        chapters = sitecheck.chapter_pages() if _site_built() else []
        metafunc.parametrize("chapter", chapters or ["<no chapter page built>"])


@pytest.fixture(scope="session")
def site() -> Path:
    if not _site_built():
        pytest.fail(f"no built site at {sitecheck.SITE}: run `make book` first "
                    "(or point $SELFATTENTION_SITE at a built _build/html)", pytrace=False)
    return sitecheck.SITE


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        try:
            b = sitecheck.launch_browser(p)
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield b
        b.close()


@pytest.fixture(scope="session")
def base_url(site):
    with sitecheck.serve(site) as base:
        yield base


@pytest.fixture(scope="session")
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture(scope="session")
def visited(site, base_url, context):
    """``visited(rel)``: the report of one page, visited once per session."""

    def get(rel: str) -> sitecheck.PageReport:
        if rel not in REPORTS:
            REPORTS[rel] = sitecheck.visit(context, base_url, rel, site,
                                           screenshot_dir=sitecheck.SCREENSHOTS)
        return REPORTS[rel]

    return get


def pytest_terminal_summary(terminalreporter):
    if not REPORTS:
        return
    tr = terminalreporter
    tr.section("pages of the built site (own = HTML + its own images; total = all bytes loaded)")
    tr.write_line(f"{'page':<48} {'own KB':>8} {'total KB':>9} {'load ms':>8} {'ready ms':>9} "
                  f"{'math':>5} {'frames':>6} {'live':>4} {'imgs':>4} {'problems':>8}")
    for rel, r in sorted(REPORTS.items()):
        tr.write_line(f"{rel:<48} {r.own_bytes / 1024:>8.0f} {r.transferred_bytes / 1024:>9.0f} "
                      f"{r.load_ms:>8.0f} {r.ready_ms:>9.0f} {r.n_math:>5} {r.n_frames:>6} "
                      f"{r.n_live:>4} {r.n_images:>4} {len(r.problems):>8}")
    chapters = [r for r in REPORTS.values() if r.page.startswith("chapters/")]
    if chapters:
        heavy = max(chapters, key=lambda r: r.own_bytes)
        tr.write_line(f"heaviest chapter page: {heavy.page}, {heavy.own_bytes / 1e6:.2f} MB of its "
                      f"own (budget {sitecheck.PAGE_BUDGET_BYTES / 1e6:.1f} MB)")
    shots = [r.screenshot for r in REPORTS.values() if r.screenshot]
    if shots:
        tr.write_line(f"screenshots of the first screens: {Path(shots[0]).parent}")
