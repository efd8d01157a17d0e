"""Reliability: the model left as found however a call ends, threads, determinism, safe files."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from torch import nn

import camkit
import camkit.overlay
from camkit import cli
from camkit._errors import LayerNotFoundError
from camkit._inputs import Preprocessing
from camkit._locks import model_lock
from tests.conftest import ONE_PASS_METHODS, SmallCNN
from tests.test_cli import SAMPLE, assert_drawn, assert_one_line_error, reuse_loaded_models  # noqa: F401

# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class TinyViT(nn.Module):
    """Patch tokens plus a class token, a LayerNorm over them, a linear head: (N, tokens, C)."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, 16) * 0.1)
        self.mix = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = self.norm(tokens + torch.relu(self.mix(tokens)))
        return self.head(self.dropout(tokens[:, 0] + tokens[:, 1:].mean(dim=1)))


class Faulty(nn.Module):
    """Wraps a model; with ``fail`` set, its forward raises after every inner layer has run."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.fail:
            raise RuntimeError("forward failed")
        return out


def _small_cnn() -> SmallCNN:
    torch.manual_seed(0)
    model = SmallCNN()
    with torch.no_grad():  # non-trivial statistics, so a train-mode pass would change them
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


def _tiny_vit() -> TinyViT:
    torch.manual_seed(0)
    return TinyViT()


MODELS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "cnn": (_small_cnn, "inner.block"),
    "vit": (_tiny_vit, "inner.norm"),
}

# --------------------------------------------------------------------------------------------
# State invariants: one table of (method x model x way the call ends x grad mode)
# --------------------------------------------------------------------------------------------

METHODS: dict[str, dict[str, object]] = {
    "gradcam": {"methods": "gradcam"},
    "eigencam": {"methods": "eigencam"},
    "scorecam": {"methods": "scorecam", "max_channels": 4},
    "guided-gradcam": {"methods": "guided-gradcam"},
    "smoothed": {"methods": ["gradcam", "layercam"], "smooth": "noise", "smooth_samples": 2},
}


def _failing_target(output: object) -> torch.Tensor:
    raise ValueError("target failed")


ENDINGS: dict[str, tuple[type[Exception] | None, str]] = {
    "success": (None, ""),
    "forward raises": (RuntimeError, "forward failed"),
    "target raises": (ValueError, "target failed"),
    "invalid layer": (LayerNotFoundError, "not found in Faulty"),
}


def _hooks(model: nn.Module) -> list[tuple[str, list[int]]]:
    """The hook handles' ids on every module, hook dictionaries of all kinds."""
    kinds = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_state_dict_hooks",
        "_load_state_dict_pre_hooks",
    )
    return [
        (f"{name}.{kind}", list(getattr(module, kind, {})))
        for name, module in model.named_modules()
        for kind in kinds
    ]


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "hooks": _hooks(model),
        "training": [(name, m.training) for name, m in model.named_modules()],
        "requires_grad": [(name, p.requires_grad) for name, p in model.named_parameters()],
        "grad": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modules": [(name, type(m)) for name, m in model.named_modules()],
    }


def _assert_same_state(model: nn.Module, before: dict[str, object]) -> None:
    after = _snapshot(model)
    for key in ("hooks", "training", "requires_grad", "modules"):
        assert after[key] == before[key], key
    for a, b in zip(after["grad"], before["grad"], strict=True):  # type: ignore[call-overload]
        assert (a is None and b is None) or torch.equal(a, b)
    assert after["state"].keys() == before["state"].keys()  # type: ignore[attr-defined]
    for key, value in before["state"].items():  # type: ignore[attr-defined]
        assert torch.equal(after["state"][key], value), key  # type: ignore[index]


def _lock_is_free(model: nn.Module) -> bool:
    """Whether another thread can take the model's lock now (no call left holding it)."""
    result: list[bool] = []

    def probe() -> None:
        lock = model_lock(model)
        taken = lock.acquire(blocking=False)
        if taken:
            lock.release()
        result.append(taken)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(timeout=10)
    return result == [True]


def _user_state(model: Faulty) -> list[object]:
    """Give the model what a user's training loop leaves on it: mixed flags, grads, a hook."""
    model.train()
    model.inner.head.eval() if isinstance(model.inner, TinyViT) else model.inner.stem.eval()
    parameters = list(model.parameters())
    parameters[0].grad = torch.full_like(parameters[0], 0.5)
    parameters[1].requires_grad_(False)
    calls: list[object] = []
    model.inner.register_forward_hook(lambda *_args: calls.append(None))
    return calls


@pytest.mark.parametrize("grad_mode", ["grad", "no_grad"])
@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("method", list(METHODS))
def test_model_state_is_unchanged_however_the_call_ends(
    method: str, model_name: str, ending: str, grad_mode: str
) -> None:
    build, layer = MODELS[model_name]
    model = Faulty(build())
    user_hook_calls = _user_state(model)
    before = _snapshot(model)
    kwargs: dict[str, object] = {"layers": layer, **METHODS[method]}
    if ending == "forward raises":
        model.fail = True
    elif ending == "target raises":
        kwargs["target"] = _failing_target
    elif ending == "invalid layer":
        kwargs["layers"] = "inner.nope"
    error, message = ENDINGS[ending]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad() if grad_mode == "no_grad" else nullcontext():
        if error is None:
            explanation = camkit.explain(model, x, **kwargs)  # type: ignore[arg-type]
            for value in explanation.maps.values():
                assert torch.isfinite(value).all() and value.max() == 1
        else:
            with pytest.raises(error, match=message):
                camkit.explain(model, x, **kwargs)  # type: ignore[arg-type]
        assert torch.is_grad_enabled() == (grad_mode == "grad")  # the caller's mode is kept
    model.fail = False
    _assert_same_state(model, before)
    assert _lock_is_free(model)
    # The user's own hook stayed and still runs; the model still works in the user's hands.
    calls_before = len(user_hook_calls)
    model(x)
    assert len(user_hook_calls) == calls_before + 1


# --------------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------------


class Watched(nn.Module):
    """A SmallCNN whose forward counts how many calls run at once and can pause mid-way."""

    def __init__(self, pause: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.inner = _small_cnn().eval()
        self.pause = pause
        self.active = 0
        self.most = 0
        self.guard = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.guard:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            features = self.inner.block(self.inner.stem(x))
            if self.pause is not None:
                self.pause()  # another thread's call would run its forward now
            return self.inner.fc(torch.flatten(self.inner.pool(features), 1))
        finally:
            with self.guard:
                self.active -= 1


THREAD_METHODS = ["gradcam", "gradcam++", "eigencam", "layercam"]


def _images(count: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return [torch.randn(1, 3, 16, 16, generator=generator) for _ in range(count)]


# Random weights: some classes have no positive evidence at the layer (a MapWarning).
@pytest.mark.filterwarnings("ignore::camkit.MapWarning")
def test_two_threads_on_one_model_get_the_sequential_maps() -> None:
    model = Watched(pause=lambda: time.sleep(0.005))
    images = _images(8)

    def explain(i: int) -> camkit.Explanation:
        return camkit.explain(
            model, images[i], methods=THREAD_METHODS, layers=("inner.stem", "inner.block"),
            target=i % 5,
        )  # fmt: skip

    sequential = [explain(i) for i in range(len(images))]
    model.train()  # the flags each call switches and restores are shared between the threads
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = list(pool.map(explain, range(len(images))))
    assert model.most == 1  # camkit ran the two threads' calls one after the other
    assert all(module.training for module in model.modules())
    assert not any(module._forward_hooks for module in model.modules())
    for alone, together in zip(sequential, threaded, strict=True):
        assert alone.maps.keys() == together.maps.keys()
        for key, value in alone.maps.items():
            assert torch.equal(together.maps[key], value), key
        assert torch.equal(together.logits, alone.logits)


def test_without_the_lock_one_call_reads_the_others_activations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Shows what the lock prevents: the first call pauses inside its forward, the second runs."""
    first_paused, second_done = threading.Event(), threading.Event()

    def pause() -> None:
        if threading.current_thread().name == "first" and not first_paused.is_set():
            first_paused.set()
            second_done.wait(timeout=10)

    model = Watched(pause=pause)
    images = _images(2)
    expected = camkit.explain(model, images[0], layers="inner.block")
    monkeypatch.setattr("camkit.api.serialised", lambda _model: nullcontext())
    monkeypatch.setattr("camkit.hooks.serialised", lambda _model: nullcontext())
    outcome: dict[str, object] = {}

    def first() -> None:
        try:
            outcome["first"] = camkit.explain(model, images[0], layers="inner.block")
        except Exception as error:  # the leak shows up as an error or as a wrong map
            outcome["first"] = error

    def second() -> None:
        first_paused.wait(timeout=10)
        try:
            camkit.explain(model, images[1], layers="inner.block")
        finally:
            second_done.set()

    threads = [threading.Thread(target=first, name="first"), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert model.most == 2
    got = outcome["first"]
    leaked = isinstance(got, Exception) or not torch.equal(
        got.maps[("inner.block", "gradcam")],  # type: ignore[attr-defined]
        expected.maps[("inner.block", "gradcam")],
    )
    assert leaked


def test_different_model_objects_run_in_parallel() -> None:
    both_inside = threading.Barrier(2, timeout=10)  # broken (an error) if the calls ran in turn
    models = [Watched(pause=both_inside.wait), Watched(pause=both_inside.wait)]
    images = _images(2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(camkit.explain, model, image, layers="inner.block")
            for model, image in zip(models, images, strict=True)
        ]
        results = [future.result() for future in futures]
    assert [r.maps[("inner.block", "gradcam")].shape for r in results] == [(1, 16, 16)] * 2


# --------------------------------------------------------------------------------------------
# Determinism on the CPU
# --------------------------------------------------------------------------------------------

DETERMINISM_CASES: dict[str, dict[str, object]] = {
    "one pass, all methods": {"methods": ONE_PASS_METHODS},
    "perturbation": {"methods": ["scorecam", "ablationcam"], "max_channels": 6},
    "guided": {"methods": ["guided-backprop", "guided-gradcam"]},
    "smoothing": {"methods": ["gradcam", "smoothgradcam++"], "smooth": "noise", "seed": 3},
    "top-3, two layers": {"methods": ["gradcam", "xgradcam"], "top_k": 3},
}


@pytest.mark.parametrize("case", list(DETERMINISM_CASES))
def test_same_input_gives_bit_identical_maps_on_cpu(case: str) -> None:
    model = _small_cnn().eval()
    generator = torch.Generator().manual_seed(11)
    x, other = torch.randn(2, 3, 32, 32, generator=generator), torch.randn(2, 3, 32, 32)
    kwargs = {"layers": ("stem", "block"), **DETERMINISM_CASES[case]}
    first = camkit.explain(model, x, **kwargs)  # type: ignore[arg-type]
    camkit.explain(model, other, **kwargs)  # type: ignore[arg-type]  # nothing carries over
    second = camkit.explain(model, x, **kwargs)  # type: ignore[arg-type]
    assert first.maps.keys() == second.maps.keys()
    for key, value in first.maps.items():
        assert torch.equal(second.maps[key], value), key
        assert value.max() > 0
    for key, value in first.raw.items():
        assert torch.equal(second.raw[key], value), key


# --------------------------------------------------------------------------------------------
# The CLI loses nothing: no input written over, no output replaced unasked, failures listed
# --------------------------------------------------------------------------------------------


@pytest.fixture
def small_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI loads a small CNN at 64x64: the file handling, not the model, is under test."""
    loaded = camkit.LoadedModel(
        _small_cnn().eval(), Preprocessing(64, 64), ["cat", "dog", "car", "tree", "cup"], "small"
    )
    monkeypatch.setattr(camkit, "load_model", lambda *_args, **_kwargs: loaded)


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli.main, [str(arg) for arg in args])


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path, small_model: None) -> None:
    written = tmp_path / "chelsea-camkit.png"
    written.write_bytes(b"an earlier result")
    result = _run("explain", SAMPLE, "--out", tmp_path)
    assert_one_line_error(result, "already exists; pass --overwrite")
    assert written.read_bytes() == b"an earlier result"
    result = _run("explain", SAMPLE, "--out", tmp_path, "--overwrite")
    assert result.exit_code == 0, result.output
    assert_drawn(written)
    assert [path.name for path in tmp_path.iterdir()] == ["chelsea-camkit.png"]  # no leftovers


def test_inputs_are_never_written_over_even_with_overwrite(
    tmp_path: Path, small_model: None
) -> None:
    image = tmp_path / "chelsea-camkit.png"  # an input named like the output of another input
    shutil.copy(SAMPLE, image)
    other = tmp_path / "chelsea.png"
    shutil.copy(SAMPLE, other)
    before = image.read_bytes()
    result = _run("explain", other, image, "--out", tmp_path, "--overwrite")
    assert result.exit_code == 0, result.output
    assert image.read_bytes() == before
    assert_drawn(tmp_path / "chelsea-camkit-2.png")


def test_a_failing_image_is_reported_and_the_others_are_written(
    tmp_path: Path, small_model: None
) -> None:
    good, bad, also_good = tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "c.png"
    shutil.copy(SAMPLE, good)
    bad.write_text("not a picture")
    shutil.copy(SAMPLE, also_good)
    out = tmp_path / "out"
    result = _run("explain", good, bad, also_good, "--out", out)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: {bad}: cannot read image")
    assert lines[-1] == (
        f"error: 1 of 3 images failed ({bad}); the others were written; fix those inputs "
        "(reasons above) and run them again"
    )
    assert len(lines) == 2
    assert_drawn(out / "a-camkit.png")
    assert_drawn(out / "c-camkit.png")
    assert sorted(path.name for path in out.iterdir()) == ["a-camkit.png", "c-camkit.png"]
    assert result.stdout.count("top-5 predictions") == 2


def test_a_write_failing_halfway_leaves_earlier_outputs_and_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_model: None
) -> None:
    images = [tmp_path / f"{name}.png" for name in ("a", "b", "c")]
    for image in images:
        shutil.copy(SAMPLE, image)
    out = tmp_path / "out"
    real_replace = os.replace
    counter = itertools.count()

    def disk_full_on_second(source: str, target: str) -> None:
        if next(counter) == 1:
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    overlay_module = sys.modules["camkit.overlay"]  # camkit.overlay is the function of that name
    monkeypatch.setattr(overlay_module.os, "replace", disk_full_on_second)
    result = _run("explain", *images, "--out", out)
    assert result.exit_code == 2
    assert f"error: {images[1]}: cannot write" in result.stderr
    assert "No space left on device" in result.stderr
    assert sorted(path.name for path in out.iterdir()) == ["a-camkit.png", "c-camkit.png"]
    assert_drawn(out / "a-camkit.png")


def test_a_mistake_every_image_would_repeat_stops_at_once(
    tmp_path: Path, small_model: None
) -> None:
    result = _run("explain", SAMPLE, SAMPLE, "--layer", "nosuch", "--out", tmp_path)
    assert_one_line_error(result, "'nosuch' not found")


@contextmanager
def _existing(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("kept")
    yield path
    assert path.read_text() == "kept"


def test_demo_and_evaluate_keep_existing_outputs(tmp_path: Path, small_model: None) -> None:
    with _existing(tmp_path / "camkit-demo.png"):
        assert_one_line_error(_run("demo", "--out", tmp_path), "pass --overwrite")
    with _existing(tmp_path / "scores" / "summary.md"):
        result = _run("evaluate", tmp_path, "--out", tmp_path / "scores")
        assert_one_line_error(result, "pass --overwrite to replace it (or --resume)")
