"""notebooks/run_all.py: one clean run in this environment, from notebooks/, failures left alone."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]


def _run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "notebooks" / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _notebook(path: Path, sources: list[str]) -> Path:
    v4 = nbformat.v4
    cells = [v4.new_markdown_cell("# A lesson")]
    for number, source in enumerate(sources):
        # Stale state from an earlier, out-of-order run: counts, outputs, timestamps.
        cells.append(
            v4.new_code_cell(
                source,
                execution_count=40 - number,
                outputs=[v4.new_output("stream", name="stdout", text="stale\n")],
                metadata={"execution": {"iopub.status.idle": "2020-01-01T00:00:00Z"}},
            )
        )
    nbformat.write(v4.new_notebook(cells=cells), path)
    return path


def test_run_all_reexecutes_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_all = _run_all()
    good = _notebook(
        tmp_path / "01_good.ipynb",
        [
            "import os, sys\nprint(os.getcwd())\nprint(sys.executable)",
            "",
            "6 * 7",
            "raise ValueError('taught on purpose')",
        ],
    )
    # The teaching error is allowed only where the cell says so.
    notebook = nbformat.read(good, as_version=4)
    notebook.cells[4].metadata["tags"] = ["raises-exception"]
    nbformat.write(notebook, good)
    bad = _notebook(tmp_path / "02_bad.ipynb", ["x = 1", "1 / 0", "print('never')"])
    bad_before = bad.read_bytes()

    status = run_all.main([str(good), str(bad)])

    report = capsys.readouterr().out
    assert status == 1
    assert "02_bad.ipynb ... FAILED, left unchanged: ZeroDivisionError" in report
    assert "failed: 02_bad.ipynb" in report
    assert bad.read_bytes() == bad_before
    code = [cell for cell in nbformat.read(good, as_version=4).cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == [1, None, 2, 3]
    assert code[0].outputs[0].text.splitlines() == [str(ROOT / "notebooks"), sys.executable]
    assert code[2].outputs[0].data["text/plain"] == "42"
    assert code[3].outputs[0].ename == "ValueError"
    assert all("execution" not in cell.metadata for cell in code)
    assert all("stale" not in str(cell.outputs) for cell in code)
    assert "01_good.ipynb ..." in report and " s " in report
