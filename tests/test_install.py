"""An installed camkit (a wheel, not the checkout) carries its sample pictures and runs its demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, installed (without dependencies) into a folder."""
    wheels = tmp_path_factory.mktemp("wheels")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {build.stderr.strip().splitlines()[-1:]}")
    site = tmp_path_factory.mktemp("site")
    wheel = next(wheels.glob("camkit-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), wheel],
        check=True,
        capture_output=True,
    )
    return site


def _run(site: Path, cwd: Path, code: str) -> subprocess.CompletedProcess[str]:
    # The installed copy comes first on the path; the checkout is nowhere on it.
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_sample_images_come_with_the_wheel(installed: Path, tmp_path: Path) -> None:
    done = _run(
        installed,
        tmp_path,
        "import camkit; print(camkit.__file__); "
        "print(camkit.sample_image('water-bird').size, camkit.sample_image('both').size); "
        "print(camkit.sample_image_path('chelsea')); "
        "print(camkit.sample_boxes('both')[0]['label'])",
    )
    assert done.returncode == 0, done.stderr
    module_file, sizes, chelsea, label = done.stdout.strip().splitlines()
    assert module_file.startswith(str(installed)), f"imported {module_file}, not the wheel"
    assert chelsea.startswith(str(installed)), chelsea
    assert sizes == "(500, 375) (224, 224)"
    assert label == "bull mastiff"


def test_demo_runs_twice_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from camkit.cli import main; sys.argv = ['camkit', 'demo']; "
        "main(standalone_mode=False)"
    )
    for _ in range(2):  # the demo replaces its own file, so the README's command can be re-run
        done = _run(installed, tmp_path, code)
        assert done.returncode == 0, done.stderr + done.stdout
    png = tmp_path / "camkit-demo.png"
    assert png.read_bytes().startswith(b"\x89PNG")
