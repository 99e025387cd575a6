"""The checks can fail: break a copy of the built site three ways and see each check catch it.

Each test copies the built site to a temporary folder (the real one is never touched), breaks one
thing, serves the copy on 127.0.0.1 and runs the same check as ``test_site.py``:

* a widget link: the ``jslink`` models (``LinkModel``) are removed from a page's saved widget
  state, so the slider still moves but the picture stays;
* a link target: an anchor that a link points to loses its id, and a linked page is deleted;
* the math set-up: the MathJax script is removed from a page, so its formulas stay raw TeX.

It also asserts that the unbroken page passes the same check, so the failure comes from the break.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import sitecheck


def _copy_site(site, tmp_path):
    dst = tmp_path / "html"
    shutil.copytree(site, dst)
    return dst


def _first(pages, predicate, what):
    for p in pages:
        if predicate(p):
            return p
    pytest.skip(f"no page with {what} in this site")


def test_a_broken_widget_link_is_caught(site, context, visited, tmp_path):
    page = _first(sitecheck.chapter_pages(site),
                  lambda p: sitecheck.expected_widgets((site / p).read_text())["sa-frames"],
                  "a frames widget")
    assert not visited(page).widgets, "the unbroken page must pass first"
    copy = _copy_site(site, tmp_path)
    html = (copy / page).read_text(encoding="utf-8")
    m = re.search(r'(<script type="application/vnd\.jupyter\.widget-state\+json">)(.*?)(</script>)',
                  html, re.S)
    data = json.loads(m.group(2))
    links = [k for k, v in data["state"].items() if v["model_name"] == "LinkModel"]
    assert links, "frames widgets are linked with jslink (LinkModel)"
    for k in links:
        del data["state"][k]
    html = html[:m.start(2)] + json.dumps(data) + html[m.end(2):]
    (copy / page).write_text(html, encoding="utf-8")
    with sitecheck.serve(copy) as base:
        report = sitecheck.visit(context, base, page, copy, screenshot_dir=None)
    print(f"{page} without its {len(links)} jslink(s): {report.widgets}")
    assert any("did not change when moved by keyboard" in p for p in report.widgets)
    assert any("did not change when moved with the mouse" in p for p in report.widgets)


def test_a_broken_link_target_is_caught(site, tmp_path):
    problems, _ = sitecheck.crawl_links(site)
    assert not problems, "the unbroken site must pass first"
    copy = _copy_site(site, tmp_path)
    pages = sitecheck.discover_pages(copy)
    # 1. An anchor that some page links to (on another page) loses its id.
    victim = None
    for p in pages:
        for href in sitecheck.parse_page(copy / p).links:
            if "#" in href and not href.startswith(("#", "http")) and href.split("#")[1]:
                target, frag = sitecheck._resolve(copy, p, href)
                if target.suffix == ".html" and target.is_file():
                    victim = (p, href, target, frag)
                    break
        if victim:
            break
    assert victim, "some page links to an anchor on another page"
    page, href, target, frag = victim
    html = target.read_text(encoding="utf-8")
    target.write_text(html.replace(f'id="{frag}"', 'id="renamed-by-the-test"'), encoding="utf-8")
    # 2. A chapter page that other pages link to disappears.
    gone = sitecheck.chapter_pages(copy)[-1]
    (copy / gone).unlink()
    problems, _ = sitecheck.crawl_links(copy)
    print("\n".join(problems[:5]))
    assert any(f"no id {frag!r}" in p for p in problems), problems[:10]
    assert any("missing file" in p and gone in p for p in problems), problems[:10]


def test_a_broken_math_set_up_is_caught(site, context, visited, tmp_path):
    page = _first(sitecheck.chapter_pages(site),
                  lambda p: sitecheck.page_has_math((site / p).read_text()), "math")
    assert not visited(page).math, "the unbroken page must pass first"
    copy = _copy_site(site, tmp_path)
    html = (copy / page).read_text(encoding="utf-8")
    broken, n = re.subn(r'<script[^>]*src="[^"]*mathjax[^"]*"[^>]*>\s*</script>', "", html,
                        flags=re.I)
    assert n >= 1, "the page loads MathJax with a <script src=...mathjax...>"
    (copy / page).write_text(broken, encoding="utf-8")
    sitecheck_wait = sitecheck.WAIT_MATH_MS
    sitecheck.WAIT_MATH_MS = 3_000  # the math will never come: do not wait 20 s for it
    try:
        with sitecheck.serve(copy) as base:
            report = sitecheck.visit(context, base, page, copy, screenshot_dir=None,
                                     interact=False)
    finally:
        sitecheck.WAIT_MATH_MS = sitecheck_wait
    print(f"{page} without MathJax: {report.math}")
    assert any("math not typeset" in p for p in report.math)
    assert any("raw TeX" in p for p in report.math)
