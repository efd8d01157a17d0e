"""Re-execute the lessons in place, top to bottom, so their stored outputs come from one clean run.

Usage (from the repository root)::

    python notebooks/run_all.py                      # every notebooks/NN_*.ipynb
    python notebooks/run_all.py notebooks/02_*.ipynb # some of them

Each notebook runs in a fresh kernel of this Python environment with notebooks/ as its working
directory (as nbval runs them), its execution counts start at 1, cell timestamps are not
stored, and its solution cells are stored hidden (camkit.classroom.hide_solutions). A notebook
whose run fails is left as it was; the others are still run, and the script exits with status 1
after naming the failures. Cells tagged ``raises-exception`` may raise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from ipykernel.kernelspec import RESOURCES, get_kernel_dict
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from traitlets import default

from camkit.classroom import hide_solutions, write_notebook

HERE = Path(__file__).resolve().parent
#: The size test (tests/test_notebooks.py) allows up to this many bytes per lesson.
MAX_BYTES = 1_500_000


class _CurrentEnvironmentSpecs(KernelSpecManager):
    """Every kernel name means ipykernel in this Python, whatever kernels are installed."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())


class _CurrentEnvironmentKernel(AsyncKernelManager):
    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        return _CurrentEnvironmentSpecs(data_dir=self.data_dir)


def execute(path: Path, timeout: int) -> float:
    """Run one notebook top to bottom in a fresh kernel and store its outputs; return seconds."""
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata.pop("widgets", None)  # an earlier run's widget state (not stored below)
    for cell in notebook.cells:  # nothing of an earlier run survives (nbclient skips empty cells)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        kernel_manager_class=_CurrentEnvironmentKernel,
        resources={"metadata": {"path": str(HERE)}},
        record_timing=False,
        store_widget_state=False,  # widget views keep their text fallback; state can hold images
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    hide_solutions(notebook)  # solution cells collapsed until a learner opens them
    nbformat.validate(notebook)
    write_notebook(nbformat, notebook, path)
    return seconds


def _failure(error: Exception) -> str:
    if isinstance(error, CellExecutionError):
        return f"{error.ename}: {' '.join(str(error.evalue).split())[:200]}"
    return " ".join(f"{type(error).__name__}: {error}".split())[:200]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "notebooks",
        nargs="*",
        type=Path,
        help="notebooks to run (default: every notebooks/NN_*.ipynb)",
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        print(f"error: no notebooks NN_*.ipynb in {HERE}; pass the notebooks to run")
        return 2
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        print(f"error: {missing[0]!r} not found; pass existing .ipynb files")
        return 2
    failures = []
    total = 0.0
    for path in paths:
        print(f"{path.name} ...", end=" ", flush=True)
        try:
            seconds = execute(path, args.timeout)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
            failures.append(path.name)
            print(f"FAILED, left unchanged: {_failure(error)}", flush=True)
            continue
        total += seconds
        size = path.stat().st_size
        warning = (
            f"  (over {MAX_BYTES:,} bytes: lower the figures' dpi)" if size > MAX_BYTES else ""
        )
        print(f"{seconds:6.1f} s  {size / 1000:7.0f} kB{warning}", flush=True)
    print(f"total {total:.1f} s for {len(paths) - len(failures)} notebook(s)")
    if failures:
        print(f"failed: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
