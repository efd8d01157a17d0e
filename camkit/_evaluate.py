"""``camkit evaluate``: score every method on a folder of images with camkit.metrics.

Writes, into the output folder:

- ``per_image.csv``: one row per (image, method) with every metric;
- ``curves.csv``: the deletion and insertion curve of each row;
- ``summary.csv`` and ``summary.md``: the means per method;
- ``curves.png``: the mean deletion and insertion curves per method.

Rows are written as each batch of images finishes, so an interrupted run keeps its work and
``resume=True`` continues it.
"""

from __future__ import annotations

import csv
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from camkit._engine import explain
from camkit._errors import InputError
from camkit._inputs import prepare_batch
from camkit.layers import auto_layer, resolve_layer
from camkit._metrics import (
    REFERENCE_MAPS,
    Scorer,
    average_drop,
    deletion,
    insertion,
    reference_maps,
)
from camkit._metrics_road import road
from camkit._metrics_wnids import IMAGENET_WNIDS
from camkit._models import LoadedModel
from camkit._registry import get_method, list_methods

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: ROAD's percentages in ``camkit evaluate``: three of the paper's nine, for time.
EVALUATE_ROAD_PERCENTAGES = (10, 50, 90)
#: Methods that run one forward pass per channel (1,280 at Lite0's auto layer): slow on CPU.
PER_CHANNEL_METHODS = ("scorecam", "sscam", "iscam", "ablationcam")
_WNID = re.compile(r"^(n\d{8})")
_WNID_INDEX = {wnid: index for index, wnid in enumerate(IMAGENET_WNIDS)}

PER_IMAGE_FILE = "per_image.csv"
CURVES_FILE = "curves.csv"


@dataclass(frozen=True)
class LabelledImage:
    """An image to evaluate and the class it is explained for.

    Attributes:
        path: The file.
        label: Its class index, or ``None`` to explain the model's prediction.
        source: Where the label came from: ``labels.csv``, ``wnid``, ``folder`` or
            ``prediction``.
    """

    path: Path
    label: int | None
    source: str


def _read_labels_csv(folder: Path) -> dict[str, int]:
    table = folder / "labels.csv"
    if not table.is_file():
        return {}
    with table.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "class_index"} <= set(reader.fieldnames):
            return {}
        return {row["file"]: int(row["class_index"]) for row in reader if row["class_index"]}


def _folder_label(name: str, categories: Sequence[str] | None, classes: int | None) -> int | None:
    if _WNID.match(name) and classes == len(IMAGENET_WNIDS):
        return _WNID_INDEX.get(_WNID.match(name).group(1))  # type: ignore[union-attr]
    if name.isdigit() and classes is not None and int(name) < classes:
        return int(name)
    if categories is not None:
        folded = [category.lower() for category in categories]
        key = name.replace("_", " ").lower()
        if folded.count(key) == 1:
            return folded.index(key)
    return None


def find_images(
    folder: Path,
    categories: Sequence[str] | None,
    limit: int | None = None,
    exclude: Path | None = None,
) -> list[LabelledImage]:
    """The images of ``folder`` and one level of subfolders, each with its label if known.

    Labels come from, in order: a ``labels.csv`` with ``file`` and ``class_index`` columns;
    a WordNet id starting the file name (``n01440764_tench.JPEG``, ImageNet models); an
    ImageFolder layout whose subfolder is a WordNet id, a class index or a class name;
    otherwise the image is explained for the model's prediction.

    Raises:
        ValueError: For a missing, empty or image-less folder.
    """
    if not folder.exists():
        raise InputError(f"folder {str(folder)!r} not found; pass a folder of images")
    if not folder.is_dir():
        raise InputError(f"{str(folder)!r} is a file; pass the folder that holds the images")
    entries = sorted(folder.iterdir())
    if not entries:
        raise InputError(f"folder {str(folder)!r} is empty; pass a folder of images")
    classes = len(categories) if categories is not None else None
    listed = _read_labels_csv(folder)
    found: list[LabelledImage] = []
    skip = exclude.resolve() if exclude is not None else None

    def label_of(path: Path, subfolder: str | None) -> LabelledImage:
        if path.name in listed:
            return LabelledImage(path, listed[path.name], "labels.csv")
        match = _WNID.match(path.stem)
        if match and classes == len(IMAGENET_WNIDS) and match.group(1) in _WNID_INDEX:
            return LabelledImage(path, _WNID_INDEX[match.group(1)], "wnid")
        if subfolder is not None:
            index = _folder_label(subfolder, categories, classes)
            if index is not None:
                return LabelledImage(path, index, "folder")
        return LabelledImage(path, None, "prediction")

    for entry in entries:
        if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            found.append(label_of(entry, None))
        elif entry.is_dir() and entry.resolve() != skip:
            for inner in sorted(entry.iterdir()):
                if inner.is_file() and inner.suffix.lower() in IMAGE_SUFFIXES:
                    found.append(label_of(inner, entry.name))
    if not found:
        raise InputError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(folder)!r} or its subfolders; "
            "pass a folder of images"
        )
    return found[:limit] if limit is not None else found


def check_out_dir(out: Path) -> Path:
    """Create ``out`` when missing and check that files can be written into it."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; pass a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(
            f"cannot create output folder {str(out)!r} ({error.strerror or error}); "
            "pass a writable folder with --out"
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(
            f"output folder {str(out)!r} is not writable; pass a writable folder with --out"
        )
    return out


def default_methods() -> list[str]:
    """Every registered method, then the reference maps."""
    return [*list_methods(), *REFERENCE_MAPS]


def check_methods(methods: Sequence[str]) -> list[str]:
    """Registered names (canonical spelling) and reference maps, without repeats."""
    chosen: list[str] = []
    for name in methods:
        key = name.strip().lower()
        canonical = key if key in REFERENCE_MAPS else get_method(name).name
        if canonical not in chosen:
            chosen.append(canonical)
    if not chosen:
        raise InputError("no methods to evaluate; pass --method NAME")
    return chosen


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _columns(percentages: Sequence[int]) -> list[str]:
    return [
        "file",
        "method",
        "layer",
        "label",
        "label_source",
        "predicted",
        "correct",
        "explained_class",
        "explain_ms",
        "score",
        "masked_score",
        "drop",
        "increase",
        "deletion_auc",
        "insertion_auc",
        "road_morf",
        "road_lerf",
        *[f"road_morf_{p}" for p in percentages],
        *[f"road_lerf_{p}" for p in percentages],
    ]


def _done_rows(path: Path) -> set[tuple[str, str, str]]:
    if not path.is_file():
        return set()
    with path.open(newline="") as handle:
        return {(row["file"], row["method"], row["layer"]) for row in csv.DictReader(handle)}


@dataclass(frozen=True)
class _Job:
    method: str
    layer: str


def evaluate_folder(
    loaded: LoadedModel,
    images: Sequence[LabelledImage],
    methods: Sequence[str],
    layers: Sequence[str],
    out: Path,
    *,
    road_percentages: Sequence[int] = EVALUATE_ROAD_PERCENTAGES,
    images_per_batch: int = 4,
    batch_size: int = 64,
    resume: bool = False,
    progress: Callable[[int], None] | None = None,
    max_channels: int | None = None,
) -> Path:
    """Score ``methods`` at ``layers`` on ``images``; write the CSV files, table and plot.

    All maps of a batch of images (every method and reference) go through each metric together,
    so the forward passes of all curves are shared out in ``batch_size`` chunks.

    Args:
        loaded: The model with its preprocessing.
        images: From :func:`find_images`.
        methods: Registered method names and reference map names.
        layers: Layer names or ``"auto"``.
        out: Output folder (must exist).
        road_percentages: ROAD's percentages; empty to skip ROAD.
        images_per_batch: Images explained and scored together.
        batch_size: Most images per forward pass of the metrics.
        resume: Keep the rows already in ``out`` and skip what they cover.
        progress: Called with the number of images finished after each batch.
        max_channels: Per-channel methods perturb only each image's ``max_channels`` channels of
            largest activation mass; their rows are named ``"scorecam (max_channels=N)"``.

    Returns:
        The path of ``summary.md``.
    """
    per_image_path, curves_path = out / PER_IMAGE_FILE, out / CURVES_FILE
    columns = _columns(road_percentages)
    done = _done_rows(per_image_path) if resume else set()
    mode = "a" if resume and per_image_path.is_file() else "w"
    scorer = Scorer(loaded, batch_size=batch_size)
    cam_methods = [m for m in methods if m not in REFERENCE_MAPS]
    with (
        per_image_path.open(mode, newline="") as per_image_handle,
        curves_path.open(mode, newline="") as curves_handle,
    ):
        per_image = csv.DictWriter(per_image_handle, fieldnames=columns)
        curves = csv.writer(curves_handle)
        if mode == "w":
            per_image.writeheader()
        for start in range(0, len(images), images_per_batch):
            chunk = images[start : start + images_per_batch]
            rows, curve_rows = _evaluate_chunk(
                loaded,
                scorer,
                chunk,
                cam_methods,
                [m for m in methods if m in REFERENCE_MAPS],
                layers,
                road_percentages,
                batch_size,
                done,
                max_channels,
            )
            per_image.writerows(rows)
            curves.writerows(curve_rows)
            per_image_handle.flush()
            curves_handle.flush()
            if progress is not None:
                progress(len(chunk))
    return write_summary([per_image_path], [curves_path], out, loaded.name)


def _evaluate_chunk(
    loaded: LoadedModel,
    scorer: Scorer,
    chunk: Sequence[LabelledImage],
    cam_methods: Sequence[str],
    references: Sequence[str],
    layers: Sequence[str],
    road_percentages: Sequence[int],
    batch_size: int,
    done: set[tuple[str, str, str]],
    max_channels: int | None = None,
) -> tuple[list[dict[str, object]], list[list[object]]]:
    batch = prepare_batch([str(item.path) for item in chunk], loaded.preprocessing)
    pixels = batch.images
    with torch.inference_mode():
        predicted = scorer.top_classes(pixels)
    classes = torch.tensor(
        [
            item.label if item.label is not None else int(guess)
            for item, guess in zip(chunk, predicted.tolist(), strict=True)
        ]
    )
    count, _, height, width = pixels.shape
    maps: list[torch.Tensor] = []
    keys: list[tuple[str, str, float]] = []  # (method, layer, explain ms per image)
    x = batch.tensor.to(scorer.device, scorer.dtype)
    modules = dict(loaded.model.named_modules())
    with torch.no_grad():  # the names the rows carry, so that finished work is not redone
        names = {
            spec: auto_layer(loaded.model, x, modules)
            if spec == "auto"
            else resolve_layer(loaded.model, spec, modules)
            for spec in layers
        }
    for method in cam_methods:
        for layer in layers:
            limited = max_channels if is_per_channel(method) else None
            label = method if limited is None else f"{method} (max_channels={limited})"
            if all((item.path.name, label, names[layer]) in done for item in chunk):
                continue  # --resume: every image of the chunk has this row already
            began = time.perf_counter()
            exp = explain(
                loaded.model,
                x,
                methods=method,
                layers=layer,
                target=classes.tolist(),
                max_channels=limited,
            )
            elapsed = (time.perf_counter() - began) * 1000 / count
            resolved = exp.layers[0]
            maps.append(exp.maps[(resolved, method)])
            keys.append((label, resolved, elapsed))
    for reference in references:
        if all((item.path.name, reference, "-") in done for item in chunk):
            continue
        seeds = [hash_seed(item.path.name) for item in chunk]
        maps.append(reference_maps(reference, count, height, width, seed=seeds))
        keys.append((reference, "-", 0.0))
    wanted = [
        position
        for position, (method, layer, _) in enumerate(keys)
        if not all((item.path.name, method, layer) in done for item in chunk)
    ]
    if not wanted:
        return [], []
    stacked_maps = torch.cat([maps[position] for position in wanted])
    stacked_pixels = pixels.repeat(len(wanted), 1, 1, 1)
    stacked_classes = classes.repeat(len(wanted))
    arguments = (loaded, stacked_pixels, stacked_maps, stacked_classes)
    confidence = average_drop(*arguments, batch_size=batch_size)
    deleted = deletion(*arguments, batch_size=batch_size)
    inserted = insertion(*arguments, batch_size=batch_size)
    road_result = (
        road(*arguments, percentages=road_percentages, batch_size=batch_size)
        if road_percentages
        else None
    )
    rows: list[dict[str, object]] = []
    curve_rows: list[list[object]] = []
    for slot, position in enumerate(wanted):
        method, layer, elapsed = keys[position]
        for index, item in enumerate(chunk):
            if (item.path.name, method, layer) in done:
                continue
            flat = slot * count + index
            original = float(confidence.original[flat])
            masked = float(confidence.masked[flat])
            row: dict[str, object] = {
                "file": item.path.name,
                "method": method,
                "layer": layer,
                "label": "" if item.label is None else item.label,
                "label_source": item.source,
                "predicted": int(predicted[index]),
                "correct": "" if item.label is None else int(int(predicted[index]) == item.label),
                "explained_class": int(classes[index]),
                "explain_ms": f"{elapsed:.1f}",
                "score": f"{original:.6f}",
                "masked_score": f"{masked:.6f}",
                "drop": f"{max(0.0, original - masked) / max(original, 1e-12):.6f}",
                "increase": int(masked > original),
                "deletion_auc": f"{float(deleted.auc[flat]):.6f}",
                "insertion_auc": f"{float(inserted.auc[flat]):.6f}",
                "road_morf": "",
                "road_lerf": "",
            }
            if road_result is not None:
                morf, lerf = road_result.morf[flat], road_result.lerf[flat]
                row["road_morf"] = f"{float(morf.mean()):.6f}"
                row["road_lerf"] = f"{float(lerf.mean()):.6f}"
                for p, m, le in zip(road_percentages, morf.tolist(), lerf.tolist(), strict=True):
                    row[f"road_morf_{p}"] = f"{m:.6f}"
                    row[f"road_lerf_{p}"] = f"{le:.6f}"
            rows.append(row)
            for kind, curve in (("deletion", deleted), ("insertion", inserted)):
                values = [f"{v:.5f}" for v in curve.scores[flat].tolist()]
                curve_rows.append([item.path.name, method, layer, kind, *values])
    return rows, curve_rows


def hash_seed(name: str) -> int:
    """A seed from a file name that is the same in every run (``hash`` is salted per process)."""
    return sum((position + 1) * ord(char) for position, char in enumerate(name)) % (2**31)


# --------------------------------------------------------------------------------------------
# Summary, table and plot
# --------------------------------------------------------------------------------------------

#: (column, header, format, better) of the summary table.
SUMMARY_COLUMNS = (
    ("drop", "Average Drop % ↓", 100.0, "lower"),
    ("increase", "Increase in Confidence % ↑", 100.0, "higher"),
    ("deletion_auc", "Deletion AUC ↓", 1.0, "lower"),
    ("insertion_auc", "Insertion AUC ↑", 1.0, "higher"),
    ("road_morf", "ROAD MoRF ↓", 1.0, "lower"),
    ("road_lerf", "ROAD LeRF ↑", 1.0, "higher"),
    ("explain_ms", "explain ms/image", 1.0, "lower"),
)


def _read_rows(paths: Iterable[Path]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in paths:
        with path.open(newline="") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


def _mean(values: Iterable[str]) -> float:
    numbers = [float(v) for v in values if v != ""]
    return sum(numbers) / len(numbers) if numbers else math.nan


def write_summary(
    per_image_paths: Sequence[Path],
    curves_paths: Sequence[Path],
    out: Path,
    model_name: str | None = None,
) -> Path:
    """Write ``summary.csv``, ``summary.md`` and ``curves.png`` from per-image results.

    Several runs (for example one method evaluated later) are merged by passing all their
    files; a (file, method, layer) row seen twice counts once.

    Returns:
        The path of ``summary.md``.
    """
    rows = _read_rows(per_image_paths)
    unique: dict[tuple[str, str, str], dict[str, str]] = {}
    for row in rows:
        unique.setdefault((row["file"], row["method"], row["layer"]), row)
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for (_, method, layer), row in unique.items():
        groups.setdefault((method, layer), []).append(row)
    summary = []
    for (method, layer), members in groups.items():
        entry: dict[str, object] = {"method": method, "layer": layer, "images": len(members)}
        for column, _, scale, _ in SUMMARY_COLUMNS:
            entry[column] = _mean(row[column] for row in members) * scale
        summary.append(entry)
    with (out / "summary.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["method", "layer", "images", *[c[0] for c in SUMMARY_COLUMNS]]
        )
        writer.writeheader()
        for entry in summary:
            writer.writerow(
                {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in entry.items()}
            )
    markdown = _markdown(summary, unique, model_name)
    (out / "summary.md").write_text(markdown)
    curves = _mean_curves(_read_rows_plain(curves_paths), set(unique))
    from camkit.overlay import figure_to_png_bytes

    (out / "curves.png").write_bytes(figure_to_png_bytes(curves_figure(curves, summary)))
    return out / "summary.md"


def _markdown(
    summary: list[dict[str, object]],
    rows: dict[tuple[str, str, str], dict[str, str]],
    model_name: str | None,
) -> str:
    files = {key[0]: row for key, row in rows.items()}
    labelled = [row for row in files.values() if row["correct"] != ""]
    accuracy = (
        f"{100 * sum(int(r['correct']) for r in labelled) / len(labelled):.0f}% top-1 on the "
        f"{len(labelled)} labelled images"
        if labelled
        else "no labels (each image explained for its prediction)"
    )
    lines = [
        f"{len(files)} images, model {model_name or 'unknown'}, {accuracy}.",
        "",
        "| method | layer | images | " + " | ".join(c[1] for c in SUMMARY_COLUMNS) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in SUMMARY_COLUMNS) + " |",
    ]
    for entry in summary:
        cells = []
        for column, _, _, _ in SUMMARY_COLUMNS:
            value = float(entry[column])  # type: ignore[arg-type]
            digits = 1 if column in ("drop", "increase", "explain_ms") else 3
            cells.append("-" if math.isnan(value) else f"{value:.{digits}f}")
        lines.append(
            f"| {entry['method']} | {entry['layer']} | {entry['images']} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def _read_rows_plain(paths: Iterable[Path]) -> list[list[str]]:
    rows: list[list[str]] = []
    for path in paths:
        with path.open(newline="") as handle:
            rows.extend(csv.reader(handle))
    return rows


def _mean_curves(
    rows: list[list[str]], keep: set[tuple[str, str, str]]
) -> dict[tuple[str, str], dict[str, torch.Tensor]]:
    seen: set[tuple[str, str, str, str]] = set()
    sums: dict[tuple[str, str], dict[str, list[torch.Tensor]]] = {}
    for file, method, layer, kind, *values in rows:
        if (file, method, layer) not in keep or (file, method, layer, kind) in seen:
            continue
        seen.add((file, method, layer, kind))
        curve = torch.tensor([float(v) for v in values])
        sums.setdefault((method, layer), {}).setdefault(kind, []).append(curve)
    return {
        key: {kind: torch.stack(curves).mean(0) for kind, curves in kinds.items()}
        for key, kinds in sums.items()
    }


def curves_figure(
    curves: dict[tuple[str, str], dict[str, torch.Tensor]], summary: list[dict[str, object]]
) -> Figure:
    """Two panels, the mean deletion and insertion curves of each method (Agg, no pyplot)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    aucs = {(str(e["method"]), str(e["layer"])): e for e in summary}
    layers = {layer for _, layer in curves if layer != "-"}
    colormap = matplotlib.colormaps["tab20"]
    colours = [colormap(i % 20) for i in range(len(curves))]
    for colour, ((method, layer), kinds) in zip(colours, curves.items(), strict=True):
        name = method if len(layers) <= 1 or layer == "-" else f"{method} @ {layer}"
        style = "--" if method in REFERENCE_MAPS else "-"
        for axis, kind in zip(axes, ("deletion", "insertion"), strict=True):
            if kind not in kinds:
                continue
            values = kinds[kind]
            fractions = torch.linspace(0, 1, values.shape[0])
            auc = float(aucs[(method, layer)][f"{kind}_auc"])  # type: ignore[arg-type]
            axis.plot(fractions, values, style, color=colour, label=f"{name} ({auc:.3f})")
    for axis, kind, better in zip(
        axes, ("deletion", "insertion"), ("lower", "higher"), strict=True
    ):
        axis.set_title(
            f"{kind.capitalize()}: mean probability of the class (AUC, {better} is better)"
        )
        axis.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "put back"))
        axis.set_ylabel("probability")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, None)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, ncol=2)
        axis.grid(alpha=0.3)
    return figure


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def parse_percentages(text: str) -> tuple[int, ...]:
    """``"10,50,90"`` -> (10, 50, 90); ``"none"`` or ``""`` -> () (skip ROAD)."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(
            f"--road-percent {text!r} is not a list of whole percentages; pass e.g. 10,50,90 "
            "or none"
        ) from None
    if not values or any(not 0 < value < 100 for value in values):
        raise InputError(f"--road-percent {text!r} must hold values from 1 to 99, e.g. 10,50,90")
    return values


def is_per_channel(method: str) -> bool:
    """Whether a method runs the model once per channel (Score-CAM, Ablation-CAM...)."""
    if method in REFERENCE_MAPS:
        return False
    return bool(getattr(get_method(method), "perturbation", False))


def run_evaluate(
    path: Path,
    *,
    model_name: str,
    methods: Sequence[str],
    layers: Sequence[str],
    limit: int | None,
    out: Path,
    road_percent: str,
    batch_size: int,
    resume: bool,
    device: str | None,
    weights: str | None = "DEFAULT",
    max_channels: int | None = None,
) -> Path:
    """What ``camkit evaluate`` does; checks every option before the model loads."""
    import click
    from tqdm import tqdm

    from camkit._models import load_model

    chosen = check_methods(methods) if methods else default_methods()
    skipped = [] if methods else [m for m in chosen if is_per_channel(m)]
    chosen = [m for m in chosen if m not in skipped]
    percentages = parse_percentages(road_percent)
    find_images(path, None)  # folder problems fail before the model loads
    out = check_out_dir(out)
    loaded = load_model(model_name, weights=weights, device=device)  # device None: CUDA if any
    # The model is ours alone here: channels-last runs Lite0's convolutions ~1.5x faster on CPU.
    loaded.model.to(memory_format=torch.channels_last)
    items = find_images(path, loaded.categories, limit, exclude=out)
    if skipped:
        click.echo(
            f"note: skipping {', '.join(skipped)} (one forward pass per channel, minutes per "
            "image on a CPU); name them with --method to include them",
            err=True,
        )
    sources: dict[str, int] = {}
    for item in items:
        sources[item.source] = sources.get(item.source, 0) + 1
    click.echo(
        f"evaluating {', '.join(chosen)} on {len(items)} images "
        f"(labels: {', '.join(f'{k} {v}' for k, v in sources.items())})",
        err=True,
    )
    with tqdm(total=len(items), desc="evaluating", unit="image") as bar:
        summary = evaluate_folder(
            loaded,
            items,
            chosen,
            layers,
            out,
            road_percentages=percentages,
            batch_size=batch_size,
            resume=resume,
            progress=bar.update,
            max_channels=max_channels,
        )
    click.echo(summary.read_text())
    click.echo(f"wrote {out / PER_IMAGE_FILE}, {out / 'summary.md'}, {out / 'curves.png'}")
    return summary
