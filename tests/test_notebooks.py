"""The lessons' structure: Colab cells, one clean stored run, size, exercises, student copies.

nbval runs the notebooks themselves (see notebooks/README.md); these checks read the stored files
only, so they take a second.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")

from camkit.classroom import (  # noqa: E402
    SOLUTION_TAG,
    hidden_solution_problems,
    make_student_copies,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: Stored outputs are for reading on GitHub; JPEG photos at 120 dpi keep a lesson under this.
MAX_BYTES = 1_500_000
TRACEBACK = "Traceback (most recent call last)"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

if not NOTEBOOKS:
    pytest.skip("no lessons in notebooks/ yet", allow_module_level=True)


def _repository() -> tuple[str, str, str]:
    """The repository URL of pyproject.toml's [project.urls], and its owner and name."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        url = tomllib.load(file)["project"]["urls"]["Repository"]
    url = url.rstrip("/").removesuffix(".git")
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", url)
    assert match, f"Repository URL {url!r} is not https://github.com/<owner>/<name>"
    return url, match[1], match[2]


REPOSITORY, OWNER, NAME = _repository()


def _read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _python(source: str) -> ast.Module:
    """Parse a cell, with IPython's magics (``%pip``, ``!pip``) turned into plain calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    return ast.parse(TransformerManager().transform_cell(source))


def _mentions_colab(node: ast.AST, colab_names: set[str]) -> bool:
    text = ast.unparse(node)
    return "google.colab" in text or any(
        isinstance(sub, ast.Name) and sub.id in colab_names for sub in ast.walk(node)
    )


def _installs(node: ast.AST) -> bool:
    """Whether ``node`` contains a pip install command (a string or a ``%pip`` magic)."""
    return any(
        isinstance(sub, ast.Constant) and isinstance(sub.value, str) and "install" in sub.value
        for sub in ast.walk(node)
    )


lesson = pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])


@lesson
def test_first_cell_is_the_colab_badge(path: Path) -> None:
    first = _read(path).cells[0]
    assert first.cell_type == "markdown", "the first cell must be markdown with the Colab badge"
    expected = (
        f"https://colab.research.google.com/github/{OWNER}/{NAME}/blob/main/notebooks/{path.name}"
    )
    links = re.findall(r"\[!\[([^\]]*)\]\(([^)\s]+)\)\]\(([^)\s]+)\)", first.source)
    badges = [(alt, image, target) for alt, image, target in links if image == BADGE_IMAGE]
    assert badges, f"no Colab badge ({BADGE_IMAGE}) in the first cell"
    alt, _, target = badges[0]
    assert alt.lower() == "open in colab", f"the badge's text is {alt!r}, not 'Open in Colab'"
    assert target == expected, f"the badge opens {target}, not {expected}"


@lesson
def test_second_cell_installs_camkit_only_in_colab(path: Path) -> None:
    second = _read(path).cells[1]
    assert second.cell_type == "code", "the second cell must be the Colab install cell"
    tree = _python(second.source)
    # Names bound to a google.colab test (IN_COLAB = "google.colab" in sys.modules) count too.
    colab_names = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and "google.colab" in ast.unparse(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    guarded = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _mentions_colab(node.test, colab_names)
    ]
    assert guarded, "the install cell must test for google.colab"
    inside = [child for node in guarded for child in node.body]
    assert any(_installs(child) for child in inside), "no pip install under the google.colab test"
    install_text = " ".join(ast.unparse(child) for child in inside if _installs(child))
    assert f"git+{REPOSITORY}" in install_text, f"camkit must be installed from git+{REPOSITORY}"
    # Nothing is installed outside the test: elsewhere camkit is already there.
    outside = [node for node in tree.body if node not in guarded]
    assert not any(_installs(node) for node in outside), "pip install outside the Colab test"


@lesson
def test_stored_outputs_come_from_one_clean_run(path: Path) -> None:
    cells = list(enumerate(_read(path).cells))
    code = [(number, cell) for number, cell in cells if cell.cell_type == "code"]
    unexecuted = [n for n, cell in code if cell.source.strip() and cell.execution_count is None]
    assert not unexecuted, (
        f"cells {unexecuted} were never run; re-execute with `python notebooks/run_all.py`"
    )
    counts = [cell.execution_count for _, cell in code if cell.execution_count is not None]
    assert counts == list(range(1, len(counts) + 1)), (
        f"execution counts {counts} are not 1, 2, 3...; re-execute with "
        "`python notebooks/run_all.py`"
    )
    for number, cell in code:
        for output in cell.outputs:
            if output.get("execution_count") is not None:
                assert output.execution_count == cell.execution_count, f"cell {number}"


@lesson
def test_size(path: Path) -> None:
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{path.name} is {size:,} bytes; lower the figures' dpi"


@lesson
def test_no_traceback_in_stored_outputs(path: Path) -> None:
    for number, cell in enumerate(_read(path).cells):
        if cell.cell_type != "code" or "raises-exception" in _tags(cell):
            continue
        for output in cell.outputs:
            text = "\n".join(
                [
                    output.get("text", ""),
                    str(output.get("data", {}).get("text/plain", "")),
                    *output.get("traceback", []),
                ]
            )
            assert output.output_type != "error", f"cell {number} stored an error: {output.ename}"
            assert TRACEBACK not in text, f"cell {number} printed a traceback"


def _exercises(notebook: Any) -> int:
    heading = re.compile(r"^\s*(?:#{1,6}\s*|\*\*)Exercise\s+\d", re.MULTILINE)
    return sum(
        1
        for cell in notebook.cells
        if "exercise" in _tags(cell)
        or (cell.cell_type == "markdown" and heading.search(cell.source))
    )


@lesson
def test_lesson_has_exercises_with_solutions(path: Path) -> None:
    notebook = _read(path)
    assert _exercises(notebook) >= 2, "each lesson ends with at least two exercises"
    solutions = [cell for cell in notebook.cells if SOLUTION_TAG in _tags(cell)]
    assert solutions, "no cell tagged 'solution': the student copy would hold nothing to do"
    assert all(cell.source.strip() for cell in solutions), "an empty solution cell"


@lesson
def test_student_copy_has_no_solution(path: Path, tmp_path: Path) -> None:
    before = path.read_bytes()
    (copy,) = make_student_copies(path, tmp_path)
    assert path.read_bytes() == before
    original, student = _read(path), _read(copy.path)
    assert len(student.cells) == len(original.cells)
    for number, cell in enumerate(original.cells):
        if SOLUTION_TAG in _tags(cell):
            answer = cell.source.strip()
            assert not any(answer in other.source for other in student.cells), (
                f"the solution of cell {number} survived in the student copy"
            )
    assert all(
        cell.outputs == [] and cell.execution_count is None
        for cell in student.cells
        if cell.cell_type == "code"
    )


@lesson
def test_solutions_are_hidden(path: Path) -> None:
    """A learner who opens the lesson sees that an answer is there, not the answer."""
    problems = [
        f"cell {number}: {'; '.join(found)}"
        for number, cell in enumerate(_read(path).cells)
        if (found := hidden_solution_problems(cell))
    ]
    assert not problems, (
        "solution cells not hidden (re-execute with `python notebooks/run_all.py`, or run "
        '`python -c "from camkit.classroom import hide_solutions_in; '
        f"hide_solutions_in('notebooks/{path.name}')\"`):\n" + "\n".join(problems)
    )
