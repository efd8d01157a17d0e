"""notebooks/TEACHERS_GUIDE.md: every lesson in it, every exercise answered, timings that add up.

The minutes of a lesson are those its first cell gives ("*About 25 minutes.*"); the guide's
paths, its per-lesson sections and the README's lesson table must use the same numbers, and each
path's total row must be the sum of its rows. Reads text files only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "notebooks" / "TEACHERS_GUIDE.md"
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LESSON_LINK = re.compile(r"\((\d\d_[\w-]+\.ipynb)\)")
EXERCISE = re.compile(r"\*\*Exercise (\d+)\b|#+\s*Exercise (\d+)\b")

pytestmark = pytest.mark.skipif(not GUIDE.exists(), reason="no teacher's guide yet")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else source


def _header_minutes(path: Path) -> int:
    first = _source(_cells(path)[0])
    found = re.search(r"About (\d+) minutes", first)
    assert found, f"{path.name}: the first cell gives no '*About N minutes.*'"
    return int(found[1])


def _exercises(path: Path) -> list[int]:
    numbers = set()
    for cell in _cells(path):
        if cell["cell_type"] == "markdown":
            for match in EXERCISE.finditer(_source(cell)):
                numbers.add(int(match[1] or match[2]))
    return sorted(numbers)


def _guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The text under the first heading that starts with ``heading``, to the next one as high."""
    match = re.search(rf"^(#+) {re.escape(heading)}.*$", text, re.MULTILINE)
    assert match, f"no heading '{heading}' in {GUIDE.name}"
    level = len(match[1])
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def _table(text: str) -> list[list[str]]:
    """The rows of the first markdown table in ``text`` (header and rule left out)."""
    rows = [line for line in text.splitlines() if line.strip().startswith("|")]
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]
    return [row for row in cells[2:] if row]


def _minutes(cell: str) -> int:
    found = re.fullmatch(r"\**(\d+)\**", cell)
    assert found, f"minutes cell {cell!r} is not a number"
    return int(found[1])


def _path_rows(text: str) -> tuple[list[tuple[str | None, bool, int]], int]:
    """(lesson file or None, whole lesson?, minutes) per row, and the total row's minutes."""
    rows, total = [], None
    for row in _table(text):
        if "total" in row[0].lower():
            total = _minutes(row[1])
            continue
        link = LESSON_LINK.search(row[0])
        whole = link is not None and "(part)" not in row[0]
        rows.append((link[1] if link else None, whole, _minutes(row[1])))
    assert total is not None, "a path table needs a **total** row"
    return rows, total


HEADERS = {path.name: _header_minutes(path) for path in LESSONS}


def _check_rows(rows: list[tuple[str | None, bool, int]], total: int, where: str) -> None:
    assert sum(minutes for _, _, minutes in rows) == total, f"{where}: the rows do not add up"
    for lesson, whole, minutes in rows:
        if lesson is None:
            continue
        assert lesson in HEADERS, f"{where}: {lesson} is not a lesson"
        if whole:
            assert minutes == HEADERS[lesson], (
                f"{where}: {lesson} takes {minutes} min here, its first cell says {HEADERS[lesson]}"
            )
        else:
            assert minutes < HEADERS[lesson], f"{where}: part of {lesson} longer than the lesson"


def test_every_lesson_has_its_section_with_its_minutes() -> None:
    text = _guide()
    for path in LESSONS:
        assert f"({path.name})" in text, f"{path.name} is not linked from the guide"
        section = _section(text, f"{path.name[:2]} ·")
        assert f"{HEADERS[path.name]} minutes" in section[:300], (
            f"the guide's section on {path.name} does not give its {HEADERS[path.name]} minutes"
        )
        for part in ("Goals", "Prerequisites", "Answers"):
            assert f"**{part}" in section, f"{path.name}: no **{part}** in its section"


@pytest.mark.parametrize("lesson", LESSONS, ids=[path.name for path in LESSONS])
def test_every_exercise_is_answered(lesson: Path) -> None:
    section = _section(_guide(), f"{lesson.name[:2]} ·")
    answers = section[section.index("**Answers") :]
    missing = [n for n in _exercises(lesson) if not re.search(rf"\bExercise {n}\b", answers)]
    assert not missing, f"{lesson.name}: no answer for exercise(s) {missing} in the guide"


def test_the_90_minute_path_adds_up() -> None:
    rows, total = _path_rows(_section(_guide(), "The 90-minute path"))
    _check_rows(rows, total, "90-minute path")
    assert total == 90


def test_the_three_sessions_cover_every_lesson_once() -> None:
    text = _section(_guide(), "The three-session path")
    seen: list[str] = []
    totals = []
    for number in (1, 2, 3):
        rows, total = _path_rows(_section(text, f"Session {number}"))
        _check_rows(rows, total, f"session {number}")
        totals.append(total)
        seen += [lesson for lesson, whole, _ in rows if lesson and whole]
    assert sorted(seen) == sorted(HEADERS), "each lesson once, whole, over the three sessions"
    assert all(60 <= total <= 120 for total in totals), totals


def test_the_readme_table_gives_the_lessons_minutes() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = {}
    for row in _table(_section(readme, "The lessons")):
        link = re.search(r"\(notebooks/(\d\d_[\w-]+\.ipynb)\)", " ".join(row))
        if link:
            table[link[1]] = int(row[3])
    differ = {
        name: (table.get(name), minutes)
        for name, minutes in HEADERS.items()
        if table.get(name) != minutes
    }
    assert not differ, f"README minutes vs the lessons' first cells: {differ}"
