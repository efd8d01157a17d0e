"""Student copies of the lessons: outputs cleared, the answers to the exercises taken out.

A teacher keeps one set of notebooks, with the solutions in cells tagged ``solution``, and
generates what the students get from it, so the two never drift apart (fastbook keeps clean copies
of its chapters the same way)::

    camkit classroom notebooks/ --out student/

In each copy every code cell loses its outputs and execution count, and every cell tagged
``solution`` keeps its place but its source becomes a placeholder (:data:`CODE_PLACEHOLDER` in code
cells, :data:`MARKDOWN_PLACEHOLDER` in markdown cells). The teacher's notebooks are only read.

``nbformat`` (installed with Jupyter) is imported when a copy is made, so the rest of the
``camkit`` command works without it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from camkit._errors import InputError

__all__ = [
    "CODE_PLACEHOLDER",
    "MARKDOWN_PLACEHOLDER",
    "SOLUTION_TAG",
    "ClassroomError",
    "StudentCopy",
    "classroom",
    "make_student_copies",
    "student_notebook",
]

#: Cells with this tag hold an exercise's answer: emptied in the student copies.
SOLUTION_TAG = "solution"
#: What a code cell tagged ``solution`` holds in a student copy.
CODE_PLACEHOLDER = "# Your answer here"
#: What a markdown cell tagged ``solution`` holds in a student copy.
MARKDOWN_PLACEHOLDER = "*Your answer here*"
#: Cell metadata that records a run (timestamps), dropped with the outputs.
_RUN_METADATA = ("execution", "collapsed", "scrolled")


class ClassroomError(InputError):
    """A student copy cannot be made; the message names the fix."""


@dataclass(frozen=True)
class StudentCopy:
    """One student notebook written by :func:`make_student_copies`.

    Attributes:
        source: The teacher's notebook it was made from.
        path: The student copy.
        solutions: How many cells tagged ``solution`` were emptied.
    """

    source: Path
    path: Path
    solutions: int


def _nbformat() -> Any:
    try:
        import nbformat
    except ImportError:  # pragma: no cover - nbformat comes with Jupyter and camkit[notebooks]
        raise ClassroomError(
            "student copies need the nbformat package; install it with `pip install nbformat`"
        ) from None
    return nbformat


def _tags(cell: Any) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [str(tag) for tag in tags] if isinstance(tags, list) else []


def student_notebook(notebook: Any) -> tuple[Any, int]:
    """A student copy of one notebook, and how many solution cells it emptied.

    Args:
        notebook: An ``nbformat`` notebook node (version 4); it is not changed.

    Returns:
        The new notebook node and the number of cells tagged ``solution``.
    """
    import copy

    student = copy.deepcopy(notebook)
    emptied = 0
    for cell in student.cells:
        for key in _RUN_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if SOLUTION_TAG in _tags(cell):
            emptied += 1
            cell.source = {"code": CODE_PLACEHOLDER, "markdown": MARKDOWN_PLACEHOLDER}.get(
                cell.cell_type, ""
            )
            cell.pop("attachments", None)  # pictures pasted into an answer are part of it
    # Saved widget state is an output too (and can hold whole images).
    student.metadata.pop("widgets", None)
    return student, emptied


def _notebooks_in(source: Path) -> list[Path]:
    if not source.exists():
        raise ClassroomError(
            f"{str(source)!r} not found; pass the folder that holds the lessons "
            "(e.g. notebooks/) or one .ipynb file"
        )
    if source.is_file():
        if source.suffix != ".ipynb":
            raise ClassroomError(
                f"{str(source)!r} is not a notebook (.ipynb); pass a notebook or a folder of them"
            )
        return [source]
    notebooks = sorted(path for path in source.glob("*.ipynb") if path.is_file())
    if not notebooks:
        raise ClassroomError(
            f"no notebooks (*.ipynb) in {str(source)!r}; pass the folder that holds the lessons"
        )
    return notebooks


def _check_out_dir(out_dir: Path, notebooks: Sequence[Path], overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ClassroomError(
            f"--out {str(out_dir)!r} is a file, not a folder; choose a folder for the copies"
        )
    folders = {path.parent.resolve() for path in notebooks}
    if out_dir.resolve() in folders:
        raise ClassroomError(
            f"--out {str(out_dir)!r} is the folder of the teacher's notebooks and the copies "
            "would replace them; choose another folder, e.g. student/"
        )
    if overwrite:
        return
    existing = [out_dir / path.name for path in notebooks if (out_dir / path.name).exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ClassroomError(
            f"{str(existing[0])!r}{more} already exists; pass --overwrite to replace the "
            "student copies, or choose another folder"
        )


def _read(nbformat: Any, path: Path) -> Any:
    try:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
    except OSError:
        raise
    except Exception as error:  # nbformat raises JSON, validation and version errors
        reason = " ".join(str(error).split()[:25]) or type(error).__name__
        raise ClassroomError(
            f"cannot read notebook {str(path)!r} ({reason}); open and save it in Jupyter to "
            "repair it"
        ) from None
    return notebook


def write_notebook(nbformat: Any, notebook: Any, path: Path) -> None:
    """Write through a temporary file renamed into place: a failure leaves no half file.

    Also used by ``notebooks/run_all.py`` to store re-executed lessons.
    """
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            nbformat.write(notebook, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def make_student_copies(
    source_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], overwrite: bool = False
) -> list[StudentCopy]:
    """Write a student copy of every notebook in ``source_dir`` into ``out_dir``.

    Outputs and execution counts are cleared; cells tagged ``solution`` keep their place with a
    placeholder as their source. Every notebook is read and checked before the first copy is
    written, and the teacher's notebooks are never changed.

    Args:
        source_dir: The folder of the teacher's notebooks (``*.ipynb``, not searched below), or
            one notebook.
        out_dir: Where the copies go, under the same file names; created if missing. It may not
            be the source folder.
        overwrite: Replace copies that already exist in ``out_dir``.

    Returns:
        One :class:`StudentCopy` per notebook, in file-name order.

    Raises:
        ClassroomError: The source is missing or holds no notebook, a notebook cannot be read,
            ``out_dir`` is the source folder or a file, or a copy exists and ``overwrite`` is
            false.
    """
    nbformat = _nbformat()
    source = Path(source_dir)
    out = Path(out_dir)
    notebooks = _notebooks_in(source)
    _check_out_dir(out, notebooks, overwrite)
    students = []
    for path in notebooks:
        students.append((path, *student_notebook(_read(nbformat, path))))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, student, emptied in students:
        target = out / path.name
        write_notebook(nbformat, student, target)
        written.append(StudentCopy(source=path, path=target, solutions=emptied))
    return written


@click.command("classroom")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for the student copies (created if missing); not the source folder.",
)
@click.option("--overwrite", is_flag=True, help="Replace student copies that already exist.")
def classroom(source: Path, out_dir: Path, overwrite: bool) -> None:
    """Write student copies of the notebooks in SOURCE (a folder or one .ipynb).

    Outputs are cleared and cells tagged `solution` are emptied; SOURCE is only read.
    Example: camkit classroom notebooks/ --out student/
    """
    try:
        copies = make_student_copies(source, out_dir, overwrite=overwrite)
    except ClassroomError as error:
        click.echo(f"error: {error}", err=True)
        raise click.exceptions.Exit(2) from None
    except OSError as error:
        where = f" {str(error.filename)!r}" if error.filename is not None else ""
        reason = error.strerror or str(error) or type(error).__name__
        click.echo(
            f"error: cannot access{where} ({reason}); check the path and its permissions", err=True
        )
        raise click.exceptions.Exit(2) from None
    for copy in copies:
        plural = "" if copy.solutions == 1 else "s"
        click.echo(f"{copy.path}  ({copy.solutions} solution cell{plural} emptied)")
    click.echo(f"{len(copies)} student notebook{'' if len(copies) == 1 else 's'} in {out_dir}")
