"""Live widgets in JupyterLab: run a notebook, move a live widget's control, see its output change.

JupyterLab is started from the course environment on 127.0.0.1 with a random token, in a temporary
folder holding copies of the notebooks (the real ones are never opened, so nothing is autosaved
over them), with fresh settings and workspaces. The browser may only talk to that server.

Notebooks driven: every chapter that uses ``selfattention.widgets.live`` (found in its code cells)
and, always, a tiny notebook written here that uses ``live``, so the mechanism is tested even
before a chapter has a live widget.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sitecheck

LAB_START_S = 90
RUN_ALL_MS = 150_000      # a chapter is allowed 60-90 s on a 2-core machine
CHANGE_MS = 30_000

TINY = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# A live widget, driven by the tests"]},
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": [
            "from selfattention.widgets import live\n",
            "\n",
            "\n",
            "def show(sentence):\n",
            "    tokens = sentence.split()\n",
            "    print(f\"{len(tokens)} tokens: {tokens}\")\n",
            "\n",
            "\n",
            "live(show, sentence=\"The cat sat on the mat\")\n",
        ]},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}

SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none",
                                               "autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                    "checkForUpdates": False},
}

_LIVE_RE = re.compile(r"\blive\(|widgets\.live\b")


def chapters_with_live_widgets() -> list[str]:
    found = []
    for nb in sorted((sitecheck.REPO / "chapters").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        if "selfattention.widgets" in code and _LIVE_RE.search(code):
            found.append(f"chapters/{nb.name}")
    return found


NOTEBOOKS = ["tiny_live_widget.ipynb"] + chapters_with_live_widgets()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 over a temporary copy of the notebooks: (base URL, token)."""
    root = tmp_path_factory.mktemp("lab")
    home = tmp_path_factory.mktemp("lab-home")
    (root / "tiny_live_widget.ipynb").write_text(json.dumps(TINY), encoding="utf-8")
    shutil.copytree(sitecheck.REPO / "chapters", root / "chapters",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "_build"))
    for nb in (root / "chapters").glob("*.ipynb"):  # no stored outputs: what shows, ran here
        data = json.loads(nb.read_text(encoding="utf-8"))
        data["metadata"].pop("widgets", None)
        for cell in data["cells"]:
            if cell["cell_type"] == "code":
                cell["outputs"], cell["execution_count"] = [], None
        nb.write_text(json.dumps(data), encoding="utf-8")
    # Fresh settings: render every cell (no windowing), start the kernel without asking, no news.
    for name, value in SETTINGS.items():
        path = home / "settings" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value), encoding="utf-8")
    port, token = sitecheck.free_port(), secrets.token_hex(16)
    env = dict(os.environ,
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               MPLBACKEND="module://matplotlib_inline.backend_inline", PYTHONHASHSEED="0")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        cmd.append("--allow-root")
    log = open(home / "lab.log", "w")  # closed in the finally below
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + LAB_START_S
        while True:
            try:
                urllib.request.urlopen(f"{base}api/status?token={token}", timeout=3).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (home / "lab.log").read_text()[-3000:],
                                pytrace=False)
                time.sleep(0.5)
        yield base, token
    finally:
        try:
            req = urllib.request.Request(f"{base}api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(req, timeout=10).close()
            proc.wait(timeout=20)
        except Exception:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


_OUTPUT_JS = """(box) => { const out = box.querySelector('.widget-output') || box;
  return out.innerText + [...out.querySelectorAll('img')].map(i => i.src.slice(-40)).join('|'); }"""


def _accept_kernel_dialog(page, timeout_ms: int) -> None:
    """Accept JupyterLab's "Select Kernel" dialog (the notebook's own kernel), if it shows."""
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    try:
        dialog.first.wait_for(timeout=timeout_ms)
    except Exception:
        return
    dialog.first.click()


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_live_widget_output_changes_in_jupyterlab(lab, browser, notebook):
    from selfattention.widgets import LIVE_NOTE

    base, token = lab
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    external, errors = [], []

    def on_route(route):
        if urlsplit(route.request.url).netloc == urlsplit(base).netloc or \
                route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort()

    ctx.route("**/*", on_route)
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        t0 = time.monotonic()
        # A fresh workspace per notebook (?reset), so that earlier tabs do not come back.
        page.goto(f"{base}lab/tree/{notebook}?reset&token={token}", timeout=60_000)
        page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
        _accept_kernel_dialog(page, 5_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                               timeout=60_000)
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        _accept_kernel_dialog(page, 3_000)
        box = page.locator(".jp-Notebook .sa-live").first
        box.wait_for(state="attached", timeout=RUN_ALL_MS)
        handle = box.element_handle()
        page.wait_for_function(f"(b) => ({_OUTPUT_JS})(b).trim().length > 0", arg=handle,
                               timeout=RUN_ALL_MS)
        box.scroll_into_view_if_needed(timeout=10_000)
        print(f"{notebook}: ran to its live widget in {time.monotonic() - t0:.1f} s")
        note = box.locator(".sa-live-note").first
        assert note.is_visible() and LIVE_NOTE in note.inner_text()
        before = handle.evaluate(_OUTPUT_JS)
        text = box.locator("input[type='text'], textarea")
        if text.count():
            field = text.first
            field.fill("Attention is all you need")
            field.press("Enter")
        elif box.locator("input[type='checkbox']").count():
            box.locator("input[type='checkbox']").first.click()
        elif box.locator("select").count():
            sel = box.locator("select").first
            n = sel.evaluate("s => s.options.length")
            sel.select_option(index=(sel.evaluate("s => s.selectedIndex") + 1) % n)
        else:
            knob = box.locator(".noUi-handle").first
            knob.focus()
            knob.press("ArrowRight")
        page.wait_for_function(f"([b, before]) => ({_OUTPUT_JS})(b) !== before",
                               arg=[handle, before], timeout=CHANGE_MS)
        after = handle.evaluate(_OUTPUT_JS)
        print(f"{notebook}: output before {before[:80]!r}, after {after[:80]!r}")
        assert after != before
        if notebook == "tiny_live_widget.ipynb":
            assert "5 tokens: ['Attention', 'is', 'all', 'you', 'need']" in after
        assert not external, f"JupyterLab asked the network for: {external}"
        assert not errors, errors
    finally:
        shot = sitecheck.SCREENSHOTS / f"lab__{Path(notebook).stem}.png"
        try:
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot))
        except Exception:
            pass
        ctx.close()
