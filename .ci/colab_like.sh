#!/usr/bin/env bash
# A Colab-like run of the lessons: Python 3.13 and ipywidgets 7.7.1 (what Colab ships), camkit
# installed from a wheel (not the checkout), and the notebooks copied alone into an empty folder,
# so nothing but the installed package can supply a picture or a module. Each lesson runs top to
# bottom in a fresh kernel; only cells tagged raises-exception may raise.
# Usage: bash .ci/colab_like.sh   (from the repository root; needs a python3.13 on PATH or pyenv)
set -euo pipefail
cd "$(dirname "$0")/.."
# pyenv's shim answers `command -v` even where 3.13 is not selected: try each candidate.
python313=""
for candidate in "$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3.13 python3.13; do
    if "$candidate" -c "import sys; assert sys.version_info[:2] == (3, 13)" 2>/dev/null; then
        python313=$candidate
        break
    fi
done
if [ -z "$python313" ]; then
    echo "colab-like run skipped: no Python 3.13 on this machine"
    exit 0
fi
work=${TMPDIR:-/tmp}/camkit-colab-like
rm -rf "$work" && mkdir -p "$work/wheel" "$work/lessons"
"$python313" -m venv "$work/venv"
pip="$work/venv/bin/python -m pip --disable-pip-version-check -q"
$pip wheel --no-deps -w "$work/wheel" . >/dev/null
# torch is whatever this machine's pip allows (Colab brings its own); ipywidgets as Colab has it.
$pip install "torch>=2.1" "torchvision>=0.16" "$work"/wheel/camkit-*.whl "ipywidgets==7.7.1" \
    "nbclient>=0.8" "ipykernel>=6" "nbformat>=5.7" "scipy>=1.11" 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
cp notebooks/[0-9][0-9]_*.ipynb "$work/lessons/"
cd "$work/lessons"
"$work/venv/bin/python" - <<'PY'
import sys, time
from pathlib import Path

import ipywidgets
import nbclient
import nbformat
import torch

print(f"Python {sys.version.split()[0]}, torch {torch.__version__}, ipywidgets {ipywidgets.__version__}")
assert sys.version_info[:2] == (3, 13) and ipywidgets.__version__ == "7.7.1"
failed = []
for path in sorted(Path.cwd().glob("*.ipynb")):
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    try:
        nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
        print(f"passed {path.name} in {time.perf_counter() - start:.0f} s")
    except nbclient.exceptions.CellExecutionError as error:
        failed.append(path.name)
        print(f"FAILED {path.name}: {str(error).strip().splitlines()[-1]}")
print(f"colab-like: {len(failed)} failed of {len(list(Path.cwd().glob('*.ipynb')))} lessons")
sys.exit(1 if failed else 0)
PY
