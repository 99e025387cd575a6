"""The built website in a real browser: every page, its math, widgets, links, images and weight.

Pages are discovered from the built site, so a new chapter joins these tests by being built.
"""

from __future__ import annotations

import pytest
import sitecheck


def test_every_toc_entry_is_a_built_page(site):
    missing = [f for f in sitecheck.toc_files() if not (site / f"{f}.html").is_file()]
    assert not missing, f"listed in _toc.yml but not built: {missing}"


def test_page_loads_clean(page, visited):
    """No page error, no console error, no failed request, no request leaving 127.0.0.1."""
    r = visited(page)
    print(f"{page}: load {r.load_ms:.0f} ms, ready {r.ready_ms:.0f} ms, own {r.own_bytes} B, "
          f"loaded {r.transferred_bytes} B")
    problems = [f"request left the machine: {u}" for u in r.external]
    problems += [f"failed request: {f}" for f in r.failed]
    problems += [f"console/page error: {e}" for e in r.errors]
    assert not problems, "\n".join(problems)


def test_math_is_typeset(page, visited, site):
    html = (site / page).read_text(encoding="utf-8")
    if not sitecheck.page_has_math(html):
        pytest.skip("no math on this page")
    r = visited(page)
    assert not r.math, "\n".join(r.math)
    assert r.n_math > 0


def test_frames_widgets_switch_pictures(page, visited, site):
    """Every frames widget changes its picture when moved, by keyboard and by mouse."""
    want = sitecheck.expected_widgets((site / page).read_text(encoding="utf-8"))
    if not want["sa-frames"] and not want["sa-live"]:
        pytest.skip("no course widget on this page")
    r = visited(page)
    assert not r.widgets, "\n".join(r.widgets)


def test_live_widgets_show_their_note(page, visited, site):
    want = sitecheck.expected_widgets((site / page).read_text(encoding="utf-8"))
    if not want["sa-live"]:
        pytest.skip("no live widget on this page")
    r = visited(page)
    assert not r.live, "\n".join(r.live)


def test_every_image_has_alt_text(page, visited):
    r = visited(page)
    assert not r.alt, "\n".join(r.alt)


def test_chapter_page_weight(chapter, visited):
    r = visited(chapter)
    assert r.own_bytes <= sitecheck.PAGE_BUDGET_BYTES, (
        f"{chapter} weighs {r.own_bytes / 1e6:.2f} MB of its own (HTML + its images), over the "
        f"{sitecheck.PAGE_BUDGET_BYTES / 1e6:.1f} MB budget: fewer widget frames, a palette "
        "(widgets' colors=), a lower dpi or smaller figures?")


def test_heaviest_chapter_page_is_under_budget(site):
    weights = {p: sitecheck.own_weight(site, p) for p in sitecheck.chapter_pages(site)}
    assert weights, "no chapter page built"
    heaviest = max(weights, key=weights.get)
    print(f"heaviest chapter page: {heaviest}, {weights[heaviest] / 1e6:.2f} MB of its own "
          f"(budget {sitecheck.PAGE_BUDGET_BYTES / 1e6:.1f} MB)")
    assert weights[heaviest] <= sitecheck.PAGE_BUDGET_BYTES, (
        f"the heaviest chapter page, {heaviest}, weighs {weights[heaviest] / 1e6:.2f} MB of its own")


def test_internal_links_and_anchors_resolve(site):
    problems, checked = sitecheck.crawl_links(site)
    print(f"checked {checked} internal links on {len(sitecheck.discover_pages(site))} pages")
    assert checked > 0
    assert not problems, f"{len(problems)} broken:\n" + "\n".join(problems[:50])


def test_search_finds_a_chapter(site, base_url, context):
    hits = sitecheck.search_results(context, base_url, "softmax")
    print(f"search for 'softmax': {len(hits)} results: {hits[:5]}")
    assert any(h and h.startswith("chapters/") for h in hits), hits
