"""Hidden solutions; student copies with outputs cleared and answers out; the lessons untouched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

from click.testing import CliRunner  # noqa: E402

from camkit.classroom import (  # noqa: E402
    ANSWER_COMMENT,
    CODE_PLACEHOLDER,
    MARKDOWN_PLACEHOLDER,
    SOLUTION_TITLE,
    ClassroomError,
    bound_names,
    classroom,
    hidden_solution_problems,
    hide_solutions,
    hide_solutions_in,
    make_student_copies,
    student_answer,
    student_notebook,
    write_notebook,
)

SECRET_CODE = "my_weights = gradients.mean(dim=(1, 2))"
STUDENT_CODE = f"my_weights = ...  {ANSWER_COMMENT}"
SECRET_PROSE = "The ReLU removes the evidence against the class."


def _lesson(path: Path, solutions: bool = True) -> Path:
    """A small executed-looking lesson: outputs, counts, one code and one markdown solution."""
    v4 = nbformat.v4
    cells = [
        v4.new_markdown_cell("# Lesson"),
        v4.new_code_cell(
            "x = 1\nprint(x)",
            execution_count=1,
            outputs=[v4.new_output("stream", name="stdout", text="1\n")],
            metadata={"execution": {"iopub.status.idle": "2026-11-30T09:44:54Z"}},
        ),
        v4.new_code_cell(
            "x + 1",
            execution_count=2,
            outputs=[
                v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=2),
                v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="}),
            ],
        ),
        v4.new_markdown_cell("**Exercise 1.** Compute the channel weights."),
        v4.new_code_cell(
            SECRET_CODE,
            execution_count=3,
            metadata={"tags": ["solution"] if solutions else []},
            outputs=[v4.new_output("stream", name="stdout", text="done\n")],
        ),
        v4.new_markdown_cell("**Exercise 2.** What does the ReLU remove?"),
        v4.new_markdown_cell(SECRET_PROSE, metadata={"tags": ["solution"] if solutions else []}),
        v4.new_code_cell("", execution_count=None),
    ]
    notebook = v4.new_notebook(cells=cells, metadata={"widgets": {"state": {"a": 1}}})
    nbformat.validate(notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def lessons(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    _lesson(folder / "01_hooks.ipynb")
    _lesson(folder / "02_by_hand.ipynb")
    (folder / "README.md").write_text("not a notebook\n")
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_copies_clear_outputs_and_empty_solutions(lessons: Path, tmp_path: Path) -> None:
    before = _snapshot(lessons)
    copies = make_student_copies(lessons, tmp_path / "student")
    assert [copy.path.name for copy in copies] == ["01_hooks.ipynb", "02_by_hand.ipynb"]
    assert [copy.solutions for copy in copies] == [2, 2]
    assert sorted(p.name for p in (tmp_path / "student").iterdir()) == [
        "01_hooks.ipynb",
        "02_by_hand.ipynb",
    ]
    for copy in copies:
        original = nbformat.read(copy.source, as_version=4)
        student = nbformat.read(copy.path, as_version=4)
        nbformat.validate(student)
        # Same cells in the same order: only outputs and answers differ.
        assert [c.cell_type for c in student.cells] == [c.cell_type for c in original.cells]
        for old, new in zip(original.cells, student.cells, strict=True):
            if new.cell_type == "code":
                assert new.outputs == []
                assert new.execution_count is None
            assert "execution" not in new.metadata
            if "solution" in old.metadata.get("tags", []):
                expected = STUDENT_CODE if old.cell_type == "code" else MARKDOWN_PLACEHOLDER
                assert new.source == expected
            else:
                assert new.source == old.source
        text = copy.path.read_text()
        assert SECRET_CODE not in text
        assert SECRET_PROSE not in text
        assert "widgets" not in student.metadata
    assert _snapshot(lessons) == before  # the teacher's files are unchanged, byte for byte


def test_notebook_without_solutions_is_only_cleared(tmp_path: Path) -> None:
    source = _lesson(tmp_path / "lessons" / "03_plain.ipynb", solutions=False)
    (copy,) = make_student_copies(source, tmp_path / "out")
    assert copy.solutions == 0
    student = nbformat.read(copy.path, as_version=4)
    assert SECRET_CODE in [cell.source for cell in student.cells]
    assert all(c.outputs == [] for c in student.cells if c.cell_type == "code")


def test_refuses_the_source_folder(lessons: Path) -> None:
    before = _snapshot(lessons)
    with pytest.raises(ClassroomError, match="teacher's notebooks") as raised:
        make_student_copies(lessons, lessons)
    assert "\n" not in str(raised.value)
    with pytest.raises(ClassroomError, match="teacher's notebooks"):
        make_student_copies(lessons / "01_hooks.ipynb", lessons / ".", overwrite=True)
    assert _snapshot(lessons) == before


def test_refuses_to_overwrite_unless_asked(lessons: Path, tmp_path: Path) -> None:
    out = tmp_path / "student"
    out.mkdir()
    (out / "02_by_hand.ipynb").write_text("a student's own work")
    with pytest.raises(ClassroomError, match=r"02_by_hand\.ipynb.*already exists.*--overwrite"):
        make_student_copies(lessons, out)
    # Nothing was written: the check comes before the first copy.
    assert sorted(p.name for p in out.iterdir()) == ["02_by_hand.ipynb"]
    assert (out / "02_by_hand.ipynb").read_text() == "a student's own work"
    make_student_copies(lessons, out, overwrite=True)
    assert nbformat.read(out / "02_by_hand.ipynb", as_version=4).cells[0].source == "# Lesson"


@pytest.mark.parametrize(
    ("kind", "message"),
    [("missing", "not found"), ("empty", "no notebooks"), ("text", "not a notebook")],
)
def test_bad_sources(tmp_path: Path, kind: str, message: str) -> None:
    source = {"missing": tmp_path / "missing", "empty": tmp_path, "text": tmp_path / "notes.txt"}
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ClassroomError, match=message) as raised:
        make_student_copies(source[kind], tmp_path / "out")
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_broken_notebook_is_named_and_nothing_is_written(lessons: Path, tmp_path: Path) -> None:
    (lessons / "03_broken.ipynb").write_text("{not json")
    with pytest.raises(ClassroomError, match=r"cannot read notebook .*03_broken\.ipynb"):
        make_student_copies(lessons, tmp_path / "student")
    assert not (tmp_path / "student").exists()


def test_out_is_a_file(lessons: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ClassroomError, match="is a file"):
        make_student_copies(lessons, tmp_path / "taken")


def test_command_writes_copies(lessons: Path, tmp_path: Path) -> None:
    out = tmp_path / "student"
    result = CliRunner().invoke(classroom, [str(lessons), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 student notebooks" in result.output
    assert "(2 solution cells emptied)" in result.output
    student = nbformat.read(out / "01_hooks.ipynb", as_version=4)
    assert student.cells[4].source == STUDENT_CODE
    assert student.cells[1].outputs == []


def test_command_errors_are_one_line(lessons: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "student"
    assert runner.invoke(classroom, [str(lessons), "--out", str(out)]).exit_code == 0
    again = runner.invoke(classroom, [str(lessons), "--out", str(out)])
    assert again.exit_code == 2
    assert again.stderr.startswith("error: ")
    assert again.stderr.count("\n") == 1
    assert "--overwrite" in again.stderr
    assert runner.invoke(classroom, [str(lessons), "--out", str(out), "--overwrite"]).exit_code == 0
    same = runner.invoke(classroom, [str(lessons), "--out", str(lessons)])
    assert same.exit_code == 2
    assert "teacher's notebooks" in same.stderr
    missing = runner.invoke(classroom, [str(lessons)])
    assert missing.exit_code == 2  # click's usage error: --out is required
    assert "--out" in missing.stderr


# --------------------------------------------------------------------------------------------
# Answers taken out, names kept
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("my_alpha = alpha15", f"my_alpha = ...  {ANSWER_COMMENT}"),
        # Assigned twice: one line. Expressions and calls go.
        (
            "my_alpha = a / b\nmy_alpha = torch.nan_to_num(my_alpha)\nprint(my_alpha)",
            f"my_alpha = ...  {ANSWER_COMMENT}",
        ),
        # Tuples keep their shape, so nothing fails to unpack.
        (
            "x0, y0, x1, y1 = BOX\nmy_share = float(m[y0:y1, x0:x1].sum())",
            f"x0, y0, x1, y1 = ..., ..., ..., ...  {ANSWER_COMMENT}\n"
            f"my_share = ...  {ANSWER_COMMENT}",
        ),
        # Names bound inside a with block count; the `as` name and loop variables do not.
        (
            "import torch\nwith hooks.capture(m, ['a']) as captured:\n"
            "    logits = m(x)\n    for k in range(3):\n        total = k\n"
            "my_signed = {n: bool(v) for n, v in captured.items()}",
            f"import torch\nlogits = ...  {ANSWER_COMMENT}\ntotal = ...  {ANSWER_COMMENT}\n"
            f"my_signed = ...  {ANSWER_COMMENT}",
        ),
        # A function is an answer too; names inside it are not.
        (
            "def my_rule(a, b):\n    c = a + b\n    return c",
            f"my_rule = ...  {ANSWER_COMMENT}: a function",
        ),
        ("answers['_bn0'] = True", f"answers['_bn0'] = ...  {ANSWER_COMMENT}"),
        ("answers = {}\nanswers['_bn0'] = True", f"answers = ...  {ANSWER_COMMENT}"),
        (
            "total: int = 3\ncount += 1",
            f"total = ...  {ANSWER_COMMENT}\ncount = ...  {ANSWER_COMMENT}",
        ),
        ("print(42)", CODE_PLACEHOLDER),
        ("%timeit f(x)", CODE_PLACEHOLDER),
        (
            f"{SOLUTION_TITLE}\nmy_peak = (3, 4)  # the dog's nose",
            f"my_peak = ...  {ANSWER_COMMENT}",
        ),
    ],
)
def test_student_answer_keeps_names_and_drops_values(source: str, expected: str) -> None:
    assert student_answer(source) == expected


def test_names_bound_above_are_left_to_the_lesson() -> None:
    # `logits` was made by the lesson above: the answer cell must not overwrite it with `...`.
    source = "pelican = 144\nlogits = model(x)\nmy_gradients = grad(logits[0, pelican])"
    assert student_answer(source, known={"logits", "model"}) == (
        f"pelican = ...  {ANSWER_COMMENT}\nmy_gradients = ...  {ANSWER_COMMENT}"
    )
    # An answer that only reassigns names from above still gets its placeholders.
    assert student_answer("my_peak = (3, 4)", known={"my_peak"}) == (
        f"my_peak = ...  {ANSWER_COMMENT}"
    )
    assert bound_names(
        "import torch.nn as nn\nfrom math import pi\nimport os.path\nfor k in range(2):\n"
        "    total = k\nwith open('f') as handle:\n    pass\ndef f():\n    inner = 1\n"
        "a, (b, *c) = 1, (2, 3)\nd['x'] = 1"
    ) == {"nn", "pi", "os", "k", "total", "handle", "f", "a", "b", "c"}
    assert bound_names("%timeit f(x)") == set()


def test_student_notebook_keeps_the_lessons_own_names() -> None:
    v4 = nbformat.v4
    notebook = v4.new_notebook(
        cells=[
            v4.new_code_cell("logits = model(x)"),
            v4.new_code_cell(
                "logits = model(x)\nmy_gradients = grad(logits)", metadata={"tags": ["solution"]}
            ),
            v4.new_code_cell("check(my_gradients)"),
        ]
    )
    student, _ = student_notebook(notebook)
    assert student.cells[1].source == f"my_gradients = ...  {ANSWER_COMMENT}"


def test_student_answer_runs_and_checkers_see_unanswered() -> None:
    from camkit.exercises import unanswered

    names: dict = {}
    exec(student_answer("x0, y0 = BOX\nmy_share = x0 / y0\ndef f():\n    pass"), names)
    assert all(unanswered(names[key]) for key in ("x0", "y0", "my_share", "f"))


# --------------------------------------------------------------------------------------------
# Hidden solutions
# --------------------------------------------------------------------------------------------


def test_hide_solutions_marks_every_solution_and_only_them(lessons: Path) -> None:
    notebook = nbformat.read(lessons / "01_hooks.ipynb", as_version=4)
    problems = [hidden_solution_problems(cell) for cell in notebook.cells]
    assert [bool(found) for found in problems] == [
        False,
        False,
        False,
        False,
        True,
        False,
        True,
        False,
    ]
    before = [cell.source for cell in notebook.cells]
    assert hide_solutions(notebook) == 2
    assert all(not hidden_solution_problems(cell) for cell in notebook.cells)
    code, prose = notebook.cells[4], notebook.cells[6]
    assert code.source.splitlines() == [SOLUTION_TITLE, SECRET_CODE]
    assert code.metadata["cellView"] == "form"
    assert code.metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
    assert code.metadata["collapsed"] is True
    assert code.metadata["tags"] == ["solution", "hide-input"]
    assert prose.source.startswith("<details><summary>")
    assert prose.source.endswith("</details>")
    assert SECRET_PROSE in prose.source
    # Nothing else changed, and a second pass changes nothing.
    untouched = [i for i in range(len(before)) if i not in (4, 6)]
    assert [notebook.cells[i].source for i in untouched] == [before[i] for i in untouched]
    snapshot = nbformat.writes(notebook)
    assert hide_solutions(notebook) == 0
    assert nbformat.writes(notebook) == snapshot
    nbformat.validate(notebook)


def test_hidden_solution_still_runs_the_same() -> None:
    cell = nbformat.v4.new_code_cell("a = 2\nb = a * 21", metadata={"tags": ["solution"]})
    notebook = nbformat.v4.new_notebook(cells=[cell])
    hide_solutions(notebook)
    names: dict = {}
    exec(notebook.cells[0].source, names)  # the title line is a comment
    assert names["b"] == 42


def test_problems_name_each_missing_mark() -> None:
    cell = nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["solution"]})
    found = " ".join(hidden_solution_problems(cell))
    for mark in (
        "#@title",
        "cellView",
        "source_hidden",
        "outputs_hidden",
        "collapsed",
        "hide-input",
    ):
        assert mark in found
    cell.metadata["jupyter"] = {"source_hidden": True}
    assert "source_hidden" not in " ".join(hidden_solution_problems(cell))
    # A title written by hand, with Colab's space, is kept.
    own = nbformat.v4.new_code_cell("# @title My answer\nx = 1", metadata={"tags": ["solution"]})
    hide_solutions(nbformat.v4.new_notebook(cells=[own]))
    assert own.source == "# @title My answer\nx = 1"
    assert not hidden_solution_problems(own)


def test_student_copy_unhides_what_it_asks_for(lessons: Path) -> None:
    notebook = nbformat.read(lessons / "01_hooks.ipynb", as_version=4)
    notebook.cells[4].metadata["jupyter"] = {"outputs_hidden": False, "other": 1}
    hide_solutions(notebook)
    student, emptied = student_notebook(notebook)
    assert emptied == 2
    code = student.cells[4]
    assert code.source == STUDENT_CODE
    assert "cellView" not in code.metadata
    assert "collapsed" not in code.metadata
    assert code.metadata["jupyter"] == {"other": 1}  # only the hiding marks go
    assert code.metadata["tags"] == ["solution"]
    assert student.cells[6].source == MARKDOWN_PLACEHOLDER
    assert SOLUTION_TITLE not in nbformat.writes(student)


def test_hide_solutions_in_rewrites_only_what_changes(lessons: Path) -> None:
    path = lessons / "01_hooks.ipynb"
    os.chmod(path, 0o640)
    assert hide_solutions_in(path) == {path: 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    stored = nbformat.read(path, as_version=4)
    assert all(not hidden_solution_problems(cell) for cell in stored.cells)
    before = path.stat().st_mtime_ns, path.read_bytes()
    assert hide_solutions_in(lessons) == {path: 0, lessons / "02_by_hand.ipynb": 2}
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before


# --------------------------------------------------------------------------------------------
# Permissions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600, 0o444])
def test_student_copies_get_the_originals_permissions(
    lessons: Path, tmp_path: Path, mode: int
) -> None:
    for path in lessons.glob("*.ipynb"):
        os.chmod(path, mode)
    copies = make_student_copies(lessons, tmp_path / "student")
    assert [stat.S_IMODE(copy.path.stat().st_mode) for copy in copies] == [mode, mode]
    # Written again over read-only copies too.
    again = make_student_copies(lessons, tmp_path / "student", overwrite=True)
    assert [stat.S_IMODE(copy.path.stat().st_mode) for copy in again] == [mode, mode]
    assert not list((tmp_path / "student").glob(".*.tmp"))


def test_rewriting_keeps_permissions_and_new_files_follow_the_umask(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    kept = tmp_path / "kept.ipynb"
    kept.write_text("{}")
    os.chmod(kept, 0o664)
    write_notebook(nbformat, notebook, kept)  # what run_all.py does to a lesson
    assert stat.S_IMODE(kept.stat().st_mode) == 0o664
    old = os.umask(0o027)
    try:
        write_notebook(nbformat, notebook, tmp_path / "new.ipynb")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.ipynb").stat().st_mode) == 0o640
    write_notebook(nbformat, notebook, tmp_path / "chosen.ipynb", mode=0o600)
    assert stat.S_IMODE((tmp_path / "chosen.ipynb").stat().st_mode) == 0o600


# --------------------------------------------------------------------------------------------
# Every lesson's student copy runs top to bottom
# --------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _run_all_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_all", ROOT / "notebooks" / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _errors(notebook) -> list[str]:
    """One line per cell that raised, except cells tagged raises-exception."""
    found = []
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or "raises-exception" in cell.metadata.get("tags", []):
            continue
        for output in cell.outputs:
            if output.output_type == "error":
                first = (cell.source.splitlines() or [""])[0][:60]
                found.append(f"cell {number} ({first!r}): {output.ename}: {output.evalue[:160]}")
    return found


@pytest.mark.parametrize("lesson", LESSONS, ids=[path.name for path in LESSONS])
def test_student_copy_runs_top_to_bottom(lesson: Path, tmp_path: Path) -> None:
    """A learner who runs a student copy without answering sees hints, never a traceback."""
    pytest.importorskip("nbclient")
    from nbclient import NotebookClient

    run_all = _run_all_module()
    (copy,) = make_student_copies(lesson, tmp_path)
    notebook = nbformat.read(copy.path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        kernel_manager_class=run_all._CurrentEnvironmentKernel,
        resources={"metadata": {"path": str(lesson.parent)}},  # where nbval runs the lessons
        allow_errors=True,  # run every cell, then name every failure
        record_timing=False,
    )
    client.execute()
    problems = _errors(notebook)
    # Every check cell runs on unanswered exercises: each must say so, with a hint.
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or "exercises.check_" not in cell.source:
            continue
        printed = " ".join(
            "".join(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
            for output in cell.outputs
        )
        if "Not answered yet" not in printed:
            problems.append(f"cell {number} does not say 'Not answered yet': {printed[:160]!r}")
    assert not problems, f"{lesson.name} student copy:\n" + "\n".join(problems)
