"""The explorer page (camkit export-explorer): how large, how long to write, how fast in a browser.

Writes the default page (the four sample pictures on EfficientNet-Lite0, every layer, one-pass
method and top-5 class), then opens it from disk in headless Chromium (Debian's ``chromium``,
driven by Playwright) and presses each control's arrow key, waiting for each painted frame. The
page measures each move itself with ``performance.now()``: from the keydown event to a message
posted from the animation frame that drew the change, which runs once that frame is painted.
Prints the median, fastest and slowest per control, the drawing alone, and the 1-minute load
average (the machine is shared: read the numbers with it).

Usage: python benchmarks/bench_explorer_page.py [--page explorer.html] [--moves 30]
(``--page`` times an existing page instead of writing one.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import browser_helpers as helpers

#: (control, CSS selector, keys pressed in turn): each key moves the control by one step.
CONTROLS = [
    ("layer", "#layer", ["ArrowLeft", "ArrowRight"]),
    ("method", "input[name=method]:checked", ["ArrowRight"]),
    ("class", "input[name=class]:checked", ["ArrowRight"]),
    ("picture", "input[name=picture]:checked", ["ArrowRight"]),
    ("opacity", "#opacity", ["ArrowLeft", "ArrowRight"]),
    ("colormap", "input[name=colormap]:checked", ["ArrowRight"]),
]


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)"


def write_default_page(folder: Path) -> Path:
    import camkit

    start = time.perf_counter()
    path = camkit.export_explorer(out=folder / "explorer.html", progress=True)
    seconds = time.perf_counter() - start
    print(
        f"default page: {path.stat().st_size / 1e6:.1f} MB, written in {seconds:.1f} s "
        f"(loading the model included; {load()})"
    )
    return path


def time_page(path: Path, moves: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(helpers.CHROMIUM), args=helpers.CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        start = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_function("() => window.camkitExplorer && camkitExplorer.frames() > 0")
        print(f"page opened and first frame drawn in {time.perf_counter() - start:.2f} s")
        print(
            f"{'control':<10} {'median':>8} {'min':>8} {'max':>8} {'draw':>8}   (ms, {moves} moves)"
        )
        for control, selector, keys in CONTROLS:
            page.evaluate("() => { camkitExplorer.timings.length = 0; }")
            for move in range(moves):
                count = page.evaluate("() => camkitExplorer.timings.length")
                page.focus(selector)
                page.keyboard.press(keys[(move // 3) % len(keys)])  # to and fro, three at a time
                page.wait_for_function(
                    "(count) => camkitExplorer.timings.length > count", arg=count
                )
            timings = page.evaluate("() => camkitExplorer.timings")
            times = [entry["ms"] for entry in timings]
            draws = [entry["draw_ms"] for entry in timings]
            print(
                f"{control:<10} {statistics.median(times):8.1f} {min(times):8.1f} "
                f"{max(times):8.1f} {statistics.median(draws):8.1f}"
            )
        print(
            f"requests: {len(requests)} ({'the file only' if requests == [page.url] else requests})"
        )
        print(load())
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=Path, default=None, help="an existing page to time")
    parser.add_argument("--moves", type=int, default=30, help="key presses per control")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = arguments.page or write_default_page(Path(folder))
        time_page(path.resolve(), arguments.moves)


if __name__ == "__main__":
    main()
