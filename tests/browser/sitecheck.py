"""Checks of the built website, shared by the browser tests and by the tests that break a copy.

Two kinds of checks live here:

* static ones that read the HTML files of the built site (page discovery, the link and anchor
  crawl, the widgets a page is expected to show, a page's own weight);
* browser ones that drive a page in headless Chromium through Playwright (:func:`visit`): load
  time, requests, console and page errors, MathJax output, frames widgets moved by keyboard and by
  mouse, the note of live widgets, alt text of every rendered image, a screenshot.

Every check returns a list of human-readable problems (empty = fine), so that the same function
can assert a healthy site in ``test_site.py`` and assert a deliberately broken copy *fails* in
``test_checks_can_fail.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

REPO = Path(__file__).resolve().parents[2]
#: The built site under test: $SELFATTENTION_SITE, else _build/html of the repository.
SITE = Path(os.environ.get("SELFATTENTION_SITE", REPO / "_build" / "html")).resolve()
#: Where the first-screen screenshots go (a build artefact, not committed).
SCREENSHOTS = Path(os.environ.get("SELFATTENTION_SCREENSHOTS", SITE.parent / "screenshots"))
CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
#: Each chapter page's own weight (HTML, widget frames included, + the images it alone uses) must
#: stay within this: 1.5 MB. Shared assets (the widget manager, MathJax) are cached after one page.
PAGE_BUDGET_BYTES = 1_500_000
#: Folders of shared, cached assets and of generated copies: not pages.
NOT_PAGES = ("_static/", "_sources/", "_images/", "_downloads/", "widgets/", "_sphinx_design_static/")
#: Bounds on every wait in the browser, in milliseconds.
WAIT_MATH_MS = 20_000
WAIT_WIDGETS_MS = 20_000
WAIT_SWITCH_MS = 3_000

_STATE_RE = re.compile(
    r'<script type="application/vnd\.jupyter\.widget-state\+json">(.*?)</script>', re.S)
_VIEW_RE = re.compile(
    r'<script type="application/vnd\.jupyter\.widget-view\+json">(.*?)</script>', re.S)
_REFRESH_RE = re.compile(r'http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"', re.I)
_FILENAME_ALT = re.compile(r"^[\w./-]+\.(png|jpe?g|gif|svg|webp)$", re.I)


# --------------------------------------------------------------------------------------------
# Static checks
# --------------------------------------------------------------------------------------------

def discover_pages(site: Path = SITE) -> list[str]:
    """Every HTML page of the built site, as paths relative to ``site`` (sorted)."""
    pages = []
    for path in sorted(site.rglob("*.html")):
        rel = path.relative_to(site).as_posix()
        if not rel.startswith(NOT_PAGES):
            pages.append(rel)
    return pages


def chapter_pages(site: Path = SITE) -> list[str]:
    """The chapter pages (``chapters/*.html``)."""
    return [p for p in discover_pages(site) if p.startswith("chapters/")]


def toc_files(repo: Path = REPO) -> list[str]:
    """The files listed in ``_toc.yml`` (root first), without extension."""
    import yaml

    toc = yaml.safe_load((repo / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


class _PageParser(HTMLParser):
    """Collect ids, links, resources and images of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []       # <a href>
        self.resources: list[str] = []   # <link href>, <script src>, <img src>, <iframe src>
        self.images: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key) and (key == "id" or tag == "a"):
                self.ids.add(a[key])
        if tag == "a" and a.get("href") is not None:
            self.links.append(a["href"])
        elif tag == "link" and a.get("href"):
            self.resources.append(a["href"])
        elif tag in ("script", "iframe", "source") and a.get("src"):
            self.resources.append(a["src"])
        if tag == "img":
            self.images.append({"src": a.get("src"), "alt": a.get("alt")})
            if a.get("src"):
                self.resources.append(a["src"])


def parse_page(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def _is_external(url: str) -> bool:
    scheme = urlsplit(url).scheme
    return bool(scheme) and scheme not in ("file",)


def _resolve(site: Path, page: str, url: str) -> tuple[Path, str]:
    """The file a relative URL on ``page`` points to, and its fragment."""
    parts = urlsplit(url)
    if parts.path:
        target = (site / page).parent / unquote(parts.path)
    else:
        target = site / page
    target = Path(os.path.normpath(target))
    if target.is_dir() or url.endswith("/"):
        target = target / "index.html"
    return target, unquote(parts.fragment)


def crawl_links(site: Path = SITE) -> tuple[list[str], int]:
    """Check every internal link and anchor of every page, and every local resource.

    Returns:
        (problems, number of internal links checked).
    """
    problems: list[str] = []
    pages = discover_pages(site)
    parsed = {p: parse_page(site / p) for p in pages}
    id_cache: dict[Path, set[str]] = {(site / p).resolve(): parsed[p].ids for p in pages}
    checked = 0
    for page, info in parsed.items():
        for href in info.links:
            if not href or _is_external(href) or href.startswith(("mailto:", "javascript:")):
                continue
            checked += 1
            target, fragment = _resolve(site, page, href)
            if not target.resolve().is_relative_to(site.resolve()):
                problems.append(f"{page}: link {href!r} leaves the site")
                continue
            if not target.is_file():
                problems.append(f"{page}: link {href!r} -> missing file {target.relative_to(site)}")
                continue
            if fragment and target.suffix == ".html":
                ids = id_cache.get(target.resolve())
                if ids is None:
                    ids = id_cache[target.resolve()] = parse_page(target).ids
                if fragment not in ids:
                    problems.append(
                        f"{page}: link {href!r} -> no id {fragment!r} in {target.relative_to(site)}")
        for src in info.resources:
            if src.startswith(("data:", "blob:")):
                continue
            if _is_external(src) or src.startswith("//"):
                problems.append(f"{page}: loads a resource from outside the site: {src}")
                continue
            target, _ = _resolve(site, page, src)
            if not target.is_file():
                problems.append(f"{page}: resource {src!r} -> missing file")
    return problems, checked


def widget_state(html: str) -> dict:
    m = _STATE_RE.search(html)
    return json.loads(m.group(1))["state"] if m else {}


def expected_widgets(html: str) -> dict[str, int]:
    """How many displayed frames and live widgets a page holds, from its saved widget state.

    Models that were created but never displayed are in the state too; only those reachable from
    a displayed view count.
    """
    state = widget_state(html)
    views = [json.loads(v)["model_id"] for v in _VIEW_RE.findall(html)]
    counts = {"sa-frames": 0, "sa-live": 0, "views": len(views)}
    seen: set[str] = set()

    def walk(model_id: str) -> None:
        if model_id in seen or model_id not in state:
            return
        seen.add(model_id)
        s = state[model_id]["state"]
        for cls in s.get("_dom_classes", []):
            if cls in counts:
                counts[cls] += 1
        for child in s.get("children", []) or []:
            if isinstance(child, str) and child.startswith("IPY_MODEL_"):
                walk(child[len("IPY_MODEL_"):])

    for v in views:
        walk(v)
    return counts


def own_weight(site: Path, page: str) -> int:
    """Bytes a page adds on its own: its HTML and the images only it shows (_images/...).

    Shared, cached assets (_static/, widgets/, the search index) are not counted.
    """
    total = (site / page).stat().st_size
    for img in parse_page(site / page).images:
        src = img["src"] or ""
        if src.startswith("data:") or _is_external(src):
            continue
        target, _ = _resolve(site, page, src)
        if "_images" in target.parts and target.is_file():
            total += target.stat().st_size
    return total


def page_has_math(html: str) -> bool:
    return re.search(r'class="math[ "]', html) is not None


# --------------------------------------------------------------------------------------------
# A local server for the site
# --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(directory: Path, timeout: float = 15.0):
    """Serve ``directory`` with ``python -m http.server`` on 127.0.0.1; yield the base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(base, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"http.server did not start on {base}") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def launch_browser(playwright):
    if not Path(CHROMIUM).exists():
        raise RuntimeError(
            f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install -y chromium) "
            "or set $CHROMIUM; never `playwright install`")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)


# --------------------------------------------------------------------------------------------
# Browser checks
# --------------------------------------------------------------------------------------------

# The pictures of a frames widget that are visible now (blob: URLs differ from frame to frame).
_VISIBLE_FRAMES_JS = """(box) => [...box.querySelectorAll('img')]
  .filter(i => i.offsetParent !== null && i.getBoundingClientRect().height > 0)
  .map(i => i.src + (i.complete && i.naturalWidth > 0 ? '' : '#not-loaded')).join('|')"""

_MATH_JS = """() => {
  const maths = [...document.querySelectorAll('.math')];
  return {n: maths.length,
          untypeset: maths.filter(e => !e.querySelector('mjx-container')).length,
          mjx: document.querySelectorAll('mjx-container').length,
          errors: document.querySelectorAll('mjx-merror').length};
}"""

# Text of the page outside code, scripts and typeset math: raw TeX delimiters must not remain.
_RAW_TEX_JS = r"""() => {
  const skip = new Set(['PRE', 'CODE', 'SCRIPT', 'STYLE', 'TEXTAREA', 'MJX-CONTAINER', 'NOSCRIPT']);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode(n) {
      for (let e = n.parentElement; e; e = e.parentElement) {
        if (skip.has(e.tagName)) return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    }});
  const hits = [];
  while (walker.nextNode()) {
    const t = walker.currentNode.nodeValue;
    const m = t.match(/\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{/);
    if (m) hits.push(t.trim().slice(0, 80));
  }
  return hits;
}"""

_IMAGES_JS = """() => [...document.querySelectorAll('img')].map(i => ({
  src: (i.getAttribute('src') || '').slice(0, 80), alt: i.getAttribute('alt'),
  widget: !!i.closest('.jupyter-widgets, .widget-subarea')}))"""


@dataclass
class PageReport:
    page: str
    own_bytes: int = 0
    transferred_bytes: int = 0
    load_ms: float = 0.0
    ready_ms: float = 0.0
    n_math: int = 0
    n_frames: int = 0
    n_live: int = 0
    n_images: int = 0
    external: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    math: list[str] = field(default_factory=list)
    widgets: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    alt: list[str] = field(default_factory=list)
    screenshot: str | None = None

    @property
    def problems(self) -> list[str]:
        out = [f"request left the machine: {u}" for u in self.external]
        out += [f"failed request: {f}" for f in self.failed]
        out += [f"console/page error: {e}" for e in self.errors]
        return out + self.math + self.widgets + self.live + self.alt


def _wait_switch(page, handle, before: str) -> str:
    try:
        page.wait_for_function(
            f"([box, before]) => ({_VISIBLE_FRAMES_JS})(box) !== before",
            arg=[handle, before], timeout=WAIT_SWITCH_MS)
    except Exception:
        pass
    return handle.evaluate(_VISIBLE_FRAMES_JS)


def check_frames_widget(page, box, label: str) -> list[str]:
    """Move every control of one frames widget by keyboard, then by mouse; the picture must change.

    Sliders: focus the handle and press ArrowRight (ArrowLeft at the end), then click the track at
    the other end. Dropdowns: focus the <select> and press ArrowDown (ArrowUp at the end), then
    choose another option with the mouse (Playwright's select_option, as a native popup cannot be
    clicked in headless Chromium).
    """
    problems: list[str] = []
    handle = box.element_handle()
    controls = box.locator(".widget-slider, .widget-dropdown")
    if controls.count() == 0:
        return [f"{label}: no slider or dropdown found"]
    for c in range(controls.count()):
        ctrl = controls.nth(c)
        name = f"{label}, control {c}"
        ctrl.scroll_into_view_if_needed(timeout=5_000)
        before = handle.evaluate(_VISIBLE_FRAMES_JS)
        if not before or "#not-loaded" in before:
            problems.append(f"{name}: no visible, loaded picture before moving it ({before!r})")
            continue
        select = ctrl.locator("select")
        if select.count():
            n = select.evaluate("s => s.options.length")
            i = select.evaluate("s => s.selectedIndex")
            select.focus()
            select.press("ArrowDown" if i < n - 1 else "ArrowUp")
        else:
            knob = ctrl.locator(".noUi-handle").first
            now = float(knob.get_attribute("aria-valuenow") or 0)
            top = float(knob.get_attribute("aria-valuemax") or 0)
            knob.focus()
            knob.press("ArrowRight" if now < top else "ArrowLeft")
        after_key = _wait_switch(page, handle, before)
        if after_key == before or "#not-loaded" in after_key:
            problems.append(f"{name}: the picture did not change when moved by keyboard")
        # Mouse.
        before = after_key
        if select.count():
            n = select.evaluate("s => s.options.length")
            i = select.evaluate("s => s.selectedIndex")
            select.select_option(index=0 if i > 0 else n - 1)
        else:
            knob = ctrl.locator(".noUi-handle").first
            now = float(knob.get_attribute("aria-valuenow") or 0)
            low = float(knob.get_attribute("aria-valuemin") or 0)
            track = ctrl.locator(".noUi-target").first
            bb = track.bounding_box()
            if bb is None:
                problems.append(f"{name}: slider track not visible")
                continue
            x = 2 if now > low else bb["width"] - 2
            track.click(position={"x": x, "y": bb["height"] / 2})
        after_mouse = _wait_switch(page, handle, before)
        if after_mouse == before or "#not-loaded" in after_mouse:
            problems.append(f"{name}: the picture did not change when moved with the mouse")
    return problems


def visit(context, base: str, rel: str, site: Path = SITE, screenshot_dir: Path | None = None,
          interact: bool = True) -> PageReport:
    """Open one page of the served site and run every browser check on it."""
    from selfattention.widgets import LIVE_NOTE

    html = (site / rel).read_text(encoding="utf-8", errors="replace")
    rep = PageReport(page=rel, own_bytes=own_weight(site, rel))
    host = urlsplit(base).netloc
    page = context.new_page()

    def on_route(route):
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or (parts.scheme == "http" and parts.netloc == host):
            route.continue_()
        else:
            rep.external.append(url)
            route.abort()

    def on_response(resp):
        if resp.status >= 400:
            rep.failed.append(f"{resp.url} (HTTP {resp.status})")

    def on_failed(req):
        if req.url not in rep.external:
            rep.failed.append(f"{req.url} ({req.failure})")

    page.route("**/*", on_route)
    page.on("response", on_response)
    page.on("requestfailed", on_failed)
    page.on("console", lambda m: rep.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: rep.errors.append(f"page error: {e}"))
    try:
        t0 = time.monotonic()
        page.goto(base + rel, wait_until="load", timeout=30_000)
        refresh = _REFRESH_RE.search(html)
        if refresh:  # a redirect page (index.html -> intro.html): follow it, check it landed
            target = urljoin(base + rel, refresh.group(1))
            try:
                page.wait_for_url(target, timeout=10_000)
                page.wait_for_load_state("load")
            except Exception:
                rep.widgets.append(f"redirect to {target} did not happen")
            rep.ready_ms = (time.monotonic() - t0) * 1000
            return rep
        rep.load_ms = page.evaluate(
            "() => { const n = performance.getEntriesByType('navigation')[0];"
            " return n ? n.loadEventEnd - n.startTime : 0; }")
        # Math.
        if page_has_math(html):
            try:
                page.wait_for_function(
                    f"() => {{ const r = ({_MATH_JS})(); return r.n > 0 && r.untypeset === 0; }}",
                    timeout=WAIT_MATH_MS)
            except Exception:
                pass
            m = page.evaluate(_MATH_JS)
            rep.n_math = m["mjx"]
            if m["n"] == 0 or m["untypeset"]:
                rep.math.append(f"math not typeset: {m['untypeset']} of {m['n']} formulas have "
                                "no MathJax output (mjx-container)")
            if m["errors"]:
                rep.math.append(f"MathJax reported {m['errors']} formula error(s) (mjx-merror)")
            raw = page.evaluate(_RAW_TEX_JS)
            if raw:
                rep.math.append(f"raw TeX left in the text: {raw[:3]}")
        # Widgets.
        want = expected_widgets(html)
        rep.n_frames, rep.n_live = want["sa-frames"], want["sa-live"]
        for cls, n in (("sa-frames", want["sa-frames"]), ("sa-live", want["sa-live"])):
            if n:
                try:
                    page.wait_for_function(
                        f"() => document.querySelectorAll('.{cls}').length >= {n}",
                        timeout=WAIT_WIDGETS_MS)
                except Exception:
                    got = page.locator(f".{cls}").count()
                    rep.widgets.append(f"{n} {cls} widget(s) saved, {got} rendered "
                                       "(widget manager JavaScript?)")
        if want["views"]:
            page.wait_for_timeout(300)  # let the last images decode
        rep.ready_ms = (time.monotonic() - t0) * 1000
        rep.transferred_bytes = page.evaluate(
            "() => performance.getEntriesByType('navigation').concat("
            "performance.getEntriesByType('resource'))"
            ".reduce((s, e) => s + (e.decodedBodySize || 0), 0)")
        # Screenshot of the first screen, before anything moves.
        if screenshot_dir is not None:
            screenshot_dir.mkdir(parents=True, exist_ok=True)
            shot = screenshot_dir / (rel.replace("/", "__").removesuffix(".html") + ".png")
            page.screenshot(path=str(shot))
            rep.screenshot = str(shot)
        # Live widgets: the note must be there and visible.
        lives = page.locator(".sa-live")
        for i in range(lives.count()):
            note = lives.nth(i).locator(".sa-live-note").first
            if not note.count() or LIVE_NOTE not in note.inner_text() or not note.is_visible():
                rep.live.append(f"live widget {i}: its note {LIVE_NOTE!r} is missing or hidden")
        # Alt text of every rendered image (page images and widget frames).
        images = page.evaluate(_IMAGES_JS)
        rep.n_images = len(images)
        for img in images:
            alt = (img["alt"] or "").strip()
            if not alt or _FILENAME_ALT.match(alt):
                kind = "widget image" if img["widget"] else "image"
                rep.alt.append(f"{kind} without alt text (alt={img['alt']!r}, src={img['src']!r})")
        # Frames widgets: keyboard and mouse.
        if interact:
            boxes = page.locator(".sa-frames")
            for i in range(boxes.count()):
                rep.widgets += check_frames_widget(page, boxes.nth(i), f"frames widget {i}")
        page.wait_for_timeout(100)
    finally:
        page.close()
    return rep


def search_results(context, base: str, term: str) -> list[str]:
    """The result links that the site's search page lists for ``term``."""
    page = context.new_page()
    page.route("**/*", lambda r: r.continue_() if urlsplit(r.request.url).netloc
               == urlsplit(base).netloc or r.request.url.startswith(("data:", "blob:"))
               else r.abort())
    try:
        page.goto(f"{base}search.html?q={term}", wait_until="load", timeout=30_000)
        try:
            # Sphinx lists API objects first and adds page hits one by one; wait for its summary
            # line ("Search finished, found N pages ...") so that every hit is there.
            page.wait_for_function(
                "() => /Search finished|did not match|no results/i.test("
                "(document.querySelector('#search-results .search-summary') || {}).innerText"
                " || '')",
                timeout=20_000)
        except Exception:
            pass
        return page.evaluate(
            "() => [...document.querySelectorAll('#search-results ul.search li a')]"
            ".map(a => a.getAttribute('href'))")
    finally:
        page.close()
