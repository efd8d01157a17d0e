"""camkit against the libraries users would pick instead, side by side in one run.

For every CAM method that camkit shares with another library, on ResNet-50 (``weights=None``,
layer4) and the pretrained offline EfficientNet-Lite0 (``_bn1``, its last feature map), batch 1
and 8: median seconds per call over repeated runs (after warm-up), interleaved so that machine
noise hits every library alike; the ratio to the floor; peak memory; and the Pearson correlation
of each library's maps with camkit's after the same bilinear upsampling and per-image min-max
normalisation. Every library gets the same model object, input tensor, layer and target classes
(each image's top class, computed once beforehand), and is timed up to the same deliverable: one
map per image at the input's size, in [0, 1].

The floor is what a Grad-CAM-style library does when it records the autograd graph of the whole
forward, as the peers do: the model's forward pass with the layer's output captured, then
``torch.autograd.grad`` of the summed target scores to it, on the input as the user gives it
(contiguous NCHW). camkit records the graph only from the explained layer on, so it can come in
under it; the no-grad forward is the true lower bound. The same floor on a channels-last copy of the
input is printed too (``channels_last=True`` in camkit), since that layout speeds up some
models' convolutions on CPU and slows others. Eigen-CAM needs no gradient:
its floor is one forward pass under ``torch.no_grad()``.

Memory: on CPU, the growth of the peak resident set size (VmHWM after resetting it, Linux) during
the first call of each library in a fresh subprocess, so that no library's allocations are
counted against another's; on CUDA, ``torch.cuda.max_memory_allocated`` above the memory in use
before the call, in the timing process.

    .venv/bin/python benchmarks/compare_libraries.py                 # the full table
    .venv/bin/python benchmarks/compare_libraries.py --quick         # batch 1, 3 repeats, no memory
    .venv/bin/python benchmarks/compare_libraries.py --per-channel   # + Score-CAM and Ablation-CAM
    .venv/bin/python benchmarks/compare_libraries.py --threads 1 --clock cpu  # on a shared machine

On a machine that other jobs share, wall-clock times of multi-threaded runs vary several-fold
from run to run; one thread and the process's CPU time (``--threads 1 --clock cpu``) measure the
work each library does to within a few per cent.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from bench_core import floor, forward_only, measure
from bench_perturbation import SAMPLE, pearson
from torch import nn

import camkit
from camkit._inputs import Preprocessing, prepare_batch
from camkit.perturbation import DEFAULT_BATCH_SIZE

Runner = Callable[[], torch.Tensor]

#: The gradient and activation methods camkit shares with at least one other library.
METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam")
#: Each peer's class for each method it implements.
GRAD_CAM = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "eigencam": "EigenCAM",
}
TORCH_CAM = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMpp",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
}
PYTORCH_GRADCAM = {"gradcam": "GradCAM", "gradcam++": "GradCAMpp"}
#: Where a peer's map differs from camkit's by definition, not by error (see benchmarks/README.md).
DIFFERENT_DEFINITION = {
    ("pytorch-gradcam", "gradcam++"): "other formula: sum of A*G^3",
    ("torch-cam", "gradcam++"): "other formula: alpha = G^2",
}
OPTIONS = set(inspect.signature(camkit.explain).parameters)


def normalised_maps(cams: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) maps upsampled bilinearly to ``size``, then min-max per map, as camkit does."""
    maps = F.interpolate(cams[:, None].float(), size=size, mode="bilinear", align_corners=False)
    maps = maps[:, 0]
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1), 0.0)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the peers' deprecation warnings and progress bars during a call."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------------------------
# One runner per library: each returns the (B, H, W) maps it computed, normalised to [0, 1]
# --------------------------------------------------------------------------------------------


def camkit_runner(
    model: nn.Module, x: torch.Tensor, layer: str, targets: list[int], method: str, **options: bool
) -> Runner:
    options = {key: value for key, value in options.items() if key in OPTIONS}

    def run() -> torch.Tensor:
        explanation = camkit.explain(
            model, x, methods=method, layers=layer, target=targets, progress=False, **options
        )
        return explanation.maps[(layer, method)]

    return run


def grad_cam_runner(
    model: nn.Module, x: torch.Tensor, layer: str, targets: list[int], method: str
) -> Runner:
    """pytorch-grad-cam: the object is built and released in each call, as its README does."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    kind = getattr(pytorch_grad_cam, GRAD_CAM[method])
    module = dict(model.named_modules())[layer]
    wanted = [ClassifierOutputTarget(t) for t in targets]

    def run() -> torch.Tensor:
        with quiet(), kind(model=model, target_layers=[module]) as cam:
            maps = cam(input_tensor=x, targets=wanted)
        return torch.from_numpy(maps)

    return run


def torch_cam_runner(
    model: nn.Module, x: torch.Tensor, layer: str, targets: list[int], method: str
) -> Runner:
    """torch-cam: hooks set on entering the extractor; the user's forward runs inside it."""
    from torchcam import methods

    kind = getattr(methods, TORCH_CAM[method])
    size = (int(x.shape[-2]), int(x.shape[-1]))

    def run() -> torch.Tensor:
        with quiet(), kind(model, layer, input_shape=tuple(x.shape[1:])) as extractor:
            scores = model(x)
            cams = extractor(class_idx=targets, scores=scores)
        return normalised_maps(cams[0], size)

    return run


def captum_runner(
    model: nn.Module, x: torch.Tensor, layer: str, targets: list[int], find_top: bool
) -> Runner:
    """Captum's LayerGradCam, which must be told the class: ``find_top`` adds the forward for it."""
    from captum.attr import LayerGradCam

    module = dict(model.named_modules())[layer]
    size = (int(x.shape[-2]), int(x.shape[-1]))

    def run() -> torch.Tensor:
        wanted = targets
        if find_top:
            with torch.no_grad():
                wanted = model(x).argmax(dim=1).tolist()
        with quiet():
            attribution = LayerGradCam(model, module).attribute(
                x, target=wanted, relu_attributions=True
            )
        return normalised_maps(attribution[:, 0].detach(), size)

    return run


def pytorch_gradcam_runner(
    model: nn.Module, x: torch.Tensor, layer: str, targets: list[int], method: str
) -> Runner:
    """pytorch-gradcam 0.2.1 (the tutorial's package): one image per call, so a loop for a batch.

    Its hooks can never be removed, so it gets a private copy of the model (same weights); the
    object is built once, as in the tutorial.
    """
    import gradcam

    private = copy.deepcopy(model)
    with quiet():
        cam = getattr(gradcam, PYTORCH_GRADCAM[method])(
            private, dict(private.named_modules())[layer]
        )

    def run() -> torch.Tensor:
        masks = []
        with quiet():
            for image, target in zip(x.split(1), targets, strict=True):
                mask, _ = cam(image, class_idx=target)
                masks.append(mask[:, 0])
        return torch.cat(masks)

    return run


# --------------------------------------------------------------------------------------------
# The cases of one configuration
# --------------------------------------------------------------------------------------------


@dataclass
class Config:
    """One model at one batch size, with the input and the targets every library gets."""

    name: str
    model: nn.Module
    x: torch.Tensor
    layer: str
    targets: list[int]
    device: torch.device


@dataclass
class Case:
    """One timed callable: a library computing one method, or a floor."""

    name: str
    method: str | None  # None for the floors
    library: str
    make: Callable[[], Runner]


def load_config(name: str, batch: int, device: str) -> Config:
    """The model in eval mode, ``batch`` real images (or noise without the data), the targets."""
    if name == "lite0":
        loaded = camkit.load_model("efficientnet_lite0", device=device)
        model, preprocessing, layer = loaded.model.eval(), loaded.preprocessing, "_bn1"
    else:
        torch.manual_seed(0)
        model = torchvision.models.resnet50(weights=None).eval().to(device)
        preprocessing, layer = Preprocessing(), "layer4"
    images = sorted(SAMPLE.glob("*.JPEG"))[:batch]
    if len(images) == batch:
        x = prepare_batch([str(path) for path in images], preprocessing).tensor.to(device)
    else:
        torch.manual_seed(1)
        x = torch.randn(batch, 3, 224, 224, device=device)
    x = x.contiguous()  # the input as users give it: NCHW
    with torch.no_grad():
        targets = model(x).argmax(dim=1).tolist()
    return Config(name, model, x, layer, targets, torch.device(device))


def limit_threads(threads: int) -> None:
    """Run torch, the BLAS under NumPy and OpenCV on ``threads`` threads each.

    Without the BLAS limit, NumPy's OpenBLAS threads (pytorch-grad-cam's Eigen-CAM SVD) keep
    spinning after a call and their CPU time is charged to the case that runs next.
    """
    torch.set_num_threads(threads)
    for peer in ("pytorch_grad_cam", "torchcam", "captum", "gradcam"):
        installed(peer)  # loads every BLAS library a peer brings, before the limit below
    with contextlib.suppress(ImportError):
        import cv2

        cv2.setNumThreads(threads)
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)


def installed(module: str) -> bool:
    """Whether a peer library can be imported."""
    with quiet():
        try:
            __import__(module)
        except Exception:
            return False
    return True


def cases_for(config: Config, methods: list[str], amp: bool = False) -> list[Case]:
    """Every case for ``config``: the floors, then each method's libraries, camkit first.

    camkit also runs with ``channels_last=True`` (on CPU without ``amp``: Grad-CAM only) and,
    on CUDA or when ``amp``, with ``amp=True``.
    """
    model, x, layer, targets = config.model, config.x, config.layer, config.targets
    channels_last = x.contiguous(memory_format=torch.channels_last)
    cases = [
        Case("floor: forward + grad to layer", None, "floor", lambda: floor(model, x, [layer])),
        Case(
            "floor, channels-last input",
            None,
            "floor",
            lambda: floor(model, channels_last, [layer]),
        ),
        Case("forward only (no grad)", None, "floor", lambda: forward_only(model, x)),
    ]
    wanted = [{"channels_last": True}] + (
        [{"amp": True}, {"amp": True, "channels_last": True}]
        if amp or config.device.type == "cuda"
        else []
    )
    variants = [v for v in wanted if set(v) <= OPTIONS]  # the options this camkit has
    cuda = config.device.type == "cuda"
    peers = {
        "pytorch-grad-cam": installed("pytorch_grad_cam"),
        "torch-cam": installed("torchcam"),
        "captum": installed("captum"),
        "pytorch-gradcam": installed("gradcam"),
    }
    for method in methods:

        def add(library: str, make: Callable[[], Runner], label: str = "", m: str = method) -> None:
            cases.append(Case(f"{m}: {label or library}", m, library, make))

        add("camkit", lambda m=method: camkit_runner(model, x, layer, targets, m))
        for variant in variants:
            if variant == {"channels_last": True} and not (amp or cuda) and method != "gradcam":
                continue  # on CPU one method shows what the layout does; the run stays short
            label = ", ".join(f"{key}=True" for key in variant)
            add(
                "camkit",
                lambda m=method, v=variant: camkit_runner(model, x, layer, targets, m, **v),
                f"camkit, {label}",
            )
        if peers["pytorch-grad-cam"] and method in GRAD_CAM:
            add("pytorch-grad-cam", lambda m=method: grad_cam_runner(model, x, layer, targets, m))
        if peers["torch-cam"] and method in TORCH_CAM:
            add("torch-cam", lambda m=method: torch_cam_runner(model, x, layer, targets, m))
        if peers["captum"] and method == "gradcam":
            add("captum", lambda: captum_runner(model, x, layer, targets, False))
            add(
                "captum",
                lambda: captum_runner(model, x, layer, targets, True),
                "captum + forward for the top class",
            )
        if peers["pytorch-gradcam"] and method in PYTORCH_GRADCAM:
            label = "pytorch-gradcam 0.2.1" + (" (loop over images)" if len(targets) > 1 else "")
            add(
                "pytorch-gradcam",
                lambda m=method: pytorch_gradcam_runner(model, x, layer, targets, m),
                label,
            )
    return cases


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_rss_growth(run: Callable[[], object]) -> float:
    """MiB by which the peak resident set size rises above the current one during ``run()``."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
    before = _status_kib("VmRSS")
    run()
    return (_status_kib("VmHWM") - before) / 1024


def peak_cuda_growth(run: Callable[[], object], device: torch.device) -> float:
    """MiB of CUDA memory allocated above what was in use before ``run()``."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    run()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def memory_probe(spec: str) -> None:
    """Child process: build one case, print its peak memory growth on its first call as JSON."""
    name, batch, device, amp, case_name = spec.split("|", 4)
    config = load_config(name, int(batch), device)
    case = next(c for c in cases_for(config, list(METHODS), amp == "amp") if c.name == case_name)
    run = case.make()
    print(json.dumps({"mib": peak_rss_growth(run)}))


def memory_in_subprocess(config: Config, case: Case, amp: bool) -> float | None:
    """Run :func:`memory_probe` for one case in a fresh interpreter; None if it fails."""
    spec = f"{config.name}|{config.x.shape[0]}|{config.device}|{'amp' if amp else ''}|{case.name}"
    result = subprocess.run(
        [sys.executable, __file__, "--memory-probe", spec],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        return float(json.loads(result.stdout.strip().splitlines()[-1])["mib"])
    except (ValueError, IndexError, KeyError):
        return None


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def timing(run: Runner, seconds: list[tuple[float, float]], device: torch.device) -> Runner:
    """``run``, appending (wall, CPU) seconds of each call to ``seconds`` (after CUDA finished).

    The CPU seconds are the process's, all threads together: on a machine shared with other
    jobs they count the work done, not the time spent waiting for a core.
    """

    def timed() -> torch.Tensor:
        start, start_cpu = time.perf_counter(), time.process_time()
        output = run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append((time.perf_counter() - start, time.process_time() - start_cpu))
        return output

    return timed


def compare(config: Config, methods: list[str], args: argparse.Namespace) -> list[str]:
    """Time every case of ``config`` interleaved; return the Markdown table's rows."""
    size = (int(config.x.shape[-2]), int(config.x.shape[-1]))
    runners: dict[str, Runner] = {}
    maps: dict[str, torch.Tensor] = {}
    failed: dict[str, str] = {}
    timed: dict[str, list[tuple[float, float]]] = {}
    cases = cases_for(config, methods, args.amp)
    for case in cases:  # one run each for the maps; it also warms every case up
        try:
            runner = case.make()
            output = runner()
        except Exception as error:  # a peer that cannot run this model, layer or batch
            failed[case.name] = f"{type(error).__name__}: {str(error).splitlines()[0][:70]}"
            continue
        runners[case.name] = timing(runner, timed.setdefault(case.name, []), config.device)
        if case.method is not None:
            maps[case.name] = normalised_maps(output.detach().cpu(), size)
    measure(runners, args.repeats, args.warmup, config.device)  # type: ignore[arg-type]
    wall = {
        name: statistics.median(w for w, _ in runs[args.warmup :]) for name, runs in timed.items()
    }
    cpu = {
        name: statistics.median(c for _, c in runs[args.warmup :]) for name, runs in timed.items()
    }
    medians = cpu if args.clock == "cpu" else wall  # the clock of the ratios
    memory: dict[str, float | None] = {}
    if args.memory:
        for case in cases:
            if case.name not in runners:
                continue
            if config.device.type == "cuda":
                memory[case.name] = peak_cuda_growth(runners[case.name], config.device)
            else:
                memory[case.name] = memory_in_subprocess(config, case, args.amp)
    gradient_floor = medians["floor: forward + grad to layer"]
    forward_floor = medians["forward only (no grad)"]
    batch = config.x.shape[0]
    rows = []

    def mib(name: str) -> str:
        value = memory.get(name)
        return f"{value:.0f}" if value is not None else "-"

    for case in cases:
        if case.method is None and case.name in medians:
            ratio = medians[case.name] / gradient_floor
            rows.append(
                f"| {config.name} | {batch} | - | {case.name} | {wall[case.name] * 1000:.1f} "
                f"| {cpu[case.name] * 1000:.1f} | {ratio:.2f} | | {mib(case.name)} | |"
            )
    for method in methods:
        ours = f"{method}: camkit"
        base = forward_floor if method == "eigencam" else gradient_floor
        for case in (c for c in cases if c.method == method):
            if case.name in failed:
                rows.append(
                    f"| {config.name} | {batch} | {method} | {case.name.split(': ', 1)[1]} "
                    f"| failed: {failed[case.name]} | | | | | |"
                )
                continue
            value = medians[case.name]
            r = pearson(maps[case.name], maps[ours]) if ours in maps else float("nan")
            note = DIFFERENT_DEFINITION.get((case.library, method))
            if case.library == "camkit" and case.name != ours and ours in maps:
                difference = float((maps[case.name] - maps[ours]).abs().max())
                note = f"max abs difference {difference:.3f}"
            rows.append(
                f"| {config.name} | {batch} | {method} | {case.name.split(': ', 1)[1]} "
                f"| {wall[case.name] * 1000:.1f} | {cpu[case.name] * 1000:.1f} "
                f"| {value / base:.2f} | {value / medians[ours]:.2f} | {mib(case.name)} "
                f"| {r:.3f}{f' ({note})' if note else ''} |"
            )
    return rows


def amp_agreement(config: Config, methods: list[str], layers: list[str]) -> list[str]:
    """Rows of a table: per method and layer, how far ``amp=True`` maps are from float32 ones."""
    rows = []
    for layer in layers:
        options = {"methods": methods, "layers": layer, "target": config.targets}
        exact = camkit.explain(config.model, config.x, **options)
        mixed = camkit.explain(config.model, config.x, amp=True, **options)
        for method in methods:
            a, b = exact.maps[(layer, method)], mixed.maps[(layer, method)]
            r = min(pearson(a[i], b[i]) for i in range(a.shape[0]))
            rows.append(
                f"| {config.name} | {config.x.shape[0]} | {layer} | {method} | {r:.4f} "
                f"| {float((a - b).abs().max()):.3f} | {float((a - b).abs().mean()):.4f} |"
            )
    return rows


def verdicts(rows: list[str]) -> list[str]:
    """One line per (model, batch, method): camkit's ratio to the floor and to the fastest peer."""
    table: dict[tuple[str, str, str], dict[str, tuple[float, float]]] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if cells[2] == "-" or cells[4].startswith("failed"):
            continue
        table.setdefault((cells[0], cells[1], cells[2]), {})[cells[3]] = (
            float(cells[7]),  # time relative to camkit's, on the chosen clock
            float(cells[6]),
        )
    lines = []
    for (model, batch, method), libraries in table.items():
        ours, floor_ratio = libraries["camkit"]
        peers = {k: v[0] for k, v in libraries.items() if not k.startswith("camkit")}
        if not peers:
            continue
        fastest = min(peers, key=peers.__getitem__)
        verdict = "fastest" if ours < peers[fastest] else "NOT fastest"
        lines.append(
            f"- {model}, batch {batch}, {method}: camkit {floor_ratio:.2f}x floor; fastest peer "
            f"{fastest} is {peers[fastest] / ours:.2f}x camkit's time ({verdict})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1, 3 repeats, no memory")
    parser.add_argument("--models", nargs="+", default=["resnet50", "lite0"])
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--memory", action=argparse.BooleanOptionalAction, default=None, help="memory column"
    )
    parser.add_argument(
        "--per-channel",
        action="store_true",
        help="also Score-CAM and Ablation-CAM, batch 1 (bench_perturbation.py's comparison)",
    )
    parser.add_argument(
        "--amp-agreement",
        action="store_true",
        help="only compare camkit's amp=True maps with float32 ones (no timing)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads [all cores]")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="the clock of the ratios: wall time, or the process's CPU time (on a shared machine)",
    )
    parser.add_argument("--amp", action="store_true", help="amp=True rows on CPU too (bfloat16)")
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe)
        return
    if args.threads:
        limit_threads(args.threads)
    args.batches = args.batches or ([1] if args.quick else [1, 8])
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.warmup = 1
    args.memory = (not args.quick) if args.memory is None else args.memory
    versions = {}
    for package in ("grad-cam", "torchcam", "captum", "pytorch-gradcam"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = "not installed"
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; camkit "
        f"{camkit.__version__}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; median of {args.repeats} interleaved runs after {args.warmup + 1} warm-up runs; "
        f"ratios on the {args.clock} clock\n"
    )
    if args.amp_agreement:
        print(
            "| model | batch | layer | method | min r over images | max abs diff | mean abs diff |"
        )
        print("|---|---|---|---|---|---|---|")
        for name in args.models:
            for batch in args.batches:
                config = load_config(name, batch, args.device)
                extra = ["_swish"] if name == "lite0" else []  # the automatic layer too
                print("\n".join(amp_agreement(config, args.methods, [config.layer, *extra])))
        return
    header = [
        "| model | batch | method | library | wall ms | CPU ms | x floor | x camkit "
        "| peak MiB | r with camkit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(header), flush=True)
    rows: list[str] = []
    for name in args.models:
        for batch in args.batches:
            config = load_config(name, batch, args.device)
            new = compare(config, args.methods, args)
            print("\n".join(new), flush=True)
            rows.extend(new)
    print("\n" + "\n".join(verdicts(rows)))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    if args.per_channel:
        import bench_perturbation

        options = argparse.Namespace(
            quick=False,  # ResNet-50, not bench_perturbation's quick ResNet-18
            repeats=1 if args.quick else 3,
            batch_size=DEFAULT_BATCH_SIZE[torch.device(args.device).type],
            device=args.device,
            methods=["scorecam", "ablationcam"],
        )
        for name in args.models:  # Lite0 at its automatic layer `_swish` there
            bench_perturbation.bench("resnet" if name == "resnet50" else name, options)


if __name__ == "__main__":
    main()
