"""Every install line a reader can copy works as written, and nothing caps PyTorch.

camkit is not on PyPI: a line that installs it names the checkout (`pip install -e ".[extra]"`,
in a clone) or the repository (`"camkit[extra] @ git+URL"`, in Colab), and every extra it names
exists. No file puts an upper bound on torch or torchvision: an upper pin makes Colab or a user's
environment downgrade PyTorch.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
REPOSITORY = PROJECT["urls"]["Repository"]
EXTRAS = set(PROJECT["optional-dependencies"])


def _texts() -> list[tuple[str, str]]:
    """(where, text) for the README files and every notebook cell."""
    texts = [
        (str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
        for path in [ROOT / "README.md", *sorted(ROOT.glob("*/*.md"))]
    ]
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for index, cell in enumerate(cells):
            source = cell["source"]
            texts.append((f"{path.name} cell {index}", "".join(source)))
    return texts


def install_commands() -> list[tuple[str, list[str]]]:
    """Each `pip install ...` in the texts, as (where, its arguments)."""
    commands = []
    for where, text in _texts():
        text = text.replace('\\"', '"')
        # The Colab cells: get_ipython().run_line_magic("pip", 'install ...')
        text = re.sub(r"""["']pip["'],\s*["']install""", "pip install", text)
        for match in re.finditer(r"pip install ([^`\n&|;)]*)", text):
            line = match.group(1).strip()
            for quote in "'\"":
                if line.count(quote) % 2:  # the end of the Python string around the command
                    line = line[: line.rindex(quote)] + line[line.rindex(quote) + 1 :]
            commands.append((where, shlex.split(line)))
    return commands


def _extras(requirement: str) -> set[str]:
    found = re.search(r"\[([^\]]*)\]", requirement)
    return {extra.strip() for extra in found.group(1).split(",")} if found else set()


def check_install_arguments(arguments: list[str]) -> list[str]:
    """The problems with one `pip install` line's arguments (empty when it works as written)."""
    problems = []
    for index, argument in enumerate(arguments):
        editable = index > 0 and arguments[index - 1] in ("-e", "--editable")
        if editable or argument.startswith((".[", "./")) or argument == ".":
            if not re.fullmatch(r"\.(\[[a-z0-9_,-]+\])?", argument):
                problems.append(f"{argument!r} is not the checkout ('.' or '.[extra]')")
            problems += [
                f"extra {e!r} is not in pyproject.toml" for e in _extras(argument) - EXTRAS
            ]
        elif re.match(r"camkit\b", argument):
            if f"@ git+{REPOSITORY}" not in argument:
                problems.append(
                    f"{argument!r}: camkit is not on PyPI; install the clone with "
                    f"`pip install -e .` or `camkit @ git+{REPOSITORY}`"
                )
            problems += [
                f"extra {e!r} is not in pyproject.toml" for e in _extras(argument) - EXTRAS
            ]
        elif re.match(r"(torch|torchvision)\s*<", argument):
            problems.append(f"{argument!r} caps PyTorch")
    return problems


def test_the_checker_catches_what_fails() -> None:
    assert check_install_arguments(["camkit[classroom]"])  # not on PyPI
    assert check_install_arguments(["-e", ".[nonexistent]"])
    assert check_install_arguments([f"camkit[nope] @ git+{REPOSITORY}"])
    assert check_install_arguments(["torch<2.15"])
    assert not check_install_arguments(["-e", ".[classroom]"])
    assert not check_install_arguments(["-q", f"camkit[classroom] @ git+{REPOSITORY}"])
    assert not check_install_arguments(
        ["torch==2.14.1", "torchvision==0.29.1", "-e", ".[notebooks]"]
    )


def test_there_are_install_lines_to_check() -> None:
    where = {place.split(" cell ")[0] for place, _ in install_commands()}
    assert "README.md" in where
    assert sum(place.endswith(".ipynb") for place in where) >= 9  # each lesson's Colab cell


@pytest.mark.parametrize("where, arguments", install_commands(), ids=lambda v: str(v)[:60])
def test_install_line_works_as_written(where: str, arguments: list[str]) -> None:
    assert not check_install_arguments(arguments), (where, arguments)


def _no_upper_bound(requirement: str) -> bool:
    name = re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()
    if name not in ("torch", "torchvision", "pytorch", "pytorch-cpu"):
        return True
    return "<" not in requirement and "==" not in requirement and "~=" not in requirement


def test_no_upper_bound_on_torch_in_the_project() -> None:
    requirements = list(PROJECT["dependencies"])
    for extra in PROJECT["optional-dependencies"].values():
        requirements += extra
    environment = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    for entry in environment["dependencies"]:
        requirements += entry["pip"] if isinstance(entry, dict) else [entry]
    capped = [r for r in requirements if not _no_upper_bound(r)]
    assert not capped, f"upper bounds on PyTorch: {capped}; state the lowest versions only"
    assert any(r.replace(" ", "").startswith("torch>=") for r in PROJECT["dependencies"])
