"""environment.yml names every runtime dependency of pyproject.toml (conda-forge only)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

#: PyPI name -> its conda-forge package name, where the two differ.
CONDA_NAMES = {"torch": "pytorch-cpu"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))


def test_conda_forge_only() -> None:
    channels = _environment()["channels"]
    assert "conda-forge" in channels
    assert not {"pytorch", "defaults"} & set(channels), f"channels: {channels}"


def test_every_runtime_dependency_is_in_environment_yml() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    conda: set[str] = set()
    pip: set[str] = set()
    for entry in _environment()["dependencies"]:
        if isinstance(entry, dict):
            pip.update(_name(item) for item in entry["pip"] if not item.startswith("-e"))
        else:
            conda.add(_name(entry))
    missing = [
        requirement
        for requirement in project["dependencies"]
        if CONDA_NAMES.get(_name(requirement), _name(requirement)) not in conda | pip
    ]
    assert not missing, f"environment.yml lacks {missing}; add them (conda-forge, or under pip:)"
    assert {"jupyterlab", "nbval", "pytest"} <= conda, "the notebooks and tests need these"


def test_environment_installs_the_checkout() -> None:
    pip = next(e["pip"] for e in _environment()["dependencies"] if isinstance(e, dict))
    assert "-e ." in pip
