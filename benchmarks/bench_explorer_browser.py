"""The explorer as a learner meets it: from a key press or click to the new picture painted.

Starts JupyterLab on 127.0.0.1 (a token, a temporary folder holding one notebook with
``camkit.Explorer()``), opens it in headless Chromium (Debian's ``chromium`` through Playwright),
runs the cell, then drives each control and measures in the page, with the browser's own clock,
the time from the key press (or click) to the moment the new picture is decoded and painted
(the next animation frame after ``img.decode()``). Besides the median per control it prints the
bytes of the PNG per frame and the 1-minute load average while each control was measured: on a
shared machine, the load says how far a number is from a quiet one.

Usage: python benchmarks/bench_explorer_browser.py [--presses 15]
Needs: apt-get install -y chromium; pip install playwright jupyterlab (no `playwright install`).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import browser_helpers as helpers

#: Installed in the page: the time of the last key press or click, and one entry per new picture.
PROBE = """() => {
  const picture = document.querySelectorAll('.widget-image')[0];
  window.camkitTimes = {start: 0, frames: [], bytes: []};
  const started = () => { window.camkitTimes.start = performance.now(); };
  document.addEventListener('keydown', started, true);
  document.addEventListener('pointerdown', started, true);
  document.addEventListener('change', started, true);
  new MutationObserver(() => {
    const start = window.camkitTimes.start;
    picture.decode().then(() => requestAnimationFrame(() => {
      window.camkitTimes.frames.push(performance.now() - start);
    }));
    fetch(picture.src).then(r => r.blob()).then(b => window.camkitTimes.bytes.push(b.size));
  }).observe(picture, {attributes: true, attributeFilter: ['src']});
}"""

NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "explorer",
            "metadata": {},
            "outputs": [],
            "source": [
                "import camkit\n",
                "explorer = camkit.Explorer(tutorial_models=False)\n",
                "explorer",
            ],
        }
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def frames(page) -> int:
    return int(page.evaluate("() => window.camkitTimes.frames.length"))


def act_and_wait(page, action, timeout: float = 20.0) -> float:
    """Do one action; return the ms from its key press or click to the new picture painted.

    Returns NaN when no new picture came within ``timeout`` seconds (counted as missed).
    """
    count = frames(page)
    action()
    try:
        page.wait_for_function(
            f"() => window.camkitTimes.frames.length > {count}",
            timeout=timeout * 1000,
            polling=10,
        )
    except Exception:  # Playwright's TimeoutError
        print(f"  (no new picture within {timeout:.0f} s)", flush=True)
        return float("nan")
    time.sleep(0.15)  # let the kernel settle, so presses are timed one by one, not coalesced
    return float(page.evaluate(f"() => window.camkitTimes.frames[{count}]"))


def measure(page, presses: int) -> dict[str, tuple[list[float], float]]:
    results: dict[str, tuple[list[float], float]] = {}
    layer = page.locator(".widget-hslider", has_text="Layer").first.locator(".noUi-handle")
    layer.focus()
    times = [act_and_wait(page, lambda: layer.press("ArrowLeft")) for _ in range(presses)]
    results["layer (arrow key)"] = (times, os.getloadavg()[0])
    print("layer done", flush=True)
    opacity = page.locator(".widget-hslider", has_text="Opacity").first.locator(".noUi-handle")
    opacity.focus()
    times = [
        act_and_wait(page, lambda i=i: opacity.press("ArrowLeft" if i % 2 else "ArrowRight"))
        for i in range(presses)
    ]
    results["opacity (arrow key)"] = (times, os.getloadavg()[0])
    buttons = page.locator(".widget-toggle-buttons", has_text="Method").first.locator("button")
    names = buttons.all_inner_texts()
    for name in names:  # each method's first visit runs the model once: not timed here
        act_and_wait(page, lambda name=name: buttons.filter(has_text=name).first.click())
    times = []
    for i in range(presses):
        target = buttons.nth((i + 1) % 2)  # Grad-CAM and Grad-CAM++, back and forth
        times.append(act_and_wait(page, target.click))
    results["method (click)"] = (times, os.getloadavg()[0])
    colours = page.locator(".widget-toggle-buttons", has_text="Colours").first.locator("button")
    times = [act_and_wait(page, colours.nth((i + 1) % 2).click) for i in range(presses)]
    results["colours (click)"] = (times, os.getloadavg()[0])
    select = page.locator(".widget-dropdown", has_text="Class").first.locator("select")
    options = select.locator("option").all_inner_texts()
    times = []
    for i in range(min(presses, 6)):  # a class change runs the model (stored after the first)
        label = options[(i + 1) % 2]
        times.append(act_and_wait(page, lambda label=label: select.select_option(label=label)))
    results["class (select, first is a model pass)"] = (times, os.getloadavg()[0])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=15)
    args = parser.parse_args()
    reason = helpers.skip_reason("jupyter-lab")
    if reason:
        raise SystemExit(reason)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "explorer.ipynb").write_text(json.dumps(NOTEBOOK))
        port, token = helpers.free_port(), secrets.token_hex(16)
        command = helpers.jupyter_lab(root, port, token)
        status = f"http://127.0.0.1:{port}/api/status?token={token}"
        with helpers.server(command, status, root / "lab.log"), sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(helpers.CHROMIUM), args=helpers.CHROMIUM_ARGS, headless=True
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/explorer.ipynb?token={token}")
            page.locator(".jp-Notebook").first.wait_for(timeout=120_000)
            page.wait_for_function(
                "() => document.querySelector('#jp-main-statusbar').innerText.includes('| Idle')",
                timeout=120_000,
            )
            page.locator(".jp-Notebook").first.click()
            page.keyboard.press("Shift+Enter")
            page.wait_for_function(
                "() => document.body.innerText.includes('EfficientNet-Lite0 \\u00b7 layer')",
                timeout=180_000,
            )
            page.locator(".widget-image").first.wait_for(timeout=60_000)
            page.evaluate(PROBE)
            results = measure(page, args.presses)
            sizes = page.evaluate("() => window.camkitTimes.bytes")
            browser.close()
    print(
        f"Browser-measured, key press or click to new picture painted (Chromium headless, "
        f"JupyterLab, EfficientNet-Lite0, {os.cpu_count()} CPUs); PNG per frame: median "
        f"{statistics.median(sizes) / 1000:.0f} kB"
    )
    for control, (measured, load) in results.items():
        times = [t for t in measured if t == t]  # NaN: no new picture came
        if not times:
            print(f"  {control:<40} no picture arrived in {len(measured)} tries")
            continue
        print(
            f"  {control:<40} median {statistics.median(times):6.1f} ms  "
            f"({min(times):.0f}-{max(times):.0f}, n={len(times)} of {len(measured)})  "
            f"[load {load:.1f}]"
        )


if __name__ == "__main__":
    main()
