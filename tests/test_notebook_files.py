"""Working in the repository leaves it clean: the stored lessons are what JupyterLab would save.

JupyterLab saves a notebook through nbformat (JSON with one-space indents, sorted keys, a final
newline, cell ids). A stored lesson written the same way is not rewritten when a learner opens it
and saves without changes. The one field a save can still change is
``metadata.language_info.version``: JupyterLab copies it from the running kernel, so a kernel of
another Python version rewrites that line (nothing else).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_stored_lesson_is_what_jupyterlab_saves(path: Path) -> None:
    stored = path.read_text(encoding="utf-8")
    notebook = nbformat.reads(stored, as_version=nbformat.NO_CONVERT)
    assert (notebook.nbformat, notebook.nbformat_minor) == (4, 5), "cell ids need nbformat 4.5"
    assert all("id" in cell for cell in notebook.cells), "every cell needs its id"
    saved = nbformat.writes(notebook)
    if not saved.endswith("\n"):
        saved += "\n"  # nbformat.write adds the final newline, as a JupyterLab save does
    assert saved == stored, (
        f"{path.name} is not stored as JupyterLab saves it: run `python notebooks/run_all.py "
        f"notebooks/{path.name}` (it writes through nbformat)"
    )
    assert notebook.metadata.kernelspec == {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }


def test_checkpoints_and_student_copies_are_ignored() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in (
        "notebooks/.ipynb_checkpoints/00_tutorial-checkpoint.ipynb",
        ".ipynb_checkpoints/x.ipynb",
        "student/00_tutorial.ipynb",
    ):
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert result.returncode == 0, f"{path} is not ignored by .gitignore"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_a_jupyter_server_save_without_changes_keeps_the_bytes(path: Path, tmp_path: Path) -> None:
    """Open and save through Jupyter's own contents manager, as JupyterLab's save does."""
    manager_module = pytest.importorskip("jupyter_server.services.contents.filemanager")
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    manager = manager_module.FileContentsManager(root_dir=str(tmp_path))
    model = manager.get(path.name, content=True, type="notebook")
    manager.save({"type": "notebook", "format": "json", "content": model["content"]}, path.name)
    assert copy.read_bytes() == path.read_bytes(), f"a save rewrites {path.name}"
