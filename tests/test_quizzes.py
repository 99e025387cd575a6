"""The quiz data and the quiz renderer (the browser tests click them on the built site)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from selfattention import quizzes

ROOT = Path(__file__).resolve().parent.parent
ALL = [f"{n:02d}" for n in range(1, 12)]
MATH = re.compile(r"\$|\\\(|\\\[")


def _texts(q):
    yield q["question"]
    yield q.get("code", "")
    for a in q["answers"]:
        yield a.get("answer", "")
        yield a.get("feedback", "")


def test_every_chapter_has_a_quiz():
    assert quizzes.chapters() == ALL


@pytest.mark.parametrize("chapter", ALL)
def test_questions_are_well_formed(chapter):
    questions = quizzes.load(chapter)
    assert 4 <= len(questions) <= 8
    for i, q in enumerate(questions):
        where = f"chapter {chapter}, question {i + 1}"
        assert q["type"] in ("multiple_choice", "numeric"), where
        answers = q["answers"]
        assert all(a.get("feedback", "").strip() for a in answers), f"{where}: an answer without feedback"
        right = [a for a in answers if a.get("correct")]
        wrong = [a for a in answers if not a.get("correct")]
        assert len(right) == 1 and right[0]["feedback"].startswith("Right."), where
        assert not any(a["feedback"].startswith("Right") for a in wrong), where
        if q["type"] == "multiple_choice":
            assert len(wrong) >= 2, f"{where}: at least two wrong options"
            assert len({a["answer"] for a in answers}) == len(answers), f"{where}: duplicate options"
        else:
            values = [a["value"] for a in answers if "value" in a]
            assert len(values) == len(set(values)) >= 2, f"{where}: a wrong value with its feedback"
            assert answers[-1]["type"] == "default", f"{where}: default feedback last"
        for text in _texts(q):  # no math: jupyterquiz would try to typeset it (see the module)
            assert not MATH.search(text) and "<" not in text, f"{where}: {text!r}"


def test_render_is_deterministic_and_makes_no_off_site_request():
    html, script = quizzes.render("06")
    assert (html, script) == quizzes.render(6)
    assert 'id="quiz06"' in html and "var questionsquiz06=" in script
    assert "cdn" not in script.lower() and "https://" not in script and "http://" not in script
    assert "window.MathJax =" not in script  # the fallback would replace the page's MathJax
    assert "if (typeof version == 'undefined') { return; }" in script


def test_unknown_chapter_is_a_clear_error():
    with pytest.raises(ValueError, match=r"chapter=42: there is no quiz for it; quizzes exist for \['01'"):
        quizzes.load(42)


def test_chapters_show_their_own_quiz_before_the_summary():
    for path in sorted((ROOT / "chapters").glob("[0-9]*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        shows = [i for i, c in enumerate(nb.cells) if "quizzes.show(" in c.source]
        assert len(shows) == 1, path.name
        cell = nb.cells[shows[0]]
        assert f'quizzes.show("{path.name[:2]}")' in cell.source
        assert "hide-input" in cell.metadata.get("tags", [])
        summary = next(i for i, c in enumerate(nb.cells) if "\n## Summary" in "\n" + c.source)
        assert shows[0] < summary, path.name
