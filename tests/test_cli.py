"""Tests of the ``camkit`` command, through click's test runner."""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

import camkit
from camkit import cli

SAMPLE = camkit.sample_image_path("chelsea")
SHARED_IMAGES = Path(__file__).parents[1] / ".." / "shared" / "data" / "images"


_real_load_model = camkit.load_model


@functools.cache
def _cached_load_model(
    name: str = "efficientnet_lite0", weights: str | None = "DEFAULT", device: str | None = None
) -> camkit.LoadedModel:
    return _real_load_model(name, weights=weights, device=device)


@pytest.fixture(autouse=True)
def reuse_loaded_models(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Load each (model, weights) once for the whole file: the CLI is what is under test here."""
    monkeypatch.setattr(camkit, "load_model", _cached_load_model)
    yield


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str | Path) -> Result:
    return runner.invoke(cli.main, [str(arg) for arg in args])


def assert_drawn(path: Path) -> None:
    """The file is a PNG with real pictures on it, not a blank canvas."""
    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 20
    assert (pixels < 250).mean() > 0.5  # mostly pictures, little white background


def shared_image(name: str) -> Path:
    path = SHARED_IMAGES / name
    if not path.is_file():
        pytest.skip(f"shared test image {name} is absent")
    return path


# --------------------------------------------------------------------------------------------
# Success
# --------------------------------------------------------------------------------------------


def test_version(runner: CliRunner) -> None:
    result = run(runner, "--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"camkit {camkit.__version__}"


def test_help_lists_the_commands(runner: CliRunner) -> None:
    result = run(runner, "--help")
    assert result.exit_code == 0
    for command in ("explain", "layers", "demo"):
        assert command in result.output


def test_sample_image_ships_with_the_package() -> None:
    with Image.open(SAMPLE) as image:
        assert image.size == (451, 300)


def test_explain_writes_one_labelled_png_per_image(runner: CliRunner, tmp_path: Path) -> None:
    coffee = shared_image("coffee.png")
    result = run(runner, "explain", SAMPLE, coffee, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    for stem in ("chelsea", "coffee"):
        written = tmp_path / "out" / f"{stem}-camkit.png"
        assert_drawn(written)
        assert f"wrote {written}" in result.stdout
    assert result.stdout.count("top-5 predictions") == 2
    assert result.stdout.count("  5. ") == 2
    cat_block = result.stdout.split("coffee.png")[0]
    assert "cat" in cat_block and "%" in cat_block
    assert "espresso" in result.stdout


def test_explain_defaults_to_the_current_folder(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pictures").mkdir()
    (tmp_path / "work").mkdir()
    image = tmp_path / "pictures" / "cat.png"
    shutil.copy(SAMPLE, image)
    monkeypatch.chdir(tmp_path / "work")
    result = run(runner, "explain", image)
    assert result.exit_code == 0, result.output
    assert_drawn(tmp_path / "work" / "cat-camkit.png")
    assert not (tmp_path / "pictures" / "cat-camkit.png").exists()


def test_explain_several_methods_layers_and_classes(runner: CliRunner, tmp_path: Path) -> None:
    single = run(runner, "explain", SAMPLE, "--out", tmp_path / "one")
    result = run(
        runner,
        "explain",
        SAMPLE,
        "--method", "gradcam",
        "--method", "gradcam++",
        "--layer", "auto",
        "--layer", "_blocks.10",
        "--top-k", "2",
        "--colormap", "viridis",
        "--alpha", "0.3",
        "--out", tmp_path / "many",
    )  # fmt: skip
    assert single.exit_code == 0 and result.exit_code == 0, result.output
    with Image.open(tmp_path / "one" / "chelsea-camkit.png") as image:
        small = image.size
    with Image.open(tmp_path / "many" / "chelsea-camkit.png") as image:
        large = image.size
    assert large[0] == small[0]  # picture | heatmap | overlay, whatever the methods
    assert large[1] > small[1] * 5  # 2 layers x 2 classes x 2 methods = 8 rows instead of 1
    assert_drawn(tmp_path / "many" / "chelsea-camkit.png")
    explained = next(line for line in result.stdout.splitlines() if line.startswith("explained"))
    assert "gradcam, gradcam++" in explained and "_blocks.10" in explained
    assert explained.count("(") == 2  # two classes


@pytest.mark.parametrize("target", ["tiger_cat", "Tiger Cat", "282"])
def test_explain_target_by_name_or_index(runner: CliRunner, tmp_path: Path, target: str) -> None:
    result = run(runner, "explain", SAMPLE, "--target", target, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "explained tiger cat (282) with gradcam" in result.stdout


def test_explain_never_overwrites_an_input(runner: CliRunner, tmp_path: Path) -> None:
    first, second = tmp_path / "cat.png", tmp_path / "cat-camkit.png"
    shutil.copy(SAMPLE, first)
    shutil.copy(SAMPLE, second)
    before = second.read_bytes()
    result = run(runner, "explain", first, second, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert second.read_bytes() == before
    assert_drawn(tmp_path / "cat-camkit-2.png")
    assert_drawn(tmp_path / "cat-camkit-camkit.png")


def test_explain_torchvision_model_with_random_weights(runner: CliRunner, tmp_path: Path) -> None:
    result = run(
        runner, "explain", SAMPLE, "--model", "resnet18", "--weights", "none",
        "--layer", "layer3", "--out", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "at layer3" in result.stdout
    assert_drawn(tmp_path / "chelsea-camkit.png")


def test_layers_lists_the_model_in_execution_order(runner: CliRunner) -> None:
    result = run(runner, "layers")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "execution order" in lines[0]
    assert lines[1].split() == ["name", "type", "output", "shape"]
    names = [line[2:].split()[0] for line in lines[2:]]
    infos = camkit.list_layers(camkit.load_model(weights=None))
    assert names == [info.name for info in infos]
    auto = [line for line in lines if line.startswith("* ")]
    assert len(auto) == 1
    assert auto[0][2:].split()[0] == next(info.name for info in infos if info.is_auto)
    assert "(1, 32, 112, 112)" in result.stdout


def test_demo_writes_the_sample_explanation(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(runner, "demo")
    assert result.exit_code == 0, result.output
    assert_drawn(tmp_path / "camkit-demo.png")
    assert "top-5 predictions" in result.stdout
    assert "wrote camkit-demo.png" in result.stdout
    elsewhere = run(runner, "demo", "--out", tmp_path / "demo")
    assert elsewhere.exit_code == 0, elsewhere.output
    assert_drawn(tmp_path / "demo" / "camkit-demo.png")


def test_demo_twice_replaces_its_own_file_but_not_a_users(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    demo = tmp_path / "camkit-demo.png"
    assert run(runner, "demo").exit_code == 0
    before = demo.stat().st_ino
    again = run(runner, "demo")  # the README's first command, run a second time
    assert again.exit_code == 0, again.output
    assert demo.stat().st_ino != before  # replaced (written to a new file, renamed into place)
    assert_drawn(demo)
    with Image.open(demo) as image:
        assert image.text.get("Source") == "camkit demo"
    # A camkit-demo.png the demo did not write is the user's: kept unless --overwrite.
    shutil.copy(SAMPLE, demo)
    mine = demo.read_bytes()
    refused = run(runner, "demo")
    assert_one_line_error(refused, "not written by camkit demo")
    assert "--overwrite" in refused.stderr and demo.read_bytes() == mine
    assert run(runner, "demo", "--overwrite").exit_code == 0
    assert demo.read_bytes() != mine


def test_a_missing_image_is_one_failure_among_others(runner: CliRunner, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")
    missing = tmp_path / "missing.jpg"
    result = run(runner, "explain", SAMPLE, missing, notes, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert_drawn(tmp_path / "out" / "chelsea-camkit.png")  # the good one is still written
    assert not (tmp_path / "out" / "missing-camkit.png").exists()
    errors = result.stderr.strip().splitlines()
    assert errors[0] == f"error: {missing}: image file '{missing}' not found; check the path"
    assert errors[1].startswith(f"error: {notes}: cannot read image")
    assert errors[2] == (
        f"error: 2 of 3 images failed ({missing}, {notes}); the others were written; fix those "
        "inputs (reasons above) and run them again"
    )
    assert "wrote " in result.stdout and result.stdout.count("top-5 predictions") == 1


def test_only_missing_images_fail_before_the_model_loads(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(camkit, "load_model", no_loading)
    out = tmp_path / "out"
    result = run(runner, "explain", tmp_path / "a.jpg", tmp_path / "b.jpg", "--out", out)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("not found; check the path") == 2
    assert "2 of 2 images failed" in result.stderr and "the others" not in result.stderr
    assert not out.exists()


def test_a_failed_run_leaves_no_empty_out_folder(runner: CliRunner, tmp_path: Path) -> None:
    new = tmp_path / "new" / "heatmaps"
    # Fails after the folder was made: the layer is checked once the model is loaded.
    result = run(runner, "explain", SAMPLE, "--layer", "nosuchlayer", "--out", new)
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "new").exists()
    demo = run(runner, "demo", "--out", new)
    assert demo.exit_code == 0 and new.is_dir()  # a run that succeeds keeps it
    # A folder that existed before stays, even empty.
    existing = tmp_path / "existing"
    existing.mkdir()
    failed = run(runner, "explain", SAMPLE, "--layer", "nosuchlayer", "--out", existing)
    assert failed.exit_code == 2 and existing.is_dir()


def test_layers_accepts_weights(runner: CliRunner) -> None:
    for weights in ("none", "None", "DEFAULT"):  # Lite0's weights ship with it: no download
        result = run(runner, "layers", "--weights", weights)
        assert result.exit_code == 0, (weights, result.output)
        assert "_conv_head" in result.stdout


def test_unknown_layer_on_lite0_suggests_close_names(runner: CliRunner, tmp_path: Path) -> None:
    cases = {
        "blocks.3": "closest: '_blocks.3'",
        "conv_head": "closest: '_conv_head'",
        "features_11": "closest: '_blocks.11'",
        "layer4": "its top-level modules: '_conv_stem', '_bn0', '_blocks', '_conv_head'",
    }
    for layer, expected in cases.items():
        result = run(runner, "explain", SAMPLE, "--layer", layer, "--out", tmp_path)
        assert_one_line_error(result, expected)
        assert not re.search(r";\s*[A-Z]", result.stderr), result.stderr
        assert "; list the layers with" in result.stderr


# --------------------------------------------------------------------------------------------
# Errors: one line on stderr, exit code 2, no traceback
# --------------------------------------------------------------------------------------------


def error_cases(tmp: Path) -> dict[str, tuple[list[str | Path], str]]:
    not_an_image = tmp / "notes.png"
    not_an_image.write_text("not a picture")
    a_file = tmp / "a-file"
    a_file.write_text("")
    blocked = tmp / "blocked"
    (blocked / "chelsea-camkit.png").mkdir(parents=True)  # a folder where the PNG should go
    return {
        "missing image": (["explain", tmp / "missing.png"], "not found"),
        "image is a folder": (["explain", tmp], "not a file"),
        "unreadable image": (["explain", not_an_image], "cannot read image"),
        "unknown model": (["explain", SAMPLE, "--model", "resnet1800"], "unknown model"),
        "unknown layer": (["explain", SAMPLE, "--layer", "features.99"], "features.99"),
        "unknown method": (["explain", SAMPLE, "--method", "gradcm"], "unknown method"),
        "unknown class": (["explain", SAMPLE, "--target", "flying teapot"], "not found among"),
        "class index too large": (["explain", SAMPLE, "--target", "5000"], "out of range"),
        "bad colormap": (["explain", SAMPLE, "--colormap", "jett"], "'jet'"),
        "alpha above 1": (["explain", SAMPLE, "--alpha", "1.5"], "--alpha"),
        "alpha below 0": (["explain", SAMPLE, "--alpha=-0.5"], "--alpha"),
        "target and top-k": (["explain", SAMPLE, "--target", "3", "--top-k", "2"], "--top-k"),
        "out is a file": (["explain", SAMPLE, "--out", a_file], "is a file"),
        "out cannot be made": (["explain", SAMPLE, "--out", a_file / "sub"], "--out"),
        "png cannot be written": (["explain", SAMPLE, "--out", blocked], "cannot write"),
        "layers of unknown model": (["layers", "--model", "nosuchnet"], "unknown model"),
        "demo out cannot be made": (["demo", "--out", a_file / "sub"], "--out"),
    }


ERROR_NAMES = [
    "missing image",
    "image is a folder",
    "unreadable image",
    "unknown model",
    "unknown layer",
    "unknown method",
    "unknown class",
    "class index too large",
    "bad colormap",
    "alpha above 1",
    "alpha below 0",
    "target and top-k",
    "out is a file",
    "out cannot be made",
    "png cannot be written",
    "layers of unknown model",
    "demo out cannot be made",
]


def assert_one_line_error(result: Result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "; " in lines[0]  # the problem, then the way out
    assert expected in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("case", ERROR_NAMES)
def test_errors_are_one_line_with_exit_code_2(runner: CliRunner, tmp_path: Path, case: str) -> None:
    cases = error_cases(tmp_path)
    assert set(cases) == set(ERROR_NAMES)
    args, expected = cases[case]
    assert_one_line_error(run(runner, *args), expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_a_gpu_is_an_error(runner: CliRunner) -> None:
    assert_one_line_error(run(runner, "explain", SAMPLE, "--device", "cuda"), "--device cpu")


def test_click_usage_errors_exit_2(runner: CliRunner) -> None:
    result = run(runner, "explain")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_ambiguous_class_name_asks_for_the_index() -> None:
    with pytest.raises(ValueError, match=r"several classes \('crane' = 0, 'Crane' = 2\)"):
        cli._resolve_target("CRANE", ["crane", "heron", "Crane"])
    assert cli._resolve_target("crane", ["crane", "heron", "Crane"]) == 0
    assert cli._resolve_target("heron", ["crane", "heron"]) == 1
    with pytest.raises(ValueError, match="class index"):
        cli._resolve_target("crane", None)


def test_unexpected_errors_are_one_line_with_exit_code_1(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug or a model that raises still gives one line, saying how to see the traceback."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Expected all tensors to be on the same device\nsecond line")

    monkeypatch.setattr(cli.camkit, "explain", broken)
    monkeypatch.delenv("CAMKIT_TRACEBACK", raising=False)
    result = run(runner, "layers", "--model", "resnet18")  # not affected by the patch
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli.main, ["explain", str(SAMPLE), "--model", "resnet18", "--weights", "none"]
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: unexpected RuntimeError: Expected all tensors to be on the same device second "
        "line (rerun with CAMKIT_TRACEBACK=1 for the traceback and report it if camkit is at "
        "fault)"
    ], result.stderr
    monkeypatch.setenv("CAMKIT_TRACEBACK", "1")
    raised = runner.invoke(
        cli.main, ["explain", str(SAMPLE), "--model", "resnet18", "--weights", "none"]
    )
    assert isinstance(raised.exception, RuntimeError)


def test_out_of_memory_suggests_a_smaller_batch() -> None:
    message = cli._unexpected(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried 2 GiB"))
    assert message.startswith("out of memory (CUDA out of memory. Tried 2 GiB); ")
    assert "--batch-size" in message


def test_random_weights_are_named_in_the_printed_predictions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli.main,
        ["explain", str(SAMPLE), "--model", "resnet18", "--weights", "none", "--out", "out"],
    )
    assert result.exit_code == 0, result.output
    assert "top-5 predictions (random weights: they mean nothing)" in result.output
    trained = CliRunner().invoke(
        cli.main, ["explain", str(SAMPLE), "--out", str(tmp_path / "lite")]
    )
    assert trained.exit_code == 0, trained.output
    assert "random weights" not in trained.output


def test_classroom_is_a_command_of_the_cli() -> None:
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0
    assert "classroom" in result.output
