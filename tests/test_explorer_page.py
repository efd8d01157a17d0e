"""The explorer page: `camkit export-explorer` writes one HTML file that needs no server.

One small page (two pictures on EfficientNet-Lite0, written through the CLI) serves every test:
its stored maps are checked against camkit.explain's raw maps, and headless Chromium (marked
``browser``; Debian's chromium and Playwright, skipped without them) moves each control with the
keyboard and compares the canvas's pixels with camkit.explain's map for that view, checks that
nothing but the file itself is requested, and prints the median time from key press to painted
frame. The default page's size and timing: ``benchmarks/bench_explorer_page.py``.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import statistics
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

import camkit
from camkit import cli
from camkit._errors import MapWarning
from camkit._explorer import candidate_layers, colour_table, one_pass_methods
from camkit.explorer_page import export_explorer, read_pictures
from tests import browser_helpers as helpers

TITLES = ["sample: chelsea", "both.png"]

#: Why the browser tests cannot run here (no Chromium, no Playwright), or None.
NO_BROWSER = (
    f"{helpers.CHROMIUM} not found; install it with `apt-get install -y chromium`"
    if not helpers.CHROMIUM.exists()
    else "playwright not installed; pip install playwright (no `playwright install` needed)"
    if importlib.util.find_spec("playwright") is None
    else None
)


@pytest.fixture(scope="module")
def loaded() -> camkit.LoadedModel:
    return camkit.load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page the tests share: a sample by name and a picture by path, through the CLI."""
    out = tmp_path_factory.mktemp("page") / "explorer.html"
    both = str(camkit.sample_image_path("both"))
    result = CliRunner().invoke(
        cli.main, ["export-explorer", "chelsea", both, "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and "2 pictures" in result.output
    return out


def page_data(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    start = text.index('<script id="camkit-data" type="application/json">')
    start = text.index(">", start) + 1
    return json.loads(text[start : text.index("</script>", start)])


def picture(title: str) -> Image.Image:
    name = "chelsea" if title == "sample: chelsea" else "both"
    return camkit.sample_image(name)


def explained(loaded, title: str, layer: str, method: str, target: int) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MapWarning)
        return camkit.explain(
            loaded, picture(title), methods=[method], layers=[layer], target=target
        )


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------


def test_the_page_holds_every_layer_method_and_top_5_class(page: Path, loaded) -> None:
    data = page_data(page)
    assert data["model"]["title"] == "EfficientNet-Lite0"
    assert [layer["name"] for layer in data["layers"]] == [
        info.name for info in candidate_layers(loaded)
    ]
    assert [method["name"] for method in data["methods"]] == one_pass_methods()
    assert [c["name"] for c in data["colormaps"]] == ["jet", "viridis"]
    assert [p["title"] for p in data["pictures"]] == TITLES
    assert page.stat().st_size / 2 * 4 < 20e6  # so the default page, four pictures, too
    for entry in data["pictures"]:
        with torch.no_grad():
            exp = explained(loaded, entry["title"], "_blocks.15", "gradcam", 0)
            probs = exp.probs[0]
        top = probs.topk(5)
        assert [c["index"] for c in entry["classes"]] == top.indices.tolist()
        assert [c["probability"] for c in entry["classes"]] == pytest.approx(
            top.values.tolist(), abs=1e-4
        )
        assert len(entry["maps"]) == len(data["layers"])
        assert all(len(row) == len(data["methods"]) for row in entry["maps"])


@pytest.mark.parametrize(
    ("picture_index", "layer", "method", "rank"),
    [
        (0, "_conv_stem", "gradcam", 0),
        (0, "_blocks.10", "gradcam++", 2),
        (1, "_swish", "layercam", 4),
    ],
)
def test_each_map_is_stored_at_its_layers_resolution(
    page: Path, loaded, picture_index: int, layer: str, method: str, rank: int
) -> None:
    data = page_data(page)
    entry = data["pictures"][picture_index]
    layer_index = [info["name"] for info in data["layers"]].index(layer)
    method_index = [info["name"] for info in data["methods"]].index(method)
    height, width = data["layers"][layer_index]["grid"]
    stored = np.frombuffer(base64.b64decode(entry["maps"][layer_index][method_index]), np.uint8)
    assert stored.size == 5 * height * width
    target = entry["classes"][rank]["index"]
    exp = explained(loaded, entry["title"], layer, method, target)
    raw = exp.raw[(layer, method)][0].float()
    assert tuple(raw.shape) == (height, width)
    assert height < data["size"][0]  # a layer's own grid, not the picture's size
    mine = torch.from_numpy(stored.reshape(5, height, width)[rank].astype(np.float32))
    if exp.warning_for(method, layer) is not None:  # stored flat, shown with the warning
        assert entry["warned"][f"{layer}|{method}|{rank}"] == exp.warning_for(method, layer)
        assert not mine.any()
        return
    scaled = (raw - raw.min()) / (raw.max() - raw.min()) * 255
    assert (mine - scaled).abs().max() <= 0.51  # min-max per map, rounded to 8 bits


def test_the_page_fetches_nothing(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "default-src 'none'" in text  # the browser refuses any fetch the page might try
    for sign in ("http://", "https://", "<link", " src=", "href=", "url(", "fetch(", "XMLHttp"):
        assert sign not in text, sign


def test_default_pictures_are_the_four_samples() -> None:
    assert [p.title for p in read_pictures(None)] == [
        "sample: water-bird",
        "sample: both",
        "sample: chelsea",
        "sample: coffee",
    ]


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2)
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_from_python_with_a_module_pil_pictures_and_chosen_methods(tmp_path: Path) -> None:
    torch.manual_seed(0)
    out = export_explorer(
        [Image.new("RGB", (40, 30), (200, 30, 30))],
        Tiny().eval(),
        tmp_path / "tiny.html",
        titles=["red"],
        methods=["gradcam", "gradcam++"],
        colormaps="viridis",
        progress=False,
    )
    data = page_data(out)
    assert [m["name"] for m in data["methods"]] == ["gradcam", "gradcam++"]
    assert [c["name"] for c in data["colormaps"]] == ["viridis"]
    assert data["pictures"][0]["title"] == "red"
    assert [layer["name"] for layer in data["layers"]] == ["features.0", "features.1", "features.2"]
    classes = data["pictures"][0]["classes"]
    assert len(classes) == 3  # all the model has, fewer than 5
    assert all(c["name"] == f"class {c['index']}" for c in classes)


# --------------------------------------------------------------------------------------------
# Bad input: one line, before the model runs
# --------------------------------------------------------------------------------------------


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr("camkit.explorer_page.load_model", refuse)


def test_library_errors_come_before_the_model(tmp_path: Path, no_model: None) -> None:
    with pytest.raises(ValueError, match=r"image file '.*nope\.jpg' not found; check the path"):
        export_explorer([tmp_path / "nope.jpg"], out=tmp_path / "x.html")
    with pytest.raises(ValueError, match="does not exist"):
        export_explorer(out=tmp_path / "missing" / "x.html")
    with pytest.raises(ValueError, match="is a folder"):
        export_explorer(out=tmp_path)
    with pytest.raises(ValueError, match="one-pass methods"):
        export_explorer(["chelsea"], methods=["scorecam"], out=tmp_path / "x.html")
    with pytest.raises(ValueError, match=r"colormap|colour map"):
        export_explorer(["chelsea"], colormaps=["not-a-map"], out=tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def run_cli(*args: str | Path) -> Any:
    return CliRunner().invoke(cli.main, ["export-explorer", *map(str, args)])


def assert_one_line_error(result: Any, *parts: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for part in parts:
        assert part in lines[0], lines[0]


def test_cli_errors_are_one_line(tmp_path: Path, no_model: None) -> None:
    out = tmp_path / "page.html"
    assert_one_line_error(run_cli("nope.jpg", "--out", out), "'nope.jpg' not found", "sample")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_one_line_error(run_cli("--out", blocker / "page.html"), "is not a folder")
    assert_one_line_error(run_cli("--out", tmp_path / "no" / "page.html"), "does not exist")
    assert_one_line_error(run_cli("--out", tmp_path), "is a folder")
    out.write_text("mine")
    assert_one_line_error(run_cli("--out", out), "already exists", "--overwrite")
    assert out.read_text() == "mine"


def test_cli_help_lists_the_command() -> None:
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0 and "export-explorer" in result.output
    result = run_cli("--help")
    assert result.exit_code == 0 and "--out FILE" in result.output and "PICTURES" in result.output


def test_cli_unknown_model_is_one_line(tmp_path: Path) -> None:
    result = run_cli("chelsea", "--model", "no_such_model", "--out", tmp_path / "p.html")
    assert_one_line_error(result, "no_such_model")
    assert not (tmp_path / "p.html").exists()


# --------------------------------------------------------------------------------------------
# In Chromium: each control draws camkit.explain's map; nothing is fetched; the key-to-paint time
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser_page(page: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(helpers.CHROMIUM), args=helpers.CHROMIUM_ARGS, headless=True
        )
        tab = chromium.new_page(viewport={"width": 1300, "height": 900})
        requests: list[str] = []
        problems: list[str] = []
        tab.on("request", lambda request: requests.append(request.url))
        tab.on("pageerror", lambda error: problems.append(str(error)))
        tab.on("console", lambda message: problems.append(message.text))
        tab.goto(page.as_uri())
        tab.wait_for_function("() => window.camkitExplorer && camkitExplorer.frames() > 0")
        yield tab, requests, problems
        chromium.close()


def canvas_pixels(tab) -> np.ndarray:
    url = tab.evaluate("document.getElementById('picture').toDataURL('image/png')")
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def press(tab, selector: str, key: str) -> None:
    """Press a key on a control and wait until the page has drawn the change."""
    frames = tab.evaluate("camkitExplorer.frames()")
    tab.focus(selector)
    tab.keyboard.press(key)
    tab.wait_for_function("(frames) => camkitExplorer.frames() > frames", arg=frames)


def expected_panels(loaded, view: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo (overlay at opacity 0), heatmap and overlay camkit draws for the view."""
    exp = explained(loaded, view["picture"], view["layer"], view["method"], view["target"])
    heat = exp.maps[(view["layer"], view["method"])][0]
    if exp.warning_for(view["method"], view["layer"]) is not None:
        heat = torch.zeros_like(heat)  # a warned map is drawn flat
    table = colour_table(view["colormap"])
    coloured = table[np.minimum((heat.numpy() * 256).astype(np.int64), 255)]
    blended = camkit.overlay(exp.images[0], heat, view["colormap"], view["opacity"])
    photo = camkit.overlay(exp.images[0], heat, view["colormap"], 0.0)
    return np.asarray(photo), coloured, np.asarray(blended)


def panel_difference(shown: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """(mean, 99th percentile) over pixels of the largest channel difference."""
    worst = np.abs(shown.astype(np.int16) - expected.astype(np.int16)).max(axis=-1)
    return float(worst.mean()), float(np.percentile(worst, 99))


@pytest.mark.browser
@pytest.mark.skipif(NO_BROWSER is not None, reason=NO_BROWSER or "")
def test_each_control_draws_camkits_map(browser_page, loaded) -> None:
    tab, requests, problems = browser_page
    height, width = tab.evaluate("camkitExplorer.size")
    gap = tab.evaluate("camkitExplorer.gap")
    steps = [
        ("layer", "#layer", "ArrowLeft"),
        ("method", "input[name=method]:checked", "ArrowRight"),
        ("class", "input[name=class]:checked", "ArrowRight"),
        ("picture", "input[name=picture]:checked", "ArrowRight"),
        ("opacity", "#opacity", "ArrowRight"),
        ("colormap", "input[name=colormap]:checked", "ArrowRight"),
    ]
    view = tab.evaluate("camkitExplorer.view()")
    before = expected_panels(loaded, view)[1:]
    for control, selector, key in steps:
        old_view = view
        presses = 6 if control == "opacity" else 1  # 0.5 -> 0.8: a change the eye can see
        for _ in range(presses):
            press(tab, selector, key)
        view = tab.evaluate("camkitExplorer.view()")
        changed = {name for name in view if view[name] != old_view[name]}
        expected_change = {"class": {"target"}, "picture": {"picture", "target"}}.get(
            control, {control}
        )
        assert changed == expected_change, (control, old_view, view)
        pixels = canvas_pixels(tab)
        assert pixels.shape == (height, 3 * width + 2 * gap, 3)
        heat = pixels[:, width + gap : 2 * width + gap]
        blend = pixels[:, 2 * (width + gap) :]
        photo, *now = expected_panels(loaded, view)
        assert np.array_equal(pixels[:, :width], photo)  # the picture as the model saw it
        mean_heat, p99_heat = panel_difference(heat, now[0])
        mean_blend, p99_blend = panel_difference(blend, now[1])
        print(
            f"{control}: {view} heat |diff| mean {mean_heat:.2f} p99 {p99_heat:.0f}; "
            f"overlay mean {mean_blend:.2f} p99 {p99_blend:.0f}"
        )
        assert mean_heat < 1.5 and p99_heat <= 12, control  # the 8-bit storage, upsampled
        assert mean_blend < 1.5 and p99_blend <= 8, control
        # ... and the view before the move would not pass: the picture did change to the new map.
        old_panel = before[1] if control == "opacity" else before[0]
        shown = blend if control == "opacity" else heat
        assert panel_difference(shown, old_panel)[0] > 4 * max(mean_heat, mean_blend, 1.0)
        before = now
    assert requests == [tab.url], requests  # the file itself, nothing else
    assert not problems, problems


@pytest.mark.browser
@pytest.mark.skipif(NO_BROWSER is not None, reason=NO_BROWSER or "")
def test_key_press_to_painted_frame(browser_page) -> None:
    tab, _, _ = browser_page
    if tab.evaluate("camkitExplorer.view().layer") != tab.evaluate("camkitExplorer.layers[0]"):
        press(tab, "#layer", "Home")  # the first layer, so that 12 moves right stay in range
    tab.evaluate("camkitExplorer.timings.length = 0")
    for key in ["ArrowRight"] * 12 + ["ArrowLeft"] * 12:
        count = tab.evaluate("camkitExplorer.timings.length")
        press(tab, "#layer", key)
        tab.wait_for_function("(count) => camkitExplorer.timings.length > count", arg=count)
    timings = tab.evaluate("camkitExplorer.timings")
    moves = [entry["ms"] for entry in timings if entry["control"] == "layer"]
    draws = [entry["draw_ms"] for entry in timings if entry["control"] == "layer"]
    median = statistics.median(moves)
    print(
        f"layer slider, key press to painted frame: median {median:.1f} ms over {len(moves)} "
        f"moves (min {min(moves):.1f}, max {max(moves):.1f}); drawing alone: median "
        f"{statistics.median(draws):.1f} ms"
    )
    assert len(moves) >= 20
    assert median < 500  # a generous bound; benchmarks/bench_explorer_page.py reports the number
