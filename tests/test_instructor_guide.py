"""The instructor guide's chapter table gives each chapter's times as the chapter itself states them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "appendices" / "instructor_guide.md"
# "**Reading time:** about 45 minutes, plus 20 for the exercises." (or "**Reading time.** About ...")
CHAPTER_TIME = re.compile(
    r"\*\*Reading time[.:]\*\*\s*about (\d+) minutes, plus (\d+) for the exercises", re.IGNORECASE
)
# | 7. [Attention on the GPU](../chapters/07_attention_on_the_gpu.ipynb) | ... | 60 min | 30 min | ... |
GUIDE_ROW = re.compile(
    r"^\|[^|]*\]\(\.\./chapters/(\w+\.ipynb)\)[^|]*\|[^|]*\|\s*(\d+) min[^|]*\|\s*(\d+) min"
)


def guide_times() -> dict[str, tuple[int, int]]:
    """Chapter file -> (reading, exercises) minutes, from the guide's table."""
    rows = (GUIDE_ROW.match(line) for line in GUIDE.read_text().splitlines())
    return {m[1]: (int(m[2]), int(m[3])) for m in rows if m}


def chapter_time(path: Path) -> tuple[int, int]:
    """(reading, exercises) minutes stated in a chapter's first cell."""
    first = json.loads(path.read_text())["cells"][0]["source"]
    m = CHAPTER_TIME.search("".join(first))
    assert m, f"{path.name}: no '**Reading time:** about N minutes, plus M for the exercises' in cell 0"
    return int(m[1]), int(m[2])


def test_the_guide_lists_every_chapter() -> None:
    chapters = {p.name for p in (ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")}
    assert chapters <= set(guide_times()), f"missing from the guide: {sorted(chapters - set(guide_times()))}"


@pytest.mark.parametrize("name", sorted(guide_times()))
def test_guide_times_match_the_chapter(name: str) -> None:
    path = ROOT / "chapters" / name
    if not path.exists():
        pytest.skip(f"{name} is not written yet; the guide's times for it are an estimate")
    assert guide_times()[name] == chapter_time(path), (
        f"{name}: the instructor guide says (reading, exercises) = {guide_times()[name]} minutes, "
        f"the chapter says {chapter_time(path)}"
    )
