"""The self-check quizzes on the built site: every question answered right and wrong, offline.

For each chapter page that shows a quiz (``selfattention.quizzes``), the test opens the page with
every off-site request blocked and recorded, then, question by question, clicks the right answer
and checks the feedback text and colour class, and clicks each wrong answer (or types each wrong
numeric value and a default one) and checks that the misconception's feedback appears. A request
that leaves the site (jupyterquiz's CDN MathJax fallback, say) or a console error fails the test.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from test_live_widgets import _accept_kernel_dialog, lab  # noqa: F401 (lab: the JupyterLab fixture)

from selfattention import quizzes

QUIZ_DIV_RE = re.compile(r'<div id="quiz(\d\d)"')


def _quiz_chapter(site, chapter: str) -> str | None:
    html = (site / chapter).read_text(encoding="utf-8", errors="replace")
    m = QUIZ_DIV_RE.search(html)
    return m.group(1) if m else None


def test_every_chapter_with_a_quiz_cell_shows_it(site):
    from pathlib import Path

    import nbformat

    repo = Path(__file__).resolve().parents[2]
    for nb_path in sorted((repo / "chapters").glob("[0-9]*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        if not any("quizzes.show(" in c.source for c in nb.cells if c.cell_type == "code"):
            continue
        page = site / "chapters" / f"{nb_path.stem}.html"
        assert page.is_file(), page
        assert _quiz_chapter(site, f"chapters/{nb_path.stem}.html") == nb_path.name[:2], (
            f"{page.name}: the quiz cell ran but no quiz is on the page"
        )


def _block_off_site(target, base_url: str) -> list[str]:
    """Abort every request of ``target`` (a page or a context) that leaves ``base_url``'s host."""
    host, external = urlsplit(base_url).netloc, []

    def on_route(route):
        parts = urlsplit(route.request.url)
        if parts.scheme in ("data", "blob") or parts.netloc == host:
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort()

    target.route("**/*", on_route)
    return external


def _feedback(question):
    return question.locator(".Feedback")


def _check_feedback(question, want_text: str, want_class: str, what: str) -> list[str]:
    fb = _feedback(question)
    try:
        fb.wait_for(state="visible", timeout=3000)
    except Exception:
        return [f"{what}: no feedback shown"]
    got = " ".join(fb.inner_text().split())
    classes = fb.get_attribute("class") or ""
    problems = []
    if " ".join(want_text.split()) != got:
        problems.append(f"{what}: feedback {got!r}, expected {want_text!r}")
    if want_class not in classes.split():
        problems.append(f"{what}: feedback class {classes!r}, expected {want_class!r}")
    return problems


def test_quiz_answers_give_their_feedback(chapter, site, base_url, context):
    number = _quiz_chapter(site, chapter)
    if number is None:
        pytest.skip(f"{chapter} has no quiz")
    questions = quizzes.load(number)
    errors, problems = [], []
    page = context.new_page()
    external = _block_off_site(page, base_url)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    try:
        page.goto(base_url + chapter, wait_until="load", timeout=30_000)
        quiz = page.locator(f"#quiz{number}")
        page.wait_for_function(
            f"() => document.querySelectorAll('#quiz{number} .Quiz').length === {len(questions)}",
            timeout=10_000,
        )
        page.wait_for_timeout(800)  # jupyterquiz's delayed MathJax branch runs 500 ms after rendering
        for i, qa in enumerate(questions):
            q = quiz.locator(".Quiz").nth(i)
            q.scroll_into_view_if_needed()
            what = f"chapter {number}, question {i + 1}"
            if qa["type"] == "multiple_choice":
                for answer in qa["answers"]:
                    exact = re.compile(rf"^\s*{re.escape(answer['answer'])}\s*$")
                    button = q.locator("label.MCButton").filter(has_text=exact).first
                    button.click()
                    kind = "correct" if answer["correct"] else "incorrect"
                    problems += _check_feedback(
                        q, answer["feedback"], kind, f"{what}, {kind} answer {answer['answer'][:30]!r}"
                    )
            else:
                box = q.locator("input")
                for answer in qa["answers"]:
                    value = answer.get("value", 123456789)  # a value no answer names: the default
                    box.fill(str(value))
                    box.press("Enter")
                    kind = "correct" if answer.get("correct") else "incorrect"
                    problems += _check_feedback(q, answer["feedback"], kind, f"{what}, typed {value}")
    finally:
        page.close()
    assert not external, f"{chapter}: off-site requests: {external}"
    assert not errors, f"{chapter}: console errors: {errors}"
    assert not problems, "\n".join(problems)


QUIZ_NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": ["from selfattention import quizzes\n", "\n", 'quizzes.show("02")\n'],
        },
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def test_a_quiz_works_in_jupyterlab(lab, browser):  # noqa: F811 (the imported fixture)
    """Run a one-cell notebook showing chapter 2's quiz in JupyterLab and answer its first question."""
    import json
    import urllib.request

    base, token = lab
    body = json.dumps({"type": "notebook", "content": QUIZ_NOTEBOOK}).encode()
    req = urllib.request.Request(
        f"{base}api/contents/quiz.ipynb?token={token}",
        data=body,
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=30).close()
    first = quizzes.load("02")[0]
    right = next(a for a in first["answers"] if a["correct"])
    wrong = next(a for a in first["answers"] if not a["correct"])
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    external = _block_off_site(ctx, base)
    page = ctx.new_page()
    try:
        page.goto(f"{base}lab/tree/quiz.ipynb?reset&token={token}", timeout=60_000)
        page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
        _accept_kernel_dialog(page, 5_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        _accept_kernel_dialog(page, 3_000)
        q = page.locator("#quiz02 .Quiz").first
        q.wait_for(timeout=60_000)
        for answer, kind in ((right, "correct"), (wrong, "incorrect")):
            exact = re.compile(rf"^\s*{re.escape(answer['answer'])}\s*$")
            q.locator("label.MCButton").filter(has_text=exact).first.click()
            assert not _check_feedback(q, answer["feedback"], kind, f"JupyterLab, {kind} answer")
    finally:
        ctx.close()
    assert not external, f"off-site requests from JupyterLab: {external}"


def test_a_slow_mathjax_never_sends_the_quiz_off_site(site, base_url, context):
    """MathJax that is still loading when the quiz renders is jupyterquiz's CDN-fallback case."""
    import time

    number = "02"
    pages = sorted((site / "chapters").glob(f"{number}_*.html"))
    assert pages, "chapter 2's page is missing"
    host = urlsplit(base_url).netloc
    external, errors = [], []
    page = context.new_page()

    def on_route(route):
        parts = urlsplit(route.request.url)
        if parts.netloc != host and parts.scheme not in ("data", "blob"):
            external.append(route.request.url)
            route.abort()
            return
        if "mathjax" in parts.path.lower():
            time.sleep(2.0)  # MathJax arrives well after the quiz's 500 ms typeset attempt
        route.continue_()

    page.route("**/*", on_route)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{base_url}chapters/{pages[0].name}", wait_until="load", timeout=60_000)
        shown = f"() => document.querySelectorAll('#quiz{number} .Quiz').length > 0"
        page.wait_for_function(shown, timeout=10_000)
        page.wait_for_timeout(3000)
    finally:
        page.close()
    assert not external, f"off-site requests: {external}"
    assert not errors, f"page errors: {errors}"
