"""What `import camkit` and `camkit --help` cost next to `import torch`, and that they are quiet.

Each case is a fresh Python process (nothing cached in memory), timed from start to exit. The
cases run interleaved, round after round, so that machine noise hits all of them alike; the
table gives the medians and their ratios to `import torch`, with the goals of issue 16:

    import camkit   <= 1.3 x import torch
    camkit --help   <= 1.5 x python -c "import torch"

Then two checks that importing camkit prints nothing: in a plain process with every warning
shown (``-W always``), and, when jupyter_client and ipykernel are installed, in a real Jupyter
kernel (where tqdm.auto would print "IProgress not found" if camkit imported it).

    python benchmarks/bench_import.py            # 9 rounds
    python benchmarks/bench_import.py --rounds 5

Exit status 1 when a goal is missed or a check fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

#: Modules camkit should import only when used (reported, not judged, here).
OPTIONAL = ("torchvision", "matplotlib", "scipy", "tqdm", "ipywidgets", "IPython", "click")

#: Ratio goals against `import torch`.
GOALS = {"import camkit": 1.3, "camkit --help": 1.5}


def commands() -> dict[str, list[str]]:
    script = shutil.which("camkit")
    help_command = [script, "--help"] if script else [sys.executable, "-m", "camkit.cli", "--help"]
    return {
        "import torch": [sys.executable, "-c", "import torch"],
        "import camkit": [sys.executable, "-c", "import camkit"],
        "camkit --help": help_command,
    }


def time_once(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def measure(rounds: int) -> dict[str, list[float]]:
    cases = commands()
    for command in cases.values():  # warm the file cache; not counted
        time_once(command)
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for round_index in range(rounds):
        shift = round_index % len(names)  # rotate the order too: no case is always first
        for name in names[shift:] + names[:shift]:
            times[name].append(time_once(cases[name]))
    return times


def _loaded(code: str) -> set[str]:
    """Which of :data:`OPTIONAL` a fresh process has imported after running ``code``."""
    probe = f"import sys; {code}; print(','.join(m for m in {OPTIONAL!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return set(filter(None, result.stdout.strip().split(",")))


def quiet_import() -> tuple[bool, str]:
    """Import camkit with every warning shown; return (quiet, what it printed + modules)."""
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", "import camkit"],
        capture_output=True,
        text=True,
        check=False,
    )
    by_torch = _loaded("import torch")
    extra = sorted(_loaded("import camkit") - by_torch)
    modules = (
        f"optional modules camkit imports beyond torch's own: {', '.join(extra) or 'none'}"
        f" (torch itself imports {', '.join(sorted(by_torch)) or 'none of them'})"
    )
    quiet = result.returncode == 0 and result.stderr == ""
    return quiet, f"{result.stderr.strip() or 'nothing printed'}; {modules}"


def quiet_in_a_kernel(code: str = "import camkit") -> tuple[bool | None, str]:
    """Run ``code`` (import camkit) in a real IPython kernel; ``None`` when none can start here.

    Both what the kernel sends to the notebook (its stream and error messages) and what its
    process writes to the terminal are read.
    """
    try:
        from jupyter_client.manager import KernelManager
    except ImportError:
        return None, "jupyter_client not installed: skipped"
    printed: list[str] = []
    with tempfile.TemporaryFile(mode="w+") as terminal:
        # IPC sockets: over TCP the kernel itself warns that its traffic is not encrypted.
        manager = KernelManager(kernel_name="python3", transport="ipc")
        try:
            manager.start_kernel(stderr=terminal, stdout=terminal)
        except Exception as error:  # no ipykernel, no kernelspec: nothing to check here
            return None, f"no kernel could start ({type(error).__name__}): skipped"
        client = manager.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=120)
            client.execute(code, store_history=False)
            while True:
                message = client.get_iopub_msg(timeout=120)
                kind, content = message["msg_type"], message["content"]
                if kind == "stream":
                    printed.append(content["text"])
                elif kind == "error":
                    printed.append(f"{content['ename']}: {content['evalue']}")
                elif kind == "status" and content["execution_state"] == "idle":
                    break
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
        terminal.seek(0)
        printed.append(terminal.read())
    text = "".join(printed).strip()
    return text == "", text or "nothing printed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="rounds of the three cases")
    args = parser.parse_args()

    import torch  # only for the header line

    print(
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
        f"median of {args.rounds} interleaved runs, each a fresh process\n"
    )
    times = measure(args.rounds)
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["import torch"]
    ok = True
    print("| case | median s | min s | max s | ratio to import torch | goal |")
    print("|---|---:|---:|---:|---:|---|")
    for name, values in times.items():
        ratio = medians[name] / base
        goal = GOALS.get(name)
        verdict = ""
        if goal is not None:
            met = ratio <= goal
            ok &= met
            verdict = f"<= {goal}x: {'met' if met else 'MISSED'}"
        print(
            f"| {name} | {medians[name]:.2f} | {min(values):.2f} | {max(values):.2f} | "
            f"{ratio:.2f}x | {verdict} |"
        )
    quiet, text = quiet_import()
    ok &= quiet
    print(f"\nimport camkit with -W always: {'quiet' if quiet else 'NOT QUIET'} ({text})")
    kernel_quiet, kernel_text = quiet_in_a_kernel()
    if kernel_quiet is not None:
        ok &= kernel_quiet
        verdict = "quiet" if kernel_quiet else "NOT QUIET"
        print(f"import camkit in a Jupyter kernel: {verdict} ({kernel_text})")
    else:
        print(f"import camkit in a Jupyter kernel: {kernel_text}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
