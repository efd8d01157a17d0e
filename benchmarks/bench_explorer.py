"""How fast the explorer answers: a slider move versus a model pass, on 2 CPU threads.

A slider move (layer, method or opacity) is timed from setting the control's value to the new PNG
bytes in the picture widget: it upsamples, normalises, colours and encodes one stored map. A class
change and a model change run one explain pass for every candidate layer. Beside them, the cost
of what a widget without stored maps does per move: explain one layer again, then draw.

The times leave out sending the PNG to the browser (a local websocket; Colab's is slower).
ResNet-50 runs with random weights here (its pretrained weights need a download): timing only,
its heatmaps mean nothing.

Usage: python benchmarks/bench_explorer.py [--repeats 5] [--models lite0,resnet50]
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
from camkit.widgets import Explorer


def median_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def build(name: str) -> tuple[Explorer, str]:
    if name == "lite0":
        return Explorer(image="water-bird", tutorial_models=False), "EfficientNet-Lite0"
    if name == "resnet50":
        loaded = camkit.LoadedModel(
            torchvision.models.resnet50(weights=None),
            camkit.Preprocessing(),
            None,
            "resnet50",
            False,
        )
        title = "ResNet-50"
        return Explorer(image="water-bird", models={title: loaded}, tutorial_models=False), title
    raise SystemExit(f"unknown model {name!r}; use lite0 or resnet50")


def time_moves(explorer: Explorer, repeats: int) -> dict[str, float]:
    """Median ms of layer, method and opacity moves, each drawing a picture not drawn before."""
    layers = len(explorer.layers)
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


def time_passes(explorer: Explorer, title: str, repeats: int) -> dict[str, float]:
    """Median ms of a class change and of a change back to ``title``, each one explain pass."""
    classes: list[float] = []
    models: list[float] = []
    options = [value for _, value in explorer.class_picker.options]
    other = next(name for name in explorer.model_picker.options if name != title)
    explorer.model_picker.value = other  # loaded once here, so the model change below is one pass
    explorer.model_picker.value = title
    for round_ in range(repeats):
        explorer._passes.clear()
        explorer._pngs.clear()
        started = time.perf_counter()
        explorer.class_picker.value = options[1 + round_ % (len(options) - 1)]
        classes.append(time.perf_counter() - started)
        explorer.model_picker.value = other
        explorer._passes.clear()
        explorer._pngs.clear()
        started = time.perf_counter()
        explorer.model_picker.value = title
        models.append(time.perf_counter() - started)
    assert explorer.message == "", explorer.message
    return {"class": median_ms(classes), "model": median_ms(models)}


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
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="lite0,resnet50")
    args = parser.parse_args()
    torch.set_num_threads(2)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import ipywidgets

    print(
        f"camkit {camkit.__version__}, torch {torch.__version__}, ipywidgets "
        f"{ipywidgets.__version__}, Python {platform.python_version()}; torch threads "
        f"{torch.get_num_threads()} on {os.cpu_count()} CPUs; load average {load:.1f}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; medians of "
        f"{args.repeats} rounds"
    )
    print("Times exclude sending the PNG to the browser.")
    for name in args.models.split(","):
        started = time.perf_counter()
        explorer, title = build(name.strip())
        first = time.perf_counter() - started
        weights = "random weights, timing only" if name == "resnet50" else "pretrained"
        print(
            f"\n{title} ({weights}): {len(explorer.layers)} layers x {len(explorer.methods)} "
            f"methods; first view (load, find layers, one pass, draw) {first:.2f} s"
        )
        moves = time_moves(explorer, args.repeats)
        passes = time_passes(explorer, title, args.repeats)
        rerun = time_rerun(explorer, args.repeats)
        print(f"  slider move, layer     {moves['layer']:8.1f} ms   (goal < 50 ms)")
        print(f"  slider move, method    {moves['method']:8.1f} ms")
        print(f"  slider move, opacity   {moves['opacity']:8.1f} ms")
        print(f"  class change (1 pass)  {passes['class']:8.1f} ms")
        print(f"  model change (1 pass)  {passes['model']:8.1f} ms")
        print(
            f"  explain one layer again per move + draw (no stored maps) {rerun:8.1f} ms = "
            f"{rerun / moves['layer']:.0f}x a layer move"
        )


if __name__ == "__main__":
    main()
