"""Score-CAM and Ablation-CAM speed: camkit against its floor and against the peer libraries.

For each model (ResNet-50 with random weights at layer4, the pretrained offline
EfficientNet-Lite0 at its last layer), one real image of ../shared/data/imagenet-sample, batch 1,
its top class: seconds per image (median of interleaved repeats), rows the model was run on,
distinct masks, and the ratio to the floor = distinct masks x one no-grad forward per image
(measured at camkit's batch size in the same run, with the input in channels-last layout as
camkit hands it to the model on the CPU; the plain NCHW floor is printed too). camkit also runs
with ``channels_last=False`` to show what the layout alone brings.
Peers: pytorch-grad-cam (ScoreCAM, AblationCAM) and torch-cam (ScoreCAM) at their default batch
sizes and at camkit's, same model, input, target and layer; ``r`` is the Pearson correlation
of each map with camkit's after the same upsampling and min-max normalisation.

    .venv/bin/python benchmarks/bench_perturbation.py            # ResNet-50 and Lite0, 3 repeats
    .venv/bin/python benchmarks/bench_perturbation.py --quick    # ResNet-18, 1 repeat
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import camkit
from camkit._inputs import Preprocessing, prepare_batch
from camkit.engine import PerturbationContext
from camkit.perturbation import DEFAULT_BATCH_SIZE, distinct_masks

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"
IMAGE = "n02110185_Siberian_husky.JPEG"


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two maps, flattened."""
    a, b = a.flatten().double().cpu(), b.flatten().double().cpu()
    a, b = a - a.mean(), b - b.mean()
    denominator = a.norm() * b.norm()
    return float((a @ b) / denominator) if denominator > 0 else float("nan")


def normalised(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (h, w) map upsampled bilinearly to ``size`` and min-max normalised, as camkit does."""
    cam = F.interpolate(cam[None, None].float(), size=size, mode="bilinear", align_corners=False)
    cam = cam[0, 0]
    span = cam.max() - cam.min()
    return (cam - cam.min()) / span if span > 0 else torch.zeros_like(cam)


class RowCounter:
    """Counts the input rows the model runs on (a forward pre-hook on the benchmark's model)."""

    def __init__(self, model: nn.Module) -> None:
        self.rows = 0
        self.handle = model.register_forward_pre_hook(self._count)

    def _count(self, _module: nn.Module, args: tuple[object, ...]) -> None:
        first = args[0] if args else None
        if isinstance(first, torch.Tensor):
            self.rows += int(first.shape[0])


def floor_per_image(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int,
    repeats: int,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> float:
    """Seconds of one no-grad forward per image, at ``batch_size`` images per forward."""
    batch = x.expand(batch_size, *x.shape[1:]).contiguous(memory_format=memory_format)
    cuda = batch.device.type == "cuda"
    times = []
    with torch.inference_mode():
        model(batch)
        for _ in range(repeats):
            if cuda:  # CUDA runs asynchronously: wait for the GPU before reading the clock
                torch.cuda.synchronize(batch.device)
            start = time.perf_counter()
            model(batch)
            if cuda:
                torch.cuda.synchronize(batch.device)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / batch_size


def camkit_runner(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    target: int,
    method: str,
    batch_size: int,
    channels_last: bool | None = None,
) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        explanation = camkit.explain(
            model,
            x,
            methods=method,
            layers=layer,
            target=target,
            batch_size=batch_size,
            progress=False,
            channels_last=channels_last,
        )
        return explanation.maps[(layer, method)][0]

    return run


def grad_cam_runner(
    model: nn.Module, x: torch.Tensor, layer: str, target: int, method: str, batch_size: int | None
) -> Callable[[], torch.Tensor]:
    from pytorch_grad_cam import AblationCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = dict(model.named_modules())[layer]
    kind = ScoreCAM if method == "scorecam" else AblationCAM

    parent_name, _, child = layer.rpartition(".")
    parent = model.get_submodule(parent_name)

    def run() -> torch.Tensor:
        try:
            with (
                kind(model=model, target_layers=[module]) as cam,
                contextlib.redirect_stderr(io.StringIO()),
            ):
                if batch_size is not None:
                    cam.batch_size = batch_size
                maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
        finally:
            # AblationCAM swaps the layer for its ablation module and, when it crashes (Lite0),
            # leaves it there: put the layer back so the next runs see the real model.
            setattr(parent, child, module)
        return normalised(torch.from_numpy(maps[0]), tuple(x.shape[-2:]))

    return run


def torch_cam_runner(
    model: nn.Module, x: torch.Tensor, layer: str, target: int, batch_size: int | None
) -> Callable[[], torch.Tensor]:
    from torchcam.methods import ScoreCAM

    options = {} if batch_size is None else {"batch_size": batch_size}

    def run() -> torch.Tensor:
        with ScoreCAM(model, layer, input_shape=tuple(x.shape[1:]), **options) as extractor:
            with torch.inference_mode():
                scores = model(x)
            cams = extractor(class_idx=target, scores=scores)
        return normalised(cams[0][0], tuple(x.shape[-2:]))

    return run


def load(name: str, quick: bool, device: str) -> tuple[nn.Module, torch.Tensor, str]:
    """The model in eval mode, the preprocessed image and the layer."""
    if name == "lite0":
        loaded = camkit.load_model("efficientnet_lite0", device=device)
        x = prepare_batch(str(SAMPLE / IMAGE), loaded.preprocessing).tensor.to(device)
        layer = camkit.explain(loaded, x, methods="gradcam").layers[0]  # the automatic layer
        return loaded.model.eval(), x, layer
    arch = "resnet18" if quick else "resnet50"
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval().to(device)
    x = prepare_batch(str(SAMPLE / IMAGE), Preprocessing()).tensor.to(device)
    return model, x, "layer4"


def bench(name: str, args: argparse.Namespace) -> list[str]:
    """Print and return the tables of one model."""
    model, x, layer = load(name, args.quick, args.device)
    with torch.inference_mode():
        target = int(model(x).argmax())
    module = dict(model.named_modules())[layer]
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    with torch.inference_mode():
        model(x)
    handle.remove()
    activations = seen[-1]
    context = PerturbationContext(
        model, x, layer, module, activations, torch.zeros(1, 1), None, None
    )
    distinct, constant = distinct_masks(context)
    nonzero = int(activations.flatten(2).ne(0).any(dim=2).sum())
    channels = int(activations.shape[1])
    ours = args.batch_size
    lines = []
    for method in args.methods:
        masks = distinct + constant if method == "scorecam" else nonzero
        runners: dict[str, Callable[[], torch.Tensor]] = {
            f"camkit (bs {ours})": camkit_runner(model, x, layer, target, method, ours),
            f"camkit (bs {ours}, NCHW input)": camkit_runner(
                model, x, layer, target, method, ours, channels_last=False
            ),
        }
        default = 16 if method == "scorecam" else 32
        runners[f"pytorch-grad-cam (bs {default}, default)"] = grad_cam_runner(
            model, x, layer, target, method, None
        )
        if not args.quick and ours != default:
            runners[f"pytorch-grad-cam (bs {ours})"] = grad_cam_runner(
                model, x, layer, target, method, ours
            )
        if method == "scorecam":
            runners["torch-cam (bs 32, default)"] = torch_cam_runner(model, x, layer, target, None)
            if not args.quick and ours != 32:
                runners[f"torch-cam (bs {ours})"] = torch_cam_runner(model, x, layer, target, ours)
        if args.skip:  # drop runners by name (the first, camkit's default, always runs)
            runners = {
                key: run
                for position, (key, run) in enumerate(runners.items())
                if position == 0 or not any(word in key for word in args.skip)
            }
        times: dict[str, list[float]] = {key: [] for key in runners}
        cpu: dict[str, list[float]] = {key: [] for key in runners}
        failed: dict[str, str] = {}
        rows: dict[str, int] = {}
        maps: dict[str, torch.Tensor] = {}
        floors: dict[str, list[float]] = {"nchw": [], "channels_last": []}
        for _ in range(args.repeats):  # interleaved: each repeat runs every library once
            # The floors too, so that a busy spell of the machine hits them alike.
            floors["nchw"].append(floor_per_image(model, x, ours, 2))
            floors["channels_last"].append(floor_per_image(model, x, ours, 2, torch.channels_last))
            for key, run in runners.items():
                counter = RowCounter(model)
                start, start_cpu = time.perf_counter(), time.process_time()
                try:
                    maps[key] = run()
                except Exception as error:  # a peer that cannot run this model/layer
                    failed[key] = f"{type(error).__name__}: {str(error)[:80]}"
                    maps[key] = torch.full_like(maps[next(iter(runners))], float("nan"))
                finally:
                    counter.handle.remove()
                times[key].append(time.perf_counter() - start)
                cpu[key].append(time.process_time() - start_cpu)
                rows[key] = counter.rows
        reference = maps[next(iter(runners))]
        plain_floor = statistics.median(floors["nchw"])
        # camkit hands channels-last input to the model on the CPU (NCHW on CUDA without amp).
        floor = plain_floor if args.device == "cuda" else statistics.median(floors["channels_last"])
        medians = {key: statistics.median(values) for key, values in times.items()}
        # Only peers that compute the same map count (pytorch-grad-cam hooks the first call of a
        # module that runs twice, such as Lite0's `_swish`, and explains another layer).
        cpu_medians = {key: statistics.median(values) for key, values in cpu.items()}
        same = [
            key
            for key in medians
            if not key.startswith("camkit")
            and key not in failed
            and pearson(maps[key], reference) >= 0.99
        ]
        lines.append(
            f"\n{name} {layer} ({channels} channels, {nonzero} non-zero, {distinct} distinct "
            f"non-constant masks{' + the zero mask' if constant else ''}), {method}, target "
            f"{target}; floor = {masks} x {floor * 1000:.1f} ms = {masks * floor:.2f} s "
            f"(NCHW input: {plain_floor * 1000:.1f} ms per forward)"
        )
        lines.append(
            "| library | s / image | CPU s / image | rows run | x floor | vs camkit "
            "| r with camkit |"
        )
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        for key in runners:
            if key in failed:
                lines.append(f"| {key} | failed: {failed[key]} | | | | | |")
                continue
            lines.append(
                f"| {key} | {medians[key]:.2f} | {statistics.median(cpu[key]):.2f} | {rows[key]} "
                f"| {medians[key] / (masks * floor):.2f} "
                f"| {medians[key] / medians[next(iter(runners))]:.2f}x "
                f"| {pearson(maps[key], reference):.3f} |"
            )
        ours_key = next(iter(runners))
        if same:
            # CPU time too: on a shared machine whose load changes between runs it is the
            # steadier measure of the work each library does.
            lines.append(
                f"fastest peer with the same map (r >= 0.99) / camkit = "
                f"{min(medians[key] for key in same) / medians[ours_key]:.2f} in seconds, "
                f"{min(cpu_medians[key] for key in same) / cpu_medians[ours_key]:.2f} in CPU "
                "seconds"
            )
        else:
            lines.append("no peer computed the same map (r >= 0.99)")
        print("\n".join(lines[-len(runners) - 4 :]), flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-18 for ResNet-50, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="camkit's [32 CPU, 128 CUDA]")
    parser.add_argument("--models", nargs="+", default=["lite0", "resnet"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", nargs="+", default=["scorecam", "ablationcam"])
    parser.add_argument(
        "--skip", nargs="+", default=[], help="leave out runners whose name holds a word, e.g. NCHW"
    )
    args = parser.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.batch_size = args.batch_size or DEFAULT_BATCH_SIZE[torch.device(args.device).type]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}")
    for name in args.models:
        bench(name, args)


if __name__ == "__main__":
    main()
