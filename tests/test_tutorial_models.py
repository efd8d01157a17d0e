"""The tutorial's five torchvision models, on the path that downloads their weights (as in Colab).

Their weights cannot be downloaded here, so each test writes stand-ins: random weights (the
architecture's own initialisation, saved in float16 to halve the disk) under the genuine cache
file names, in a temporary TORCH_HOME. torch.hub then finds the files and neither downloads nor
checks a hash, so lesson 00 and the explorer run exactly the code they run online. Only what the
weights decide (which class wins, where the map is hot) can differ: lesson 00 marks each such
assertion as a content claim, and these tests accept a failure of those and of nothing else.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision

from camkit.models import TUTORIAL_MODELS

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def cache_file_name(name: str) -> str:
    """The file torch.hub saves the DEFAULT weights of torchvision model `name` under."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    return Path(weights.url).name


@pytest.fixture(scope="module")
def stand_in_torch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A TORCH_HOME whose hub cache holds random stand-in weights for the five models."""
    home = tmp_path_factory.mktemp("torch_home")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    for name in TUTORIAL_MODELS:
        model = torchvision.models.get_model(name, weights=None)
        state = {
            key: value.half() if value.is_floating_point() else value
            for key, value in model.state_dict().items()
        }
        torch.save(state, checkpoints / cache_file_name(name))
        del model, state
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    try:
        yield home
    finally:
        if previous is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = previous


def test_cache_names_are_the_genuine_ones() -> None:
    names = {name: cache_file_name(name) for name in TUTORIAL_MODELS}
    assert names["alexnet"].startswith("alexnet-") and names["vgg16"].startswith("vgg16-")
    assert all(file.endswith(".pth") for file in names.values())
    assert len(set(names.values())) == 5


def test_explorer_offers_and_switches_to_each_tutorial_model(stand_in_torch_home: Path) -> None:
    pytest.importorskip("ipywidgets")
    from camkit._explorer import MODEL_TITLES
    from camkit.widgets import Explorer

    explorer = Explorer()
    titles = [MODEL_TITLES[name] for name in TUTORIAL_MODELS]
    options = list(explorer.model_picker.options)
    assert all(title in options for title in titles), options
    seconds = {}
    for title in titles:
        start = time.perf_counter()
        explorer.model_picker.value = title
        seconds[title] = time.perf_counter() - start
        assert explorer.message == "", (title, explorer.message)
        assert explorer.loaded.name in TUTORIAL_MODELS
        assert not explorer.loaded.model.training
        shown = explorer.current_map
        assert torch.isfinite(shown).all() and float(shown.max()) > float(shown.min()), title
        assert explorer.png[:8] == b"\x89PNG\r\n\x1a\n"
        # The caption says the layer shown; the slider runs from the stem to the head.
        assert len(explorer.layers) >= 5 and explorer.layer in {
            info.name for info in explorer.layers
        }
    print(
        "explorer switch seconds (random stand-in weights):",
        {title: round(value, 2) for title, value in seconds.items()},
    )


def test_lesson_00_runs_through_the_five_models(stand_in_torch_home: Path) -> None:
    """Lesson 00 with the five models "downloaded": all cells run, only content claims fail."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOKS / "00_tutorial.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    start = time.perf_counter()
    client.execute()
    print(f"lesson 00 with the five stand-in models: {time.perf_counter() - start:.1f} s")
    text, errors = [], []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                errors.append((index, output["ename"], output["evalue"]))
            elif output.get("output_type") == "stream":
                text.append(output.get("text", ""))
            elif "text/plain" in output.get("data", {}):
                text.append(output["data"]["text/plain"])
    not_content = [
        error
        for error in errors
        if error[1] != "AssertionError" or "content claim" not in error[2].lower()
    ]
    assert not_content == [], not_content
    printed = "\n".join(text)
    # With the weights "downloaded", the lesson uses the five models, not the offline fallback.
    assert "cannot be downloaded" not in printed
    for name in ("AlexNet", "VGG-16", "ResNet-101", "DenseNet-161", "SqueezeNet 1.1"):
        assert name in printed, name
