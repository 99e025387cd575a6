#!/usr/bin/env python3
"""Open the built site from file:// in headless Chromium, offline, and check a chapter page.

Checks: no request leaves file:// (all others are blocked and reported), no failed request, no
console error, MathJax typeset the math, and every frames widget switches its picture when its
control moves. Optionally saves a screenshot.

Usage: python tools/check_site.py [--page chapters/01_what_is_self_attention.html]
                                  [--screenshot docs/screenshot.png]
Needs the PyPI package playwright and Debian's chromium (/usr/bin/chromium or $CHROMIUM);
never `playwright install`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

VISIBLE_FRAME_JS = """(box) => {
  const imgs = [...box.querySelectorAll('img')].filter(i => i.offsetParent !== null);
  return imgs.map(i => i.src.slice(-60)).join('|');
}"""


def check(page_rel: str, screenshot: str | None, site: Path) -> list[str]:
    problems: list[str] = []
    url = (site / page_rel).resolve().as_uri()
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            headless=True, args=FLAGS, viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        external, failed, errors = [], [], []

        def route(r):
            if r.request.url.startswith(("file://", "data:", "blob:")):
                r.continue_()
            else:
                external.append(r.request.url)
                r.abort()

        ctx.route("**/*", route)
        page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url, wait_until="load")
        html = (site / page_rel).read_text(encoding="utf-8")
        try:
            if 'class="math' not in html:
                raise LookupError("no math on this page")
            page.wait_for_function("document.querySelectorAll('mjx-container').length > 0",
                                   timeout=20_000)
            n_math = page.evaluate("document.querySelectorAll('mjx-container').length")
            print(f"check_site: MathJax typeset {n_math} formulas")
        except LookupError:
            print("check_site: no math on this page")
        except Exception:
            problems.append("MathJax did not typeset any math")
        boxes = page.locator(".sa-frames")
        expects_frames = "sa-frames" in html
        try:
            if expects_frames:
                boxes.first.wait_for(timeout=20_000)
        except Exception:
            problems.append("no frames widget was rendered (widget manager JS?)")
        for i in range(boxes.count()):
            box = boxes.nth(i)
            before = box.evaluate(VISIBLE_FRAME_JS)
            handle = box.locator(".noUi-handle, select").first
            if handle.evaluate("e => e.tagName") == "SELECT":
                handle.select_option(index=1)
            else:
                handle.focus()
                handle.press("ArrowRight")
            page.wait_for_timeout(300)
            after = box.evaluate(VISIBLE_FRAME_JS)
            ok = bool(before) and bool(after) and before != after
            print(f"check_site: frames widget {i}: picture switched when moved: {ok}")
            if not ok:
                problems.append(f"frames widget {i} did not switch its picture")
            if i == 0 and screenshot:
                box.scroll_into_view_if_needed()
        if screenshot:
            page.wait_for_timeout(300)
            page.screenshot(path=screenshot)
            print(f"check_site: screenshot saved to {screenshot}")
        ctx.close()
    problems += [f"blocked request to the network: {u}" for u in external]
    problems += [f"failed request: {f}" for f in failed if not any(u in f for u in external)]
    problems += [f"console error: {e}" for e in errors
                 if "net::ERR_FAILED" not in e or not external]
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", type=Path, default=ROOT / "_build" / "html")
    ap.add_argument("--page", default="chapters/01_what_is_self_attention.html")
    ap.add_argument("--screenshot", default=None)
    args = ap.parse_args()
    if not (args.site / args.page).is_file():
        print(f"check_site: {args.site / args.page} not found; run make book first",
              file=sys.stderr)
        return 2
    problems = check(args.page, args.screenshot, args.site)
    for p in problems:
        print(f"check_site: PROBLEM: {p}", file=sys.stderr)
    print("check_site:", "OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
