"""Servers and a headless Chromium for the explorer's browser tests (tests/test_browser.py).

Debian's ``chromium`` package provides the browser (``apt-get install -y chromium``); Playwright
for Python drives it through ``executable_path``, so Playwright's own browser download (which needs
a network the CI machine may not have) is never used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path(os.environ.get("CAMKIT_CHROMIUM", "/usr/bin/chromium"))

#: Flags for a headless Chromium in a container: no sandbox (root), no GPU, no background traffic.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def skip_reason(server: str) -> str | None:
    """Why a browser test of ``server`` ("jupyter-lab" or "voila") cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found; install it with `apt-get install -y chromium`"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed; pip install playwright (no `playwright install` needed)"
    if shutil.which(server, path=str(Path(sys.executable).parent)) is None:
        package = "voila" if server == "voila" else "jupyterlab"
        return f"{server} not found next to {sys.executable}; pip install {package}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers: up (a 403 or 404 is the server's own answer)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def server(
    command: list[str],
    ready_url: str,
    log: Path,
    timeout: float = 90,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own process group until the block ends; wait until it answers.

    ``ready_url`` should be cheap to fetch: any HTTP answer counts as ready. The block gets the
    server's process (its kernels are its children: :func:`kernels_of`).
    """
    environment = dict(os.environ, PYTHONUNBUFFERED="1")
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
            cwd=cwd,
        )
    try:
        _wait_for(ready_url, process, log, timeout)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def jupyter_lab(root: Path, port: int, token: str) -> list[str]:
    """The command line of a JupyterLab on 127.0.0.1 only, with a token, as root if need be."""
    return [
        str(Path(sys.executable).parent / "jupyter-lab"),
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",  # no request for news
        "--LabServerApp.workspaces_dir=" + str(root / ".workspaces"),
    ]


def voila(notebook: Path, port: int, token: str) -> list[str]:
    """The command line of a Voilà page for one notebook, on 127.0.0.1 only, with a token."""
    return [
        str(Path(sys.executable).parent / "voila"),
        str(notebook),
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",
        f"--Voila.token={token}",
    ]


def kernels_of(server_pid: int) -> list[int]:
    """The process ids of the ipykernel processes a server started (its children, Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if int(fields[1]) == server_pid and b"ipykernel" in command:
            found.append(int(entry.name))
    return sorted(found)


def memory_mb(pid: int) -> dict[str, float]:
    """A process's resident memory now (VmRSS) and at its peak (VmHWM), in MB (Linux)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def environment_of(pid: int, names: tuple[str, ...]) -> dict[str, str]:
    """Some environment variables of a running process (Linux)."""
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = dict(pair.decode(errors="replace").partition("=")[::2] for pair in pairs if pair)
    return {name: found.get(name, "(unset)") for name in names}


def thread_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))
