"""Lessons for a class: solutions hidden until a learner asks, and student copies without them.

A teacher keeps one set of notebooks, with the answers in cells tagged ``solution``, and
generates what the students get from it, so the two never drift apart (fastbook keeps clean copies
of its chapters the same way)::

    camkit classroom notebooks/ --out student/

**Hidden solutions in the teacher's notebooks.** :func:`hide_solutions` (run by
``notebooks/run_all.py`` on every lesson it stores) marks each solution cell so that a learner who
opens the lesson sees that an answer is there but not the answer itself, in as many frontends as
the format allows:

- a code cell gets ``metadata.jupyter.source_hidden`` (JupyterLab and Notebook 7 draw its input
  collapsed, a thin bar with "..."; a click on it shows the code) and its outputs are collapsed
  too (``collapsed``, read by JupyterLab 4 and the classic Notebook, and
  ``jupyter.outputs_hidden``, nbformat's newer name), since an output can show the answer; Colab's
  ``cellView: "form"`` with a first line :data:`SOLUTION_TITLE` (Colab shows the title and a
  "Show code" link), and the tag ``hide-input`` (Jupyter Book and MyST draw a "show" toggle);
- a markdown cell is wrapped in a ``<details>`` block, collapsed in JupyterLab, Colab, GitHub and
  nbconvert's HTML alike.

GitHub's notebook view and nbconvert's HTML read no cell metadata: there a solution code cell
shows, under its ``#@title`` line that says it is a solution (``jupyter nbconvert --to html
--TagRemovePreprocessor.remove_input_tags solution`` leaves the code out). The student copies are
the version to read where nothing can be hidden.

**Student copies.** In each copy every code cell loses its outputs and execution count, and every
cell tagged ``solution`` keeps its place with the answer taken out: a code cell keeps the names it
assigns, each set to ``...`` (``my_alpha = ...  # your answer``), so the check cell below it runs
and its checker says "Not answered yet" with a hint instead of raising ``NameError``; a markdown
cell becomes :data:`MARKDOWN_PLACEHOLDER`. The hiding marks are removed there (the learner writes
in that cell). The teacher's notebooks are only read, and each copy gets its original's file
permissions.

``nbformat`` (installed with Jupyter) is imported when a copy is made, so the rest of the
``camkit`` command works without it.
"""

from __future__ import annotations

import ast
import copy
import os
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from camkit._errors import InputError

__all__ = [
    "ANSWER_COMMENT",
    "CODE_PLACEHOLDER",
    "HIDE_INPUT_TAG",
    "MARKDOWN_PLACEHOLDER",
    "SOLUTION_SUMMARY",
    "SOLUTION_TAG",
    "SOLUTION_TITLE",
    "ClassroomError",
    "StudentCopy",
    "bound_names",
    "classroom",
    "hidden_solution_problems",
    "hide_solutions",
    "hide_solutions_in",
    "make_student_copies",
    "student_answer",
    "student_notebook",
]

#: Cells with this tag hold an answer: hidden in the lessons, taken out of student copies.
SOLUTION_TAG = "solution"
#: What a code cell tagged ``solution`` holds in a student copy when it assigns no name.
CODE_PLACEHOLDER = "# Your answer here"
#: What follows each ``name = ...`` of a student copy's solution cell.
ANSWER_COMMENT = "# your answer"
#: What a markdown cell tagged ``solution`` holds in a student copy.
MARKDOWN_PLACEHOLDER = "*Your answer here*"
#: First line of a hidden solution code cell: Colab shows it as the form's title; GitHub and an
#: expanded cell show it above the answer.
SOLUTION_TITLE = "#@title Solution: try the exercise first (hidden; click to show)"
#: The summary line of the ``<details>`` block around a markdown solution.
SOLUTION_SUMMARY = "<summary>Answer (click to show)</summary>"
#: Jupyter Book's and MyST's tag for an input drawn behind a "show" toggle.
HIDE_INPUT_TAG = "hide-input"
#: Cell metadata that records a run (timestamps), dropped with the outputs.
_RUN_METADATA = ("execution", "collapsed", "scrolled")
_DETAILS_OPEN = "<details>"
_DETAILS_CLOSE = "</details>"


class ClassroomError(InputError):
    """A student copy cannot be made; the message names the fix."""


@dataclass(frozen=True)
class StudentCopy:
    """One student notebook written by :func:`make_student_copies`.

    Attributes:
        source: The teacher's notebook it was made from.
        path: The student copy.
        solutions: How many cells tagged ``solution`` had their answer taken out.
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


def _is_title(line: str) -> bool:
    """Whether a line is a Colab form title (``#@title ...`` or ``# @title ...``)."""
    return line.lstrip().replace(" ", "").startswith("#@title")


def _wrapped(source: str) -> bool:
    text = source.strip()
    return text.startswith(_DETAILS_OPEN) and text.endswith(_DETAILS_CLOSE)


# --------------------------------------------------------------------------------------------
# Hidden solutions in the teacher's notebooks
# --------------------------------------------------------------------------------------------


def hide_solutions(notebook: Any) -> int:
    """Mark every cell tagged ``solution`` as hidden, in place; return how many changed.

    Code cells: ``#@title`` first line (:data:`SOLUTION_TITLE`, unless one is there), Colab's
    ``cellView: "form"``, ``jupyter.source_hidden`` and ``outputs_hidden``, ``collapsed``, tag
    ``hide-input``.
    Markdown cells: wrapped in ``<details>`` with :data:`SOLUTION_SUMMARY`. Applying it twice
    changes nothing the second time. The cells still run as before: the title is a comment.

    Args:
        notebook: An ``nbformat`` notebook node (version 4), changed in place.

    Returns:
        The number of solution cells that were not fully hidden before.
    """
    changed = 0
    for cell in notebook.cells:
        if SOLUTION_TAG not in _tags(cell) or not hidden_solution_problems(cell):
            continue
        changed += 1
        if cell.cell_type == "markdown":
            cell.source = (
                f"{_DETAILS_OPEN}{SOLUTION_SUMMARY}\n\n{cell.source.strip()}\n\n{_DETAILS_CLOSE}"
            )
            continue
        if cell.cell_type != "code":
            continue
        lines = cell.source.splitlines()
        if not lines or not _is_title(lines[0]):
            cell.source = f"{SOLUTION_TITLE}\n{cell.source}"
        cell.metadata["cellView"] = "form"
        cell.metadata["collapsed"] = True
        jupyter = dict(cell.metadata.get("jupyter", {}))
        jupyter.update(source_hidden=True, outputs_hidden=True)
        cell.metadata["jupyter"] = jupyter
        tags = _tags(cell)
        if HIDE_INPUT_TAG not in tags:
            cell.metadata["tags"] = [*tags, HIDE_INPUT_TAG]
    return changed


def hidden_solution_problems(cell: Any) -> list[str]:
    """What keeps one solution cell from being hidden; empty when it is hidden everywhere it can be.

    Args:
        cell: An ``nbformat`` cell (any cell; one without the ``solution`` tag has no problem).

    Returns:
        One short sentence per missing mark.
    """
    if SOLUTION_TAG not in _tags(cell):
        return []
    if cell.cell_type == "markdown":
        return [] if _wrapped(cell.source) else ["not wrapped in <details> ... </details>"]
    if cell.cell_type != "code":
        return []
    problems = []
    lines = cell.source.splitlines()
    if not lines or not _is_title(lines[0]):
        problems.append("first line is not a '#@title' line (Colab's form title)")
    if cell.metadata.get("cellView") != "form":
        problems.append("no cellView 'form' in its metadata (Colab)")
    jupyter = cell.metadata.get("jupyter", {})
    if jupyter.get("source_hidden") is not True:
        problems.append("no jupyter.source_hidden (JupyterLab, Notebook 7)")
    if jupyter.get("outputs_hidden") is not True or cell.metadata.get("collapsed") is not True:
        problems.append("outputs not collapsed (jupyter.outputs_hidden and collapsed)")
    if HIDE_INPUT_TAG not in _tags(cell):
        problems.append(f"no {HIDE_INPUT_TAG!r} tag (Jupyter Book, MyST)")
    return problems


# --------------------------------------------------------------------------------------------
# Student copies
# --------------------------------------------------------------------------------------------


class _Bindings(ast.NodeVisitor):
    """The targets a cell assigns at its top level (not inside functions), in order."""

    def __init__(self) -> None:
        self.targets: list[ast.expr] = []
        self.functions: list[str] = []
        self.imports: list[ast.Import | ast.ImportFrom] = []
        self.loops: list[ast.expr] = []  # for and with targets: bound, but not answers

    def visit_For(self, node: ast.For) -> None:
        self.loops.append(node.target)
        self.generic_visit(node)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self.loops.append(node.target)
        self.generic_visit(node)

    def visit_With(self, node: ast.With) -> None:
        self.loops.extend(item.optional_vars for item in node.items if item.optional_vars)
        self.generic_visit(node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> None:
        self.loops.extend(item.optional_vars for item in node.items if item.optional_vars)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.targets.extend(node.targets)
        self.visit(node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.targets.append(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.targets.append(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.targets.append(node.target)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.functions.append(node.name)  # its body is the answer; its name stays

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.functions.append(node.name)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.functions.append(node.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        return None  # names inside belong to the lambda

    def visit_ListComp(self, node: ast.ListComp) -> None:
        return None  # comprehension variables are local to it

    def visit_SetComp(self, node: ast.SetComp) -> None:
        return None

    def visit_DictComp(self, node: ast.DictComp) -> None:
        return None

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        return None

    def visit_Import(self, node: ast.Import) -> None:
        self.imports.append(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.imports.append(node)


def _bindings(source: str) -> _Bindings | None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    bindings = _Bindings()
    for statement in tree.body:
        bindings.visit(statement)
    return bindings


def _names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _names(element)]
    if isinstance(target, ast.Starred):
        return _names(target.value)
    return []  # d["x"] = 1 binds no new name


def bound_names(source: str) -> set[str]:
    """The names a cell binds at its top level: assignments, loops, ``with``, defs, imports."""
    bindings = _bindings(source)
    if bindings is None:
        return set()
    names = {name for target in [*bindings.targets, *bindings.loops] for name in _names(target)}
    for node in bindings.imports:
        names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names | set(bindings.functions)


def _root(target: ast.expr) -> str | None:
    while isinstance(target, (ast.Attribute, ast.Subscript, ast.Starred)):
        target = target.value
    return target.id if isinstance(target, ast.Name) else None


def _unanswered_line(target: ast.expr, bound: set[str], known: set[str]) -> str | None:
    """``target = ...  # your answer`` keeping the target's shape, or None when nothing new.

    ``bound``: names this cell's answer already lists (it grows); ``known``: names that earlier
    cells bind, whose values the rest of the lesson may need, so they are not overwritten.
    """
    if isinstance(target, ast.Name):
        if target.id in bound or target.id in known:
            return None
        bound.add(target.id)
        return f"{target.id} = ...  {ANSWER_COMMENT}"
    if isinstance(target, (ast.Tuple, ast.List)):
        names = [element for element in target.elts if isinstance(element, ast.Name)]
        if len(names) == len(target.elts) and not any(n.id in bound | known for n in names):
            bound.update(n.id for n in names)
            values = ", ".join("..." for _ in names)
            return f"{', '.join(n.id for n in names)} = {values}  {ANSWER_COMMENT}"
        lines = [_unanswered_line(element, bound, known) for element in target.elts]
        kept = [line for line in lines if line]
        return "\n".join(kept) if kept else None
    if isinstance(target, ast.Starred):
        return _unanswered_line(target.value, bound, known)
    root = _root(target)  # answers["x"] = 1, settings.alpha = 2: an object made elsewhere
    if root is None or root in bound:
        return None
    return f"{ast.unparse(target)} = ...  {ANSWER_COMMENT}"


def student_answer(source: str, known: Iterable[str] = ()) -> str:
    """A solution cell's code with its answer taken out: each assigned name set to ``...``.

    Imports stay; every name the cell assigns (``x = ``, ``a, b = ``, ``x += ``, ``def f``) is
    kept once, in order, as ``name = ...  # your answer``; all other statements go. Names in
    ``known`` (bound by earlier cells, such as a lesson's ``logits``) are left alone, so the rest
    of the lesson keeps them, unless the cell assigns nothing else. A cell that assigns nothing,
    or is not plain Python, becomes :data:`CODE_PLACEHOLDER`.

    Args:
        source: The code of a cell tagged ``solution``.
        known: Names that the cells above it bind.

    Returns:
        The code of the same cell in a student copy.
    """
    bindings = _bindings(source)
    if bindings is None:
        return CODE_PLACEHOLDER
    lines = [ast.get_source_segment(source, node) or ast.unparse(node) for node in bindings.imports]
    for skip in (set(known), set()):  # keep the names above, unless nothing else is left
        bound: set[str] = set()
        answers = [
            line for target in bindings.targets if (line := _unanswered_line(target, bound, skip))
        ]
        for name in bindings.functions:
            if name not in bound and name not in skip:
                bound.add(name)
                answers.append(f"{name} = ...  {ANSWER_COMMENT}: a function")
        if answers:
            return "\n".join([*lines, *answers])
    return CODE_PLACEHOLDER


def _unhide(cell: Any) -> None:
    """Drop the hiding marks: in a student copy the learner writes in this cell."""
    cell.metadata.pop("cellView", None)
    cell.metadata.pop("collapsed", None)
    jupyter = {
        key: value
        for key, value in cell.metadata.get("jupyter", {}).items()
        if key not in ("source_hidden", "outputs_hidden")
    }
    if jupyter:
        cell.metadata["jupyter"] = jupyter
    else:
        cell.metadata.pop("jupyter", None)
    if HIDE_INPUT_TAG in _tags(cell):
        cell.metadata["tags"] = [tag for tag in _tags(cell) if tag != HIDE_INPUT_TAG]


def student_notebook(notebook: Any) -> tuple[Any, int]:
    """A student copy of one notebook, and how many solution cells had their answer taken out.

    Args:
        notebook: An ``nbformat`` notebook node (version 4); it is not changed.

    Returns:
        The new notebook node and the number of cells tagged ``solution``.
    """
    student = copy.deepcopy(notebook)
    emptied = 0
    known: set[str] = set()  # names bound by the code cells above
    for cell in student.cells:
        source = cell.source
        for key in _RUN_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if SOLUTION_TAG in _tags(cell):
            emptied += 1
            if cell.cell_type == "code":
                cell.source = student_answer(cell.source, known)
            else:
                cell.source = MARKDOWN_PLACEHOLDER if cell.cell_type == "markdown" else ""
            _unhide(cell)
            cell.pop("attachments", None)  # pictures pasted into an answer are part of it
        if cell.cell_type == "code":
            known |= bound_names(source)
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


def _default_mode() -> int:
    """The permissions a new file gets here: 0o666 less the process's umask."""
    umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def write_notebook(nbformat: Any, notebook: Any, path: Path, mode: int | None = None) -> None:
    """Write through a temporary file renamed into place: a failure leaves no half file.

    The temporary file is created private (0600); before it takes ``path``'s place it gets
    ``mode``, or else the permissions of the file it replaces, or else those of any new file here
    (0666 less the umask), so a rewrite never makes a shared lesson unreadable to others. Also
    used by ``notebooks/run_all.py`` to store re-executed lessons.

    Args:
        nbformat: The ``nbformat`` module.
        notebook: The notebook node to write.
        path: Where it goes.
        mode: Permission bits for the file (e.g. ``0o644``); None keeps those described above.
    """
    if mode is None:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = _default_mode()
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            nbformat.write(notebook, file)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def make_student_copies(
    source_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], overwrite: bool = False
) -> list[StudentCopy]:
    """Write a student copy of every notebook in ``source_dir`` into ``out_dir``.

    Outputs and execution counts are cleared; cells tagged ``solution`` keep their place with the
    answer taken out (:func:`student_answer`; markdown: :data:`MARKDOWN_PLACEHOLDER`) and the
    hiding marks removed. Each copy gets its original's permission bits. Every notebook is read
    and checked before the first copy is written, and the teacher's notebooks are never changed.

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
        write_notebook(nbformat, student, target, mode=stat.S_IMODE(path.stat().st_mode))
        written.append(StudentCopy(source=path, path=target, solutions=emptied))
    return written


def hide_solutions_in(source: str | os.PathLike[str]) -> dict[Path, int]:
    """Hide the solution cells of stored notebooks in place, without running them.

    ``notebooks/run_all.py`` does this on every run; this is for a lesson edited by hand. A
    notebook whose solutions are already hidden is not rewritten.

    Args:
        source: A folder of notebooks (``*.ipynb``, not searched below) or one notebook.

    Returns:
        For each notebook, how many solution cells were changed (0: left as it was).

    Raises:
        ClassroomError: The source is missing, holds no notebook, or one cannot be read.
    """
    nbformat = _nbformat()
    changed = {}
    for path in _notebooks_in(Path(source)):
        notebook = _read(nbformat, path)
        changed[path] = hide_solutions(notebook)
        if changed[path]:
            write_notebook(nbformat, notebook, path)
    return changed


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

    Outputs are cleared and the answers in cells tagged `solution` are replaced by `...`;
    SOURCE is only read.
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
    for written in copies:
        plural = "" if written.solutions == 1 else "s"
        click.echo(f"{written.path}  ({written.solutions} solution cell{plural} emptied)")
    click.echo(f"{len(copies)} student notebook{'' if len(copies) == 1 else 's'} in {out_dir}")
