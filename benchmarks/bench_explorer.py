"""How fast the explorer answers: slider moves, and model and class changes on eight models.

A slider move (layer, method or opacity) is timed from setting the control's value to the new PNG
bytes in the picture widget: it upsamples, normalises, colours and encodes one stored map. A class
change and a model change run one explain pass for every candidate layer, for the method shown;
another method's first visit runs one more pass (then it is stored). Beside them, the cost of
what a widget without stored maps does per move (explain one layer again, then draw) and, with
--all-methods, of the pass computing all eight methods up front, as the explorer did before.

The times leave out sending the PNG to the browser (a local websocket; Colab's is slower; see
benchmarks/bench_explorer_browser.py for the browser's own clock). The tutorial's torchvision
models run with random weights here (their pretrained weights need a download): timing only,
their heatmaps mean nothing. Each line carries the 1-minute load average when it was measured.

Usage: python benchmarks/bench_explorer.py [--repeats 3] [--models lite0,vgg16] [--moves lite0]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torchvision

import camkit
from camkit._explorer import MODEL_TITLES
from camkit.widgets import Explorer

#: Short names on the command line -> camkit / torchvision model names.
MODELS = {
    "lite0": "efficientnet_lite0",
    "lite1": "efficientnet_lite1",
    "lite2": "efficientnet_lite2",
    "alexnet": "alexnet",
    "vgg16": "vgg16",
    "resnet101": "resnet101",
    "densenet161": "densenet161",
    "squeezenet": "squeezenet1_1",
    "resnet50": "resnet50",
}
ALL = "lite0,lite1,lite2,alexnet,vgg16,resnet101,densenet161,squeezenet"


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "load ?"


def median_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def build(name: str) -> tuple[Explorer, str, bool, float]:
    """An explorer showing ``name`` first; (explorer, title, pretrained, seconds to build model)."""
    if name not in MODELS:
        raise SystemExit(f"unknown model {name!r}; use some of {', '.join(MODELS)}")
    full = MODELS[name]
    started = time.perf_counter()
    if full.startswith("efficientnet"):
        return (
            Explorer(image="water-bird", models=[full], tutorial_models=False),
            (MODEL_TITLES[full]),
            True,
            0.0,
        )
    network = torchvision.models.get_model(full, weights=None).eval()
    built = time.perf_counter() - started
    loaded = camkit.LoadedModel(network, camkit.Preprocessing(), None, full, False)
    title = MODEL_TITLES.get(full, full)
    explorer = Explorer(image="water-bird", models={title: loaded}, tutorial_models=False)
    return explorer, title, False, built


def time_moves(explorer: Explorer, repeats: int) -> dict[str, float]:
    """Median ms of layer, method and opacity moves, each drawing a picture not drawn before."""
    layers = len(explorer.layers)
    for method in explorer.methods:  # computed once here, so every move below draws a stored map
        explorer.method_picker.value = method
    moves: dict[str, list[float]] = {"layer": [], "method": [], "opacity": []}
    for round_ in range(repeats):
        explorer._pngs.clear()  # every move below draws, none is served from the cache
        for index in range(layers):
            started = time.perf_counter()
            explorer.layer_slider.value = (index + round_) % layers
            moves["layer"].append(time.perf_counter() - started)
        for method in explorer.methods:
            explorer._pngs.clear()
            started = time.perf_counter()
            explorer.method_picker.value = method
            moves["method"].append(time.perf_counter() - started)
        for step in range(1, 11):
            started = time.perf_counter()
            explorer.alpha_slider.value = round(step * 0.09 + round_ * 0.001, 3)
            moves["opacity"].append(time.perf_counter() - started)
    assert explorer.message == "", explorer.message
    return {name: median_ms(times) for name, times in moves.items()}


def time_passes(explorer: Explorer, title: str, repeats: int) -> dict[str, list[float]]:
    """Seconds of class changes, changes back to ``title``, and first visits of a method."""
    times: dict[str, list[float]] = {"class": [], "model": [], "method": []}
    other = next(name for name in explorer.model_picker.options if name != title)
    explorer.method_picker.value = "gradcam"
    explorer.model_picker.value = other  # loaded once here, so the model change below is one pass
    explorer.model_picker.value = title
    options = [value for _, value in explorer.class_picker.options]
    for round_ in range(repeats):
        explorer._passes.clear()
        explorer._pngs.clear()
        started = time.perf_counter()
        explorer.class_picker.value = options[1 + round_ % (len(options) - 1)]
        times["class"].append(time.perf_counter() - started)
        started = time.perf_counter()
        explorer.method_picker.value = "gradcam++"  # not computed for this class yet
        times["method"].append(time.perf_counter() - started)
        explorer.method_picker.value = "gradcam"
        explorer.model_picker.value = other
        explorer._passes.clear()
        explorer._pngs.clear()
        started = time.perf_counter()
        explorer.model_picker.value = title
        times["model"].append(time.perf_counter() - started)
    assert explorer.message == "", explorer.message
    return times


def time_all_methods(explorer: Explorer, repeats: int) -> float:
    """Median seconds of one explain pass with all eight methods at every layer (the old way)."""
    names = [info.name for info in explorer.layers]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        camkit.explain(explorer.loaded, explorer.image, methods=explorer.methods, layers=names)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def spread(times: list[float]) -> str:
    return f"{statistics.median(times):5.2f} s ({min(times):.2f}-{max(times):.2f})"


def time_rerun(explorer: Explorer, repeats: int) -> float:
    """Median ms of explaining one layer again per move and drawing it (no stored maps)."""
    times = []
    for round_ in range(repeats):
        for index in range(0, len(explorer.layers), 4):
            layer = explorer.layers[(index + round_) % len(explorer.layers)].name
            started = time.perf_counter()
            exp = camkit.explain(
                explorer.loaded,
                explorer.image,
                methods=["gradcam"],
                layers=[layer],
                target=explorer.target,
            )
            exp.overlay("gradcam", layer).save(os.devnull, format="png")
            times.append(time.perf_counter() - started)
    return median_ms(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=ALL, help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--moves", default="lite0", help="models whose slider moves are timed")
    parser.add_argument(
        "--all-methods", action="store_true", help="also time the pass computing all 8 methods"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    import ipywidgets

    print(
        f"camkit {camkit.__version__}, torch {torch.__version__}, ipywidgets "
        f"{ipywidgets.__version__}, Python {platform.python_version()}; torch threads "
        f"{torch.get_num_threads()} on {os.cpu_count()} CPUs; {load()}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; medians of "
        f"{args.repeats} rounds (min-max)"
    )
    print("Times exclude sending the PNG to the browser.")
    moves_for = {name.strip() for name in args.moves.split(",") if name.strip()}
    for name in args.models.split(","):
        name = name.strip()
        started = time.perf_counter()
        explorer, title, pretrained, built = build(name)
        first = time.perf_counter() - started - built
        weights = "pretrained" if pretrained else "random weights, timing only"
        print(
            f"\n{title} ({weights}): {len(explorer.layers)} layers x {len(explorer.methods)} "
            f"methods; first view (find layers, one pass, draw) {first:.2f} s"
            + (f" after building the model in {built:.2f} s" if built else "")
            + f" [{load()}]"
        )
        passes = time_passes(explorer, title, args.repeats)
        print(f"  class change (1 pass)              {spread(passes['class'])}   [{load()}]")
        print(f"  model change (1 pass)              {spread(passes['model'])}   [{load()}]")
        print(f"  another method, first visit        {spread(passes['method'])}   [{load()}]")
        if args.all_methods:
            every = time_all_methods(explorer, args.repeats)
            print(f"  one pass with all 8 methods (before) {every:5.2f} s   [{load()}]")
        if name in moves_for:
            moves = time_moves(explorer, args.repeats)
            rerun = time_rerun(explorer, args.repeats)
            print(f"  slider move, layer     {moves['layer']:8.1f} ms   (goal < 50 ms) [{load()}]")
            print(f"  slider move, method    {moves['method']:8.1f} ms")
            print(f"  slider move, opacity   {moves['opacity']:8.1f} ms")
            print(
                f"  explain one layer again per move + draw (no stored maps) {rerun:8.1f} ms = "
                f"{rerun / moves['layer']:.0f}x a layer move"
            )
        del explorer


if __name__ == "__main__":
    main()
