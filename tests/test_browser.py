"""The explorer in a real browser: JupyterLab and a Voilà page, driven by headless Chromium.

Each test serves a copy of notebooks/05_explorer.ipynb on 127.0.0.1 with a token, runs it, moves
the layer slider with the keyboard, and checks that the layer label and the picture change; then
switches to EfficientNet-Lite2 and checks that a busy sign shows at once, with the controls
disabled, until the caption names Lite2 (the time it took and the kernel's memory are printed:
run with -s to see them). The Voilà test serves the lesson with its notebooks/voila.json: the page
must show no test output and no answers, and a closed tab's kernel must go away (a short cull
timeout here). The screenshots go to pytest's temporary folder, or to $CAMKIT_SCREENSHOT_DIR.

Needs Debian's chromium (``apt-get install -y chromium``), Playwright for Python and Voilà;
without them the tests skip with a one-line reason. About a minute each on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path

import pytest

from tests import browser_helpers as helpers

LAB, VOILA = helpers.skip_reason("jupyter-lab"), helpers.skip_reason("voila")
pytestmark = pytest.mark.browser

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_explorer.ipynb"
LABEL = re.compile(r"^(\d+)/(\d+) (\S+) \(")


def screenshot_folder(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CAMKIT_SCREENSHOT_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def layer_label(page) -> str:
    """The text beside the layer slider: "13/21 _blocks.10 (MBConvBlock, 112x14x14)"."""
    row = page.locator(".widget-hbox", has=page.locator(".widget-hslider", has_text="Layer"))
    return " ".join((row.first.locator("div.widget-label").text_content() or "").split())


def switch_to_lite2_and_time(page, server_pid: int, where: str) -> float:
    """Pick EfficientNet-Lite2; the busy sign must show before the caption names Lite2."""
    kernel = helpers.kernels_of(server_pid)[0]
    before = helpers.memory_mb(kernel)
    select = page.locator(".widget-dropdown", has_text="Model").first.locator("select")
    started = time.monotonic()
    select.select_option("EfficientNet-Lite2")
    page.wait_for_function("() => document.body.innerText.includes('\u231b')", timeout=30_000)
    busy_after = time.monotonic() - started
    disabled = select.is_disabled()
    page.wait_for_function(
        "() => document.body.innerText.includes('EfficientNet-Lite2 \u00b7 layer')"
        " && !document.body.innerText.includes('\u231b')",
        timeout=120_000,
        polling=20,
    )
    switched = time.monotonic() - started
    after = helpers.memory_mb(kernel)
    settings = helpers.environment_of(
        kernel, ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "VOILA_KERNEL_ID")
    )
    load = os.getloadavg()[0]
    print(
        f"\n[{where}] Lite2 switch: busy sign after {busy_after:.2f} s, caption names Lite2 after "
        f"{switched:.2f} s (load {load:.1f}); kernel RSS {before['VmRSS']:.0f} MB before, "
        f"{after['VmRSS']:.0f} MB after (peak {after['VmHWM']:.0f} MB); kernel threads "
        f"{helpers.thread_count(kernel)}; kernel env {settings}"
    )
    assert disabled, "the model dropdown stayed enabled while the model ran"
    assert not select.is_disabled()
    return switched


def stable_layer_label(page, rest: float = 1.5, timeout: float = 60) -> str:
    """The layer label once it has not changed for `rest` seconds."""
    deadline = time.monotonic() + timeout
    label, since = layer_label(page), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = layer_label(page)
        if now != label:
            label, since = now, time.monotonic()
        elif time.monotonic() - since >= rest:
            return label
    raise AssertionError(f"the layer label kept changing for {timeout:.0f} s (last {label!r})")


def move_layer_slider_and_check(page, folder: Path, name: str) -> None:
    """Press the slider's left arrow 6 times; the label and the picture must follow."""
    picture = page.locator(".widget-image").first
    wait_until(lambda: LABEL.match(layer_label(page)) is not None, 60, "the layer label")
    # The label is redrawn by the widget's drawing thread: on a slow machine it can still show an
    # earlier layer for a moment after the lesson's cells moved the slider. Wait until it rests.
    before_label = stable_layer_label(page)
    picture.scroll_into_view_if_needed()
    before = picture.screenshot()
    page.screenshot(path=str(folder / f"{name}-before.png"))
    handle = page.locator(".widget-hslider", has_text="Layer").first.locator(".noUi-handle")
    handle.focus()
    for _ in range(6):
        handle.press("ArrowLeft")
    wait_until(lambda: layer_label(page) != before_label, 30, "the layer label to change")
    wait_until(lambda: picture.screenshot() != before, 30, "the picture to change")
    after_label = stable_layer_label(page)
    first, second = LABEL.match(before_label), LABEL.match(after_label)
    assert first and second, (before_label, after_label)
    assert int(second[1]) == int(first[1]) - 6, (before_label, after_label)
    assert second[3] != first[3]  # another layer's name
    page.screenshot(path=str(folder / f"{name}-after.png"))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(helpers.CHROMIUM), args=helpers.CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


def served_copy(tmp_path: Path) -> Path:
    """A copy of the lesson in an empty folder, so running it never touches the repository."""
    root = tmp_path / "served"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    shutil.copy(NOTEBOOK.parent / "voila.json", root / "voila.json")  # the lesson reads it
    return root


@pytest.mark.skipif(LAB is not None, reason=LAB or "")
def test_explorer_in_jupyterlab(browser, tmp_path: Path) -> None:
    root = served_copy(tmp_path)
    settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port, token = helpers.free_port(), secrets.token_hex(16)
    command = [
        *helpers.jupyter_lab(root, port, token),
        f"--LabServerApp.user_settings_dir={root / '.settings'}",
    ]
    folder = screenshot_folder(tmp_path)
    with helpers.server(
        command, f"http://127.0.0.1:{port}/api/status?token={token}", tmp_path / "lab.log"
    ) as process:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK.name}?token={token}")
        status = page.locator("#jp-main-statusbar")
        idle = lambda: "| Idle" in status.inner_text()  # noqa: E731
        wait_until(idle, 120, "the kernel to be idle")
        page.locator(".lm-MenuBar-itemLabel", has_text="Edit").click()
        page.locator(".lm-Menu-itemLabel", has_text="Clear Outputs of All Cells").click()
        assert page.locator(".widget-image").count() == 0
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        page.locator(".widget-image").first.wait_for(timeout=120_000)
        wait_until(idle, 120, "the notebook to finish")
        errors = page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
        )
        tracebacks = [
            text for text in errors.all_inner_texts() if "Traceback" in text or "Error" in text
        ]
        assert not tracebacks, tracebacks[:1]
        move_layer_slider_and_check(page, folder, "jupyterlab")
        switch_to_lite2_and_time(page, process.pid, "JupyterLab")
        page.close()


#: Text the Voilà page must not show: the lesson's checks and the exercises' answers.
NOT_ON_THE_PAGE = (
    "hooks left: 0",  # the check that slider moves never run the model
    "forward passes, one each",
    "the explorer's map equals camkit.explain's",
    "channels on a",  # the layer shapes check
    "Voilà skips",  # the check of voila.json itself
    "Explorer(model=",  # print(explorer), after the exercise
    "Right:",  # a checker's verdict
    "Not yet",
    "my_peak =",
)


@pytest.mark.skipif(VOILA is not None, reason=VOILA or "")
def test_explorer_as_a_voila_page(browser, tmp_path: Path) -> None:
    root = served_copy(tmp_path)
    settings = json.loads((NOTEBOOK.parent / "voila.json").read_text())
    assert settings["MappingKernelManager"]["cull_connected"] is False
    port, token = helpers.free_port(), secrets.token_hex(16)
    # voila.json is read from the folder Voilà starts in; only the cull timings are shortened.
    command = [
        *helpers.voila(root / NOTEBOOK.name, port, token),
        "--MappingKernelManager.cull_idle_timeout=20",
        "--MappingKernelManager.cull_interval=5",
    ]
    folder = screenshot_folder(tmp_path)
    ready = f"http://127.0.0.1:{port}/voila/static/missing.txt"  # not "/", which runs the notebook
    log = tmp_path / "voila.log"
    with helpers.server(command, ready, log, timeout=180, cwd=root) as process:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/?token={token}", timeout=180_000)
        page.locator(".widget-image").first.wait_for(timeout=180_000)
        page.wait_for_function(
            "() => document.body.innerText.includes('Exercise 2')", timeout=180_000
        )
        text = page.inner_text("body")
        assert "explorer = camkit.Explorer()" not in text  # the students see no code
        assert "What to try in class" in text and "EfficientNet-Lite0" in text
        shown = [phrase for phrase in NOT_ON_THE_PAGE if phrase in text]
        assert not shown, f"the Voilà page shows test output or answers: {shown}"
        page.screenshot(path=str(folder / "voila-page.png"), full_page=True)
        move_layer_slider_and_check(page, folder, "voila")
        switch_to_lite2_and_time(page, process.pid, "Voila")
        kernels = helpers.kernels_of(process.pid)
        assert len(kernels) == 1, kernels
        page.close()  # the student closes the tab
        wait_until(
            lambda: not helpers.kernels_of(process.pid), 120, "the closed tab's kernel to go"
        )
        assert "Culling" in log.read_text(), "the kernel went, but not by the idle culler"
