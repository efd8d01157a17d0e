"""nbval's settings for the lessons: what the sanitize file forgives, and what still fails.

One small pytest run under nbval (one kernel) on two hand-made notebooks whose stored outputs
differ from what the cells print: by addresses, timings, long floats, a progress bar and stderr
(forgiven), and by a wrong number (a failure).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbval")

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ROOT / "notebooks" / "sanitize.cfg"
CONFTEST = ROOT / "notebooks" / "conftest.py"


def _patterns() -> list[tuple[str, str]]:
    return re.findall(r"^regex: (.*)$\n^replace: (.*)$", SANITIZE.read_text(), flags=re.MULTILINE)


def _sanitize(text: str) -> str:
    for regex, replace in _patterns():
        text = re.sub(regex, replace, text)
    return text


@pytest.mark.parametrize(
    ("stored", "fresh"),
    [
        ("<object object at 0x7f3a2c1b9e40>", "<object object at 0x7f0011223344>"),
        ("took 1.23 s", "took 0.98 s"),
        ("took 845 ms", "took 12.5 ms"),
        (
            "12.3 µs ± 1.1 µs per loop (7 runs, 100,000 loops each)",
            "9 µs ± 2 µs per loop (7 runs, 1 loop each)",
        ),
        ("mean 0.123456789", "mean 0.123458012"),
        ("tensor(2.71828182845)", "tensor(2.7182819)"),
        (
            " 50%|█████     | 5/10 [00:01<00:01,  4.56it/s]",
            " 50%|█████     | 5/10 [00:02<00:02,  2.01it/s]",
        ),
        ("run at 2026-11-30 09:44:54.922470", "run at 2027-01-02T10:00:00"),
    ],
)
def test_sanitize_forgives_what_changes_between_runs(stored: str, fresh: str) -> None:
    assert stored != fresh
    assert _sanitize(stored) == _sanitize(fresh)


@pytest.mark.parametrize(
    ("stored", "fresh"),
    [
        ("top-1: pelican (0.9123)", "top-1: water ouzel (0.9123)"),
        ("mean 0.1234", "mean 0.1244"),
        ("torch.Size([1, 1280, 7, 7])", "torch.Size([1, 1280, 14, 14])"),
        ("3 stages", "4 stages"),
        ("hooks left: 0", "hooks left: 2"),
        ("0xff", "0xfe"),
    ],
)
def test_sanitize_keeps_what_matters(stored: str, fresh: str) -> None:
    assert _sanitize(stored) != _sanitize(fresh)


def _notebook(path: Path, cells: list[tuple[str, list]]) -> None:
    v4 = nbformat.v4
    notebook = v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        }
    )
    for count, (source, outputs) in enumerate(cells, start=1):
        notebook.cells.append(
            v4.new_code_cell(
                source,
                execution_count=count,
                outputs=outputs,
                metadata={"tags": ["nbval-check-output"]},
            )
        )
    nbformat.write(notebook, path)


def _stdout(text: str) -> dict:
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def test_nbval_run_forgives_noise_and_catches_a_wrong_result(tmp_path: Path) -> None:
    # notebooks/conftest.py supplies notebooks/sanitize.cfg and leaves stderr out.
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    shutil.copy(SANITIZE, tmp_path / "sanitize.cfg")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    _notebook(
        tmp_path / "noise.ipynb",
        [
            ("print(object())", [_stdout("<object object at 0x7f3a2c1b9e40>\n")]),
            (
                "import time\nprint(f'took {time.perf_counter() % 1 + 1:.2f} s')",
                [_stdout("took 9.87 s\n")],
            ),
            ("print(1 / 3 + 1e-9)", [_stdout("0.333333334111\n")]),
            (
                "import random, sys\n"
                "print('warning', random.random(), file=sys.stderr)\n"
                "print('same')",
                [
                    nbformat.v4.new_output("stream", name="stderr", text="warning 0.5\n"),
                    _stdout("same\n"),
                ],
            ),
        ],
    )
    _notebook(
        tmp_path / "wrong.ipynb",
        [("print(2 + 2)", [_stdout("5\n")]), ("print('fine')", [_stdout("fine\n")])],
    )
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider",
            "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path),
            "--nbval-lax", "--nbval-current-env",
            "noise.ipynb", "wrong.ipynb",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    report = result.stdout + result.stderr
    outcomes = dict(
        (cell, outcome)
        for outcome, cell in re.findall(r"^(PASSED|FAILED) (\S+::Cell \d+)", report, re.MULTILINE)
    )
    assert outcomes == {
        "noise.ipynb::Cell 0": "PASSED",
        "noise.ipynb::Cell 1": "PASSED",
        "noise.ipynb::Cell 2": "PASSED",
        "noise.ipynb::Cell 3": "PASSED",
        "wrong.ipynb::Cell 0": "FAILED",
        "wrong.ipynb::Cell 1": "PASSED",
    }, report[-3000:]
    assert result.returncode == 1
