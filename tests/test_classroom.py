"""Student copies: outputs cleared, solutions emptied, the teacher's notebooks never touched."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

from click.testing import CliRunner  # noqa: E402

from camkit.classroom import (  # noqa: E402
    CODE_PLACEHOLDER,
    MARKDOWN_PLACEHOLDER,
    ClassroomError,
    classroom,
    make_student_copies,
)

SECRET_CODE = "my_weights = gradients.mean(dim=(1, 2))"
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
                expected = CODE_PLACEHOLDER if old.cell_type == "code" else MARKDOWN_PLACEHOLDER
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
    assert student.cells[4].source == CODE_PLACEHOLDER
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
