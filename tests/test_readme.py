"""The README's Python examples run as written.

Every fenced ```python block of README.md runs, in order and in one namespace (a later block may
use what an earlier one made, as a reader would in one session), in a scratch folder. A block is
skipped only when it is marked as needing a download: the line of text just before it, or a
comment inside it, says "needs a download" (the only pretrained weights offline are
EfficientNet-Lite's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "needs a download"
_FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced code block of the README."""

    language: str
    code: str
    line: int  # of its first code line, 1-based
    before: str  # the last non-blank line before the fence

    @property
    def needs_download(self) -> bool:
        comments = [line.split("#", 1)[1] for line in self.code.splitlines() if "#" in line]
        return MARK in self.before.lower() or any(MARK in c.lower() for c in comments)


def code_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with what precedes each."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        before = next((ln for ln in reversed(lines[:index]) if ln.strip()), "")
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        code = "\n".join(lines[index + 1 : end]) + "\n"
        blocks.append(Block(opening.group(1).lower(), code, index + 2, before))
        index = end + 1
    return blocks


def test_blocks_and_marks_are_found() -> None:
    text = (
        "Intro.\n\n```python\nx = 1\n```\n\nNeeds a download:\n\n```python\ny = 2\n```\n"
        "```bash\nls\n```\n```python\nz = 3  # needs a download\n```\n"
    )
    blocks = code_blocks(text)
    assert [(b.language, b.line, b.needs_download) for b in blocks] == [
        ("python", 4, False),
        ("python", 10, True),
        ("bash", 13, False),
        ("python", 16, True),
    ]
    assert blocks[0].code == "x = 1\n"


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")  # figures are made, never shown in a window
    python = [b for b in code_blocks(README.read_text(encoding="utf-8")) if b.language == "python"]
    runnable = [b for b in python if not b.needs_download]
    assert runnable, "README.md has no Python example that runs offline"
    monkeypatch.chdir(tmp_path)  # files an example writes land in a scratch folder
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for block in runnable:
        try:
            exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)
        except Exception as error:  # the block, its line and the error, in one message
            pytest.fail(
                f"README.md block at line {block.line} failed: {type(error).__name__}: {error}\n"
                f"{block.code}",
                pytrace=False,
            )
