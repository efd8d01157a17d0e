"""``camkit evaluate``: score every method on a folder of images with camkit.metrics.

Writes, into the output folder:

- ``per_image.csv``: one row per (image, method) with every metric;
- ``curves.csv``: the deletion and insertion curve of each row;
- ``summary.csv`` and ``summary.md``: the means per method;
- ``curves.png``: the mean deletion and insertion curves per method;
- with ``sanity_images`` > 0, ``sanity.csv`` and ``sanity.md``: the cascading randomisation
  test (:func:`camkit.metrics.sanity_check`) on the first images, every step's correlation, the
  first step below 0.5 and the verdict of its rule.

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
from typing import TYPE_CHECKING, TypeVar

import torch

from camkit._errors import InputError
from camkit._inputs import prepare_batch
from camkit._metrics import (
    REFERENCE_MAPS,
    Scorer,
    average_drop,
    deletion,
    insertion,
    reference_maps,
)
from camkit._metrics_wnids import IMAGENET_WNIDS
from camkit.api import explain
from camkit.cam import get_method, list_methods
from camkit.layers import auto_layer, resolve_layer
from camkit.models import LoadedModel

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: ROAD's percentages in ``camkit evaluate``: three of the paper's nine, for time.
EVALUATE_ROAD_PERCENTAGES = (10, 50, 90)
_WNID = re.compile(r"^(n\d{8})")
_WNID_INDEX = {wnid: index for index, wnid in enumerate(IMAGENET_WNIDS)}

PER_IMAGE_FILE = "per_image.csv"
CURVES_FILE = "curves.csv"
SANITY_FILES = ("sanity.csv", "sanity.md")


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


#: What ``camkit evaluate`` scores when no --method is given: the two methods the lessons teach,
#: and the maps that know nothing about the model, to compare them with. Every map costs the same
#: ~60 forward passes per image (Average Drop 2, deletion and insertion 29 each at 224 x 224),
#: so four maps keep ``--limit 10`` to a few minutes on a 2-core CPU.
DEFAULT_METHODS = ("gradcam", "gradcam++")


def default_methods() -> list[str]:
    """The default methods, then the reference maps."""
    return [*DEFAULT_METHODS, *REFERENCE_MAPS]


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
    road_percentages: Sequence[int] = (),
    images_per_batch: int = 4,
    batch_size: int = 64,
    resume: bool = False,
    progress: Progress | None = None,
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
        road_percentages: ROAD's percentages (e.g. :data:`EVALUATE_ROAD_PERCENTAGES`); empty,
            the default, skips ROAD, whose sparse solves take minutes per image on a CPU.
        images_per_batch: Images explained and scored together.
        batch_size: Most images per forward pass of the metrics.
        resume: Keep the rows already in ``out`` and skip what they cover.
        progress: Called as ``progress(step, finished)`` when each step of
            :func:`evaluation_steps` starts (``finished=False``) and ends (``True``).
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
                progress,
            )
            per_image.writerows(rows)
            curves.writerows(curve_rows)
            per_image_handle.flush()
            curves_handle.flush()
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
    progress: Progress | None = None,
) -> tuple[list[dict[str, object]], list[list[object]]]:
    report = progress if progress is not None else _no_progress
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
            step = _explain_step(label, layer, len(layers))
            if all((item.path.name, label, names[layer]) in done for item in chunk):
                report(step, False)
                report(step, True)
                continue  # --resume: every image of the chunk has this row already
            report(step, False)
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
            report(step, True)
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
    metric_steps = _metric_steps(bool(road_percentages))
    if not wanted:
        for step in metric_steps:
            report(step, False)
            report(step, True)
        return [], []
    stacked_maps = torch.cat([maps[position] for position in wanted])
    stacked_pixels = pixels.repeat(len(wanted), 1, 1, 1)
    stacked_classes = classes.repeat(len(wanted))
    arguments = (loaded, stacked_pixels, stacked_maps, stacked_classes)

    def measured(step: str, metric: Callable[[], _Result]) -> _Result:
        report(step, False)
        result = metric()
        report(step, True)
        return result

    confidence = measured(metric_steps[0], lambda: average_drop(*arguments, batch_size=batch_size))
    deleted = measured(metric_steps[1], lambda: deletion(*arguments, batch_size=batch_size))
    inserted = measured(metric_steps[2], lambda: insertion(*arguments, batch_size=batch_size))
    road_result = None
    if road_percentages:
        from camkit._metrics_road import road  # numpy and scipy: only when ROAD is asked for

        road_result = measured(
            metric_steps[3],
            lambda: road(*arguments, percentages=road_percentages, batch_size=batch_size),
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


#: ``progress(step, finished)``: a step of :func:`evaluation_steps` starts or ends.
Progress = Callable[[str, bool], None]
_Result = TypeVar("_Result")


def _no_progress(step: str, finished: bool) -> None:
    """The default of ``progress``: report nothing."""


def _explain_step(method: str, layer: str, layers: int) -> str:
    return f"explain {method}" if layers == 1 else f"explain {method} @ {layer}"


def _metric_steps(with_road: bool) -> list[str]:
    return ["Average Drop", "deletion", "insertion", *(["ROAD"] if with_road else [])]


def evaluation_steps(
    images: int,
    methods: Sequence[str],
    layers: Sequence[str],
    *,
    road_percentages: Sequence[int] = (),
    images_per_batch: int = 4,
) -> int:
    """How many steps :func:`evaluate_folder` reports to ``progress``.

    Per batch of ``images_per_batch`` images: one per explained method and layer, then one per
    metric (the reference maps cost nothing).
    """
    explained = sum(1 for m in methods if m not in REFERENCE_MAPS) * len(layers)
    per_batch = explained + len(_metric_steps(bool(road_percentages)))
    return math.ceil(images / images_per_batch) * per_batch


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
    # Columns no row has (ROAD when it was not asked for) are left out of the table.
    shown = [
        spec
        for spec in SUMMARY_COLUMNS
        if any(not math.isnan(float(entry[spec[0]])) for entry in summary)  # type: ignore[arg-type]
    ]
    lines = [
        f"{len(files)} images, model {model_name or 'unknown'}, {accuracy}.",
        "",
        "| method | layer | images | " + " | ".join(c[1] for c in shown) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in shown) + " |",
    ]
    for entry in summary:
        cells = []
        for column, _, _, _ in shown:
            value = float(entry[column])  # type: ignore[arg-type]
            cells.append("-" if math.isnan(value) else f"{value:.{_digits(column)}f}")
        lines.append(
            f"| {entry['method']} | {entry['layer']} | {entry['images']} | "
            + " | ".join(cells)
            + " |"
        )
    check = ranking_check(rows)
    if check:
        lines += ["", *check]
    return "\n".join(lines) + "\n"


def _digits(column: str) -> int:
    return 1 if column in ("drop", "increase", "explain_ms") else 3


# --------------------------------------------------------------------------------------------
# Is the ranking more than chance?
# --------------------------------------------------------------------------------------------

#: Two-sided 95% quantiles of Student's t for 1 to 30 degrees of freedom.
_T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
#: Give up counting the images a difference needs beyond this many.
_MOST_IMAGES = 100_000


def t_quantile_975(degrees: int) -> float:
    """The two-sided 95% quantile of Student's t (a table to 30, then its expansion in 1/df)."""
    if degrees <= len(_T_975):
        return _T_975[degrees - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * degrees) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * degrees**2)


@dataclass(frozen=True)
class PairedDifference:
    """The difference of two rows of the summary over the images both scored.

    Attributes:
        images: How many images both rows scored.
        mean: Mean of the per-image differences (row minus baseline).
        margin: Half-width of its 95% confidence interval, ``t(n-1) * sd / sqrt(n)``; ``nan``
            with one image.
        needed: Images at which a mean difference this size, with this spread, would exceed
            its margin; ``None`` when the mean is 0 or it would take over 100,000.
    """

    images: int
    mean: float
    margin: float
    needed: int | None

    @property
    def resolved(self) -> bool:
        """Whether the difference is beyond chance (at 95%)."""
        return not math.isnan(self.margin) and abs(self.mean) > self.margin


def paired_difference(values: dict[str, float], baseline: dict[str, float]) -> PairedDifference:
    """Compare two rows image by image (every row scores the same images, so pair them)."""
    differences = [values[name] - baseline[name] for name in values.keys() & baseline.keys()]
    count = len(differences)
    mean = sum(differences) / count if count else math.nan
    if count < 2:
        return PairedDifference(count, mean, math.nan, None)
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (count - 1))
    margin = t_quantile_975(count - 1) * sd / math.sqrt(count)
    needed: int | None = None
    if mean != 0:
        # Solve |mean| > t(n-1) sd / sqrt(n) for n, with this mean and sd; start near the
        # normal-quantile answer and count up (the margin shrinks as n grows).
        n = max(2, math.floor((1.96 * sd / abs(mean)) ** 2))
        while n <= _MOST_IMAGES and abs(mean) <= t_quantile_975(n - 1) * sd / math.sqrt(n):
            n += 1
        needed = n if n <= _MOST_IMAGES else None
    return PairedDifference(count, mean, margin, needed)


def ranking_check(rows: dict[tuple[str, str, str], dict[str, str]]) -> list[str]:
    """Markdown lines saying which differences in the summary are within chance.

    Every method is compared with the ``random`` reference map, image by image: a method that
    does not beat a map that knows nothing about the model says nothing yet. Without ``random``,
    the two best rows of each metric are compared. A difference counts when its mean exceeds
    the 95% margin ``t(n-1) * sd / sqrt(n)`` of the per-image differences (a paired t-test);
    for those that do not, the lines say how many images a difference of the size seen would
    need, with the spread seen.

    Args:
        rows: (file, method, layer) -> the per_image.csv row.

    Returns:
        Lines for summary.md (empty when there is nothing to rank).
    """
    table: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for (file, method, layer), row in rows.items():
        for column, _, scale, _ in SUMMARY_COLUMNS:
            if column != "explain_ms" and row.get(column, "") != "":
                values = table.setdefault((method, layer), {}).setdefault(column, {})
                values[file] = float(row[column]) * scale
    if len(table) < 2:
        return []
    images = len({key[0] for key in rows})
    if images < 2:
        return [
            f"**Too few images to rank these methods:** with {images} image the spread of the "
            "per-image scores, and so whether any difference is more than chance, cannot be "
            "estimated; evaluate more images (--limit)."
        ]
    baseline = ("random", "-") if ("random", "-") in table else None
    layers = len({layer for _, layer in table if layer != "-"})
    lines: list[str] = []
    for column, header, _, better in SUMMARY_COLUMNS:
        scored = {key: metric[column] for key, metric in table.items() if column in metric}
        if len(scored) < 2:
            continue
        if baseline is not None and baseline in scored:
            pairs = [(key, baseline) for key in scored if key[0] not in REFERENCE_MAPS]
        else:
            ranked = sorted(
                scored,
                key=lambda key: sum(scored[key].values()) / len(scored[key]),
                reverse=better == "higher",
            )
            pairs = [(ranked[0], ranked[1])]
        compared = [
            (key, base, paired_difference(scored[key], scored[base])) for key, base in pairs
        ]
        unresolved = [item for item in compared if not item[2].resolved]
        if unresolved:
            lines.append(
                _unresolved_line(header, column, compared, unresolved, scored, layers, baseline)
            )
    if not lines:
        against = "random" if baseline is not None else "the runner-up"
        return [
            f"Ranking check: every difference from {against} is beyond chance (95% margin of "
            f"the paired per-image differences, {images} images)."
        ]
    return [
        f"**Warning: too few images for parts of this ranking.** With {images} images these "
        "differences are within chance: a difference between two rows counts only beyond the "
        "95% margin t(n-1) × sd / √n of their per-image differences (the same images score "
        "every row, so they are compared image by image).",
        "",
        *lines,
    ]


def _unresolved_line(
    header: str,
    column: str,
    compared: list[tuple[tuple[str, str], tuple[str, str], PairedDifference]],
    unresolved: list[tuple[tuple[str, str], tuple[str, str], PairedDifference]],
    scored: dict[tuple[str, str], dict[str, float]],
    layers: int,
    baseline: tuple[str, str] | None,
) -> str:
    def name(key: tuple[str, str]) -> str:
        return key[0] if key[1] == "-" or layers < 2 else f"{key[0]} @ {key[1]}"

    def mean(key: tuple[str, str]) -> float:
        return sum(scored[key].values()) / len(scored[key])

    digits = _digits(column)
    needs = sorted(item[2].needed for item in unresolved if item[2].needed is not None)
    # The example is the middle one by images needed, so the count quoted is typical.
    countable = [item for item in unresolved if item[2].needed is not None] or unresolved
    example = sorted(countable, key=lambda item: item[2].needed or 0)[(len(countable) - 1) // 2]
    key, base, difference = example
    shown = (
        f"{name(key)} {mean(key):.{digits}f} vs {name(base)} {mean(base):.{digits}f}: "
        f"{difference.mean:+.{digits}f} ± {difference.margin:.{digits}f}"
    )
    if baseline is None:
        what = f"the best two rows are not told apart ({shown})"
    elif len(compared) == 1:
        what = f"{name(key)} is not told apart from {name(base)} ({shown})"
    else:
        verb = "is" if len(unresolved) == 1 else "are"
        what = (
            f"{len(unresolved)} of {len(compared)} methods {verb} not told apart from "
            f"{name(base)} (e.g. {shown})"
        )
    if needs:
        typical = needs[(len(needs) - 1) // 2]
        size = "this size" if len(unresolved) == 1 else "of these sizes"
        outlook = f"about {typical:,} images would resolve differences {size}"
        if len(needs) < len(unresolved):
            outlook += " (some would need more than 100,000: the rows score alike)"
    else:
        outlook = "no realistic number of images would: the rows score alike"
    return f"- {header}: {what}; {outlook}."


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


def run_sanity(
    loaded: LoadedModel,
    images: Sequence[LabelledImage],
    methods: Sequence[str],
    layer: str,
    out: Path,
    *,
    max_channels: int | None = None,
) -> str:
    """Run :func:`camkit.metrics.sanity_check` on ``images``; write sanity.csv and sanity.md.

    Every step's mean correlation is written, with the first step below the threshold and the
    verdict of the rule (the map must lose its likeness once the classifier is random, and
    still at the last step). Reference maps (``center``, ``random``) read nothing from the model
    and are left out.

    Returns:
        The Markdown written to sanity.md.
    """
    from camkit._metrics_sanity import sanity_check

    cam_methods = [m for m in methods if m not in REFERENCE_MAPS]
    batch = prepare_batch([str(item.path) for item in images], loaded.preprocessing)
    labels = [item.label for item in images if item.label is not None]
    # With an unlabelled image among them, every image's prediction is explained.
    targets: list[int] | None = labels if len(labels) == len(images) else None
    options = {"max_channels": max_channels} if max_channels is not None else {}
    result = sanity_check(
        loaded, batch.images, cam_methods, layer, targets, explain_options=options
    )
    with (out / SANITY_FILES[0]).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "images", "layer", "perturbation", *result.steps,
                         "first_below", "passed"])  # fmt: skip
        for name, values in result.correlations.items():
            writer.writerow(
                [
                    name,
                    len(images),
                    result.layer,
                    f"{result.perturbation[name]:.4f}",
                    *(f"{float(v):.4f}" for v in values),
                    result.first_below[name] or "",
                    result.passed[name],
                ]
            )
    text = "\n".join(
        [
            f"Sanity check (Adebayo et al. 2018, arXiv:1810.03292) on {len(images)} images, "
            f"model {loaded.name}, layer {result.layer}: mean Spearman correlation with the "
            "trained model's map after randomising the blocks cumulatively from the output "
            "down. A method passes when its correlation is below 0.5 and below half the "
            "yardstick both after the first step (the classifier) and after the last.",
            "",
            result.table(),
            "",
            *(f"- {name}: {reason}" for name, reason in result.reasons.items()),
            "",
        ]
    )
    (out / SANITY_FILES[1]).write_text(text)
    return text


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
    sanity_images: int = 0,
) -> Path:
    """What ``camkit evaluate`` does; checks every option before the model loads."""
    import click
    from tqdm import tqdm

    from camkit.models import load_model

    chosen = check_methods(methods) if methods else default_methods()
    percentages = parse_percentages(road_percent)
    find_images(path, None)  # folder problems fail before the model loads
    out = check_out_dir(out)
    loaded = load_model(model_name, weights=weights, device=device)  # device None: CUDA if any
    # The model is ours alone here: channels-last runs Lite0's convolutions ~1.5x faster on CPU.
    loaded.model.to(memory_format=torch.channels_last)
    items = find_images(path, loaded.categories, limit, exclude=out)
    if not methods:
        others = [m for m in list_methods() if m not in chosen and not is_per_channel(m)]
        per_channel = [m for m in list_methods() if is_per_channel(m)]
        click.echo(
            "note: the default methods; add others with --method NAME, each about 60 forward "
            f"passes per image more: {', '.join(others)}; {', '.join(per_channel)} also run "
            "one pass per channel (minutes per image on a CPU)",
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
    steps = evaluation_steps(len(items), chosen, layers, road_percentages=percentages)
    with tqdm(total=steps, desc="evaluating", unit="step") as bar:

        def progress(step: str, finished: bool) -> None:
            if finished:
                bar.update(1)
            else:  # say what runs now: a slow step then does not look stuck
                bar.set_postfix_str(step)

        summary = evaluate_folder(
            loaded,
            items,
            chosen,
            layers,
            out,
            road_percentages=percentages,
            batch_size=batch_size,
            resume=resume,
            progress=progress,
            max_channels=max_channels,
        )
    click.echo(summary.read_text())
    click.echo(f"wrote {out / PER_IMAGE_FILE}, {out / 'summary.md'}, {out / 'curves.png'}")
    if sanity_images > 0 and any(m not in REFERENCE_MAPS for m in chosen):
        chosen_images = items[:sanity_images]
        click.echo(
            f"sanity check on {len(chosen_images)} images at layer {layers[0]!r}...", err=True
        )
        text = run_sanity(loaded, chosen_images, chosen, layers[0], out, max_channels=max_channels)
        click.echo(text)
        click.echo(f"wrote {out / SANITY_FILES[1]}")
    return summary
