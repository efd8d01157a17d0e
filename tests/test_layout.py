"""The package's shape: no import cycles, a core that imports nothing above it, the repo layout."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "camkit"

#: The modules a lesson opens; they may import each other (one way) and the private leaves only.
CORE = {"camkit.hooks", "camkit.cam", "camkit.layers", "camkit.overlay"}
#: Private helpers with no camkit imports above them, usable by every layer.
LEAVES = {"camkit._errors", "camkit._locks", "camkit._spatial", "camkit._inputs"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str], types: bool = False) -> set[str]:
    """The camkit modules ``path`` imports at run time (also inside functions).

    With ``types``, also those imported for annotations only (``if TYPE_CHECKING:``).
    """
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node) and not types:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "camkit")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.split(".")[0] == "camkit"
        ):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(_module_name(path))
    return found


def _graph(types: bool = False) -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules, types) & modules for p in paths}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    return cycles


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_import_cycles_even_through_imports_for_annotations() -> None:
    # explanation.py and figures.py used to import each other (figures for its annotations,
    # explanation inside its methods): now explanation imports figures, never the reverse.
    cycles = _cycles(_graph(types=True))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
    graph = _graph(types=True)
    assert "camkit.figures" in graph["camkit.explanation"]
    assert "camkit.explanation" not in graph["camkit.figures"]


def test_the_core_imports_nothing_above_it() -> None:
    graph = _graph()
    for module in sorted(CORE):
        above = graph[module] - CORE - LEAVES
        assert not above, f"{module} imports {sorted(above)}, which sit above the core"
    for module in sorted(LEAVES):
        assert graph[module] <= {"camkit._errors"}, f"{module} imports {sorted(graph[module])}"


def test_the_core_modules_are_short_and_public() -> None:
    for module in sorted(CORE):
        path = ROOT / (module.replace(".", "/") + ".py")
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 600, f"{path.name} has {lines} lines; split it (a few screens at most)"


def test_top_level_layout() -> None:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    top = {line.split("/")[0] for line in listed.stdout.splitlines() if line}
    expected = {"notebooks", "camkit", "images", "tests", "environment.yml", "README.md"}
    assert expected <= top, f"missing at the top level: {sorted(expected - top)}"
    allowed = expected | {"pyproject.toml", ".ci", "benchmarks", ".gitignore", "docs"}
    assert top <= allowed, f"unexpected at the top level: {sorted(top - allowed)}"


def test_importing_camkit_loads_no_optional_part() -> None:
    code = (
        "import sys, camkit; "
        "heavy = [m for m in ('ipywidgets', 'scipy', 'timm', 'transformers', 'click', "
        "'camkit.widgets', 'camkit.metrics', 'camkit.cli') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "", f"import camkit also imported {done.stdout.strip()}"
    assert done.stderr == "", f"import camkit printed to stderr: {done.stderr!r}"


def test_importing_camkit_in_a_jupyter_kernel_prints_nothing() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "import camkit\nfigure = camkit.grid(camkit.explain("
                "camkit.load_model(), camkit.sample_image('chelsea')))\nfigure"
            )
        ]
    )
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    streams = [o.get("text", "") for o in outputs if o.output_type == "stream"]
    assert not streams, f"the cell printed {streams}"
    # The figure shows as a picture with no %matplotlib magic, once.
    pictures = [o for o in outputs if "image/jpeg" in o.get("data", {})]
    assert not [o for o in outputs if "image/png" in o.get("data", {})], "stored twice"
    assert len(pictures) == 1, [o.get("data", {}).keys() for o in outputs]


def test_readme_lists_every_lesson_with_a_colab_link_from_the_one_repository_url() -> None:
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    repository = project["urls"]["Repository"].removeprefix("https://github.com/")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"https://colab\.research\.google\.com/github/[^)\s]+", readme)
    lessons = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    expected = [
        f"https://colab.research.google.com/github/{repository}/blob/main/notebooks/{name}"
        for name in lessons
    ]
    assert lessons, "no lessons found"
    assert sorted(links) == expected, "README's Colab links differ from the lessons"
    # The lessons table sits near the top, where a teacher looks first.
    assert readme.index("## The lessons") < 3000
