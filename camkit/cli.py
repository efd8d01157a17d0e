"""The ``camkit`` command: a thin layer over :func:`camkit.explain` and friends.

Every command catches camkit errors, ``ValueError``/``TypeError`` and ``OSError`` at its
boundary and prints one line, ``error: <problem>; <how to fix>``, to stderr with exit code 2.

Files are safe: no command writes over one of its inputs, none replaces an existing output
unless ``--overwrite`` is given (``demo`` replaces only the file an earlier demo wrote), each PNG
is written to a temporary name and renamed into place (a run stopped halfway leaves no
half-written file), a run that fails removes the ``--out`` folder it created if it is still
empty, and ``explain`` on several images goes on past an image that fails (a missing file
included), then lists the failures and exits with code 2.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.resources
import os
import struct
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import torch

import camkit
from camkit._errors import CamkitError, LayerNotFoundError, MethodNotFoundError
from camkit._targets import class_index
from camkit.cam import get_method
from camkit.classroom import classroom
from camkit.overlay import get_colormap
from camkit.samples import sample_image_path

__all__ = ["main"]

DEFAULT_MODEL = "efficientnet_lite0"
#: How many predictions the commands print per image.
TOP_PREDICTIONS = 5
#: Exit code of every error, the same as click's usage errors.
ERROR_EXIT_CODE = 2
#: Exit code of an unexpected failure (a bug, or the model itself raising); set CAMKIT_TRACEBACK=1
#: to see its traceback.
INTERNAL_ERROR_EXIT_CODE = 1
#: The file `camkit demo` writes, and the PNG text that marks it as the demo's own.
DEMO_FILE = "camkit-demo.png"
DEMO_MARK = {"Source": "camkit demo"}
#: Files `camkit evaluate` writes into --out (as in camkit._evaluate, imported only when used).
EVALUATE_OUTPUTS = (
    "per_image.csv", "curves.csv", "summary.csv", "summary.md", "curves.png",
    "sanity.csv", "sanity.md",
)  # fmt: skip

Command = TypeVar("Command", bound=Callable[..., Any])


class CommandError(Exception):
    """A problem found by the CLI itself; the message is ``<problem>; <how to fix>``."""


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _describe_os_error(error: OSError) -> str:
    reason = error.strerror or str(error) or type(error).__name__
    where = f" {str(error.filename)!r}" if error.filename is not None else ""
    return f"cannot access{where} ({reason}); check the path and its permissions"


def _reports_errors(command: Command) -> Command:
    """Turn expected errors into one ``error: ...`` line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:  # output piped into `head` and closed early: not an error
            sys.stderr.close()
            raise click.exceptions.Exit(0) from None
        except (CommandError, CamkitError, ValueError, TypeError, OSError) as error:
            message = _message(error)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:  # unexpected: still one line, unless asked for the traceback
            if os.environ.get("CAMKIT_TRACEBACK"):
                raise
            click.echo(f"error: {_unexpected(error)}", err=True)
            raise click.exceptions.Exit(INTERNAL_ERROR_EXIT_CODE) from None
        click.echo(f"error: {message}", err=True)
        raise click.exceptions.Exit(ERROR_EXIT_CODE)

    return wrapper  # type: ignore[return-value]


def _unexpected(error: Exception) -> str:
    """One line for an error camkit did not foresee, with what to do about it."""
    text = _one_line(str(error) or type(error).__name__)
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return f"out of memory ({text}); use a smaller --batch-size or --device cpu"
    return (
        f"unexpected {type(error).__name__}: {text} (rerun with CAMKIT_TRACEBACK=1 for the "
        "traceback and report it if camkit is at fault)"
    )


def _message(error: Exception) -> str:
    """The one-line text of an expected error."""
    if isinstance(error, OSError) and not isinstance(error, CamkitError):
        return _describe_os_error(error)
    return _one_line(str(error) or type(error).__name__)


def _version() -> str:
    version = getattr(camkit, "__version__", None)
    if version:
        return str(version)
    try:
        return importlib.metadata.version("camkit")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------------------------
# Checking options before the model loads, so mistakes fail in a second
# --------------------------------------------------------------------------------------------


def _check_methods(methods: Sequence[str]) -> list[str]:
    # The library's lookup, before the model loads: its error lists the closest and known names.
    return [get_method(method).name for method in methods]


def _check_smoothing(
    methods: Sequence[str], smooth: str | None, samples: int | None, sigma: float | None
) -> dict[str, Any]:
    """The library's checks of the smoothing options, before the model loads."""
    from camkit.smoothing import smoothing_options

    try:
        smoothing_options(smooth, samples, sigma, 0, "smoothgradcam++" in methods)
    except (ValueError, TypeError) as error:
        # Name the options as typed on the command line.
        message = str(error)
        for name in ("smooth_samples", "smooth_sigma", "smooth"):
            message = message.replace(f"`{name}`", "--" + name.replace("_", "-"))
        message = message.replace("smooth='noise'", "--smooth noise")
        raise CommandError(message) from None
    return {"smooth": smooth, "smooth_samples": samples, "smooth_sigma": sigma}


def _check_drawing(colormap: str, alpha: float) -> None:
    get_colormap(colormap)  # its message lists the closest names
    if not 0.0 <= alpha <= 1.0:
        raise CommandError(
            f"--alpha {alpha} is outside [0, 1]; pass a value from 0 (picture only) "
            "to 1 (heatmap only), e.g. --alpha 0.5"
        )


def _device(choice: str) -> str | None:
    if choice == "cuda" and not torch.cuda.is_available():
        raise CommandError("--device cuda was asked but CUDA is not available; use --device cpu")
    return None if choice == "auto" else choice


def _image_problem(path: Path) -> str | None:
    """Why ``path`` cannot be an input image (missing, a folder), or ``None``."""
    if not path.exists():
        return f"image file {str(path)!r} not found; check the path"
    if not path.is_file():
        return f"{str(path)!r} is not a file; pass image files, not folders"
    return None


def _failures_summary(failed: Sequence[Path], total: int) -> CommandError:
    listed = ", ".join(str(path) for path in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    others = "the others were written; " if len(failed) < total else ""
    return CommandError(
        f"{len(failed)} of {total} images failed ({listed}{more}); {others}fix those "
        "inputs (reasons above) and run them again"
    )


@contextmanager
def _output_folder(out: Path, create: bool = True) -> Iterator[Path]:
    """Create ``out`` (checked writable); if the command then fails, remove what it created.

    Only folders missing when the block began, and only while they are empty: a failed run
    leaves no empty ``--out`` behind, and never touches a folder that existed or holds a file.
    With ``create=False`` the block creates ``out`` itself (after checks of its own).
    """
    from camkit._evaluate import check_out_dir

    created = [folder for folder in (out, *out.parents) if not folder.exists()]
    checked = check_out_dir(out) if create else out
    try:
        yield checked
    except BaseException:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty, or gone: keep it and everything above it
                break
        raise


def _resolve_target(target: str | None, categories: Sequence[str] | None) -> int | None:
    """Turn ``--target`` (a class index or a class name) into a class index."""
    if target is None:
        return None
    text = target.strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if categories is not None and not 0 <= index < len(categories):
            raise CommandError(
                f"--target {index} is out of range; pass a class index from 0 to "
                f"{len(categories) - 1} or a class name"
            )
        if index < 0:
            raise CommandError(f"--target {index} is negative; pass a class index from 0")
        return index
    return class_index(text, categories)  # the library's matcher: one line errors, suggestions


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _output_path(out: Path, stem: str, taken: set[Path]) -> Path:
    """Return ``out/<stem>-camkit.png``, numbered when it would hit an input or earlier output."""
    candidate = out / f"{stem}-camkit.png"
    number = 2
    while candidate.resolve() in taken:
        candidate = out / f"{stem}-camkit-{number}.png"
        number += 1
    taken.add(candidate.resolve())
    return candidate


def _refuse_existing(paths: Sequence[Path], overwrite: bool, fix: str = "") -> None:
    """Stop before any work when an output file exists and ``--overwrite`` was not given."""
    existing = [path for path in paths if path.is_file() or path.is_symlink()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise CommandError(
            f"output {str(existing[0])!r} already exists{more}; pass --overwrite to replace "
            f"it{fix}, or choose another --out"
        )


def _top_predictions(explanation: Any, index: int = 0) -> list[str]:
    probs = explanation.probs[index]
    count = min(TOP_PREDICTIONS, probs.shape[-1])
    values, classes = probs.topk(count)
    categories = getattr(explanation, "categories", None)
    names = [categories[int(c)] if categories is not None else f"class {int(c)}" for c in classes]
    width = max(len(name) for name in names)
    return [
        f"  {rank}. {name:<{width}}  {float(value):6.1%}  (class {int(c)})"
        for rank, (name, value, c) in enumerate(zip(names, values, classes, strict=True), start=1)
    ]


def _explained_classes(explanation: Any, index: int = 0) -> str:
    if explanation.targets is None:
        return "a custom score"
    labels = explanation.labels[index] if explanation.labels is not None else None
    classes = [int(c) for c in explanation.targets[index]]
    return ", ".join(
        f"{labels[rank]} ({c})" if labels is not None else f"class {c}"
        for rank, c in enumerate(classes)
    )


def _report(title: str, explanation: Any, written: Path) -> None:
    weights = " (random weights: they mean nothing)" if explanation.pretrained is False else ""
    heading = f"{title}: top-{TOP_PREDICTIONS} predictions{weights}"
    lines = [heading, *_top_predictions(explanation)]
    lines.append(
        f"explained {_explained_classes(explanation)} with {', '.join(explanation.methods)} "
        f"at {', '.join(explanation.layers)}"
    )
    lines.append(f"wrote {written}")
    from tqdm import tqdm

    # Clear any progress bar on stderr before printing, so the two do not interleave.
    with tqdm.external_write_mode():
        click.echo("\n".join(lines))


def _explain_and_save(
    loaded: Any,
    image: Path,
    written: Path,
    *,
    methods: Sequence[str],
    layers: Sequence[str],
    target: int | None,
    top_k: int | None,
    device: str | None,
    colormap: str,
    alpha: float,
    smoothing: dict[str, Any] | None = None,
    perturbation: dict[str, Any] | None = None,
    png_text: dict[str, str] | None = None,
) -> Any:
    explanation = camkit.explain(
        loaded,
        str(image),
        methods=tuple(methods),
        layers=tuple(layers),
        target=target,
        top_k=top_k,
        device=device,
        **(smoothing or {}),
        **(perturbation or {}),
    )
    try:
        if png_text is None:
            explanation.save(written, index=0, colormap=colormap, alpha=alpha)
        else:
            from camkit.overlay import figure_to_png_bytes, write_atomically

            figure = explanation.figure(index=0, colormap=colormap, alpha=alpha)
            write_atomically(written, _png_with_text(figure_to_png_bytes(figure), png_text))
    except OSError as error:
        raise CommandError(
            f"cannot write {str(written)!r} ({error.strerror or error}); "
            "pass a writable folder with --out"
        ) from None
    return explanation


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------

_model_option = click.option(
    "--model",
    "model_name",
    default=DEFAULT_MODEL,
    show_default=True,
    metavar="NAME",
    help="Model to explain, as accepted by camkit.load_model.",
)
_device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to run the model; auto picks CUDA when available.",
)
_out_option = click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    metavar="DIR",
    help="Folder for the PNG files (created when missing).",
)
_overwrite_option = click.option(
    "--overwrite",
    is_flag=True,
    help="Replace output files that already exist (inputs are never written over).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="camkit", message="%(prog)s %(version)s")
def main() -> None:
    """Grad-CAM-family heatmaps for PyTorch image classifiers."""


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@_model_option
@click.option(
    "--method",
    "methods",
    multiple=True,
    default=("gradcam",),
    show_default=True,
    metavar="M",
    help="CAM method; repeat for several (see camkit.list_methods()).",
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    default=("auto",),
    show_default=True,
    metavar="L",
    help="Layer to explain; repeat for several (see `camkit layers`).",
)
@click.option(
    "--target",
    metavar="CLASS",
    default=None,
    help="Class to explain, as an index or a name; default the top prediction.",
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Explain the N most likely classes of each image.",
)
@click.option(
    "--weights",
    default="DEFAULT",
    show_default=True,
    metavar="W",
    help="Pretrained weights name, a state-dict file, or 'none' for random weights.",
)
@_out_option
@_overwrite_option
@click.option(
    "--colormap", default="jet", show_default=True, metavar="NAME", help="Matplotlib colormap."
)
@click.option(
    "--alpha",
    type=float,
    default=0.5,
    show_default=True,
    help="Heatmap weight in overlays, 0 to 1.",
)
@click.option(
    "--smooth",
    default=None,
    metavar="noise|augment",
    help="Average each map over noisy copies (noise) or flipped and rescaled ones (augment).",
)
@click.option(
    "--smooth-samples",
    type=int,
    default=None,
    metavar="N",
    help="Noisy copies per image for --smooth noise and smoothgradcam++ [default: 16].",
)
@click.option(
    "--smooth-sigma",
    type=float,
    default=None,
    metavar="S",
    help="Noise level, a fraction of the image's value range [default: 0.15].",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Perturbed images per forward pass for scorecam, sscam, iscam and ablationcam "
    "[default: 32 on CPU, 128 on CUDA].",
)
@click.option(
    "--max-channels",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Approximate perturbation methods with the N channels of largest activation "
    "[default: all, exact].",
)
@click.option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help="Progress bar for slow perturbation methods (shown only on a terminal).",
)
@_device_option
@_reports_errors
def explain(
    images: tuple[Path, ...],
    model_name: str,
    methods: tuple[str, ...],
    layers: tuple[str, ...],
    target: str | None,
    top_k: int | None,
    weights: str,
    out: Path,
    overwrite: bool,
    colormap: str,
    alpha: float,
    smooth: str | None,
    smooth_samples: int | None,
    smooth_sigma: float | None,
    batch_size: int | None,
    max_channels: int | None,
    progress: bool,
    device: str,
) -> None:
    """Explain images; write one labelled PNG each.

    For every IMAGE, writes <stem>-camkit.png into --out (one row per layer, class and method:
    the picture, the method's heatmap, its overlay) and prints the top-5 predictions. An
    existing output is kept unless --overwrite is given; an input is never written over. An
    image that fails is reported and the others are still explained; the command then lists
    the failures and exits with code 2.

    \b
    Examples:
      camkit explain cat.jpg
      camkit explain *.jpg --method gradcam --method gradcam++ --top-k 2 --out heatmaps
      camkit explain dog.png --model resnet50 --layer layer4 --target "bull mastiff"
      camkit explain dog.png --method gradcam --method guided-gradcam --smooth noise
    """  # noqa: D301 - "\b" is click's marker for a paragraph it must not rewrap
    checked_methods = _check_methods(methods)
    smoothing = _check_smoothing(checked_methods, smooth, smooth_samples, smooth_sigma)
    _check_drawing(colormap, alpha)
    if target is not None and top_k is not None:
        raise CommandError("--target and --top-k both choose classes; pass only one of them")
    problems = {image: problem for image in images if (problem := _image_problem(image))}
    if len(problems) == len(images):  # nothing to explain: say so before loading the model
        if len(images) == 1:
            raise CommandError(problems[images[0]])
        for image, problem in problems.items():
            click.echo(f"error: {image}: {problem}", err=True)
        raise _failures_summary(list(problems), len(images))
    torch_device = _device(device)
    with _output_folder(out) as out:
        _explain_images(
            images,
            problems,
            out,
            overwrite=overwrite,
            model_name=model_name,
            weights=weights,
            torch_device=torch_device,
            target=target,
            options={
                "methods": checked_methods,
                "layers": layers,
                "top_k": top_k,
                "device": torch_device,
                "colormap": colormap,
                "alpha": alpha,
                "smoothing": smoothing,
                "perturbation": {
                    "batch_size": batch_size,
                    "max_channels": max_channels,
                    "progress": None if progress else False,
                },
            },
        )


def _explain_images(
    images: Sequence[Path],
    problems: dict[Path, str],
    out: Path,
    *,
    overwrite: bool,
    model_name: str,
    weights: str,
    torch_device: str | None,
    target: str | None,
    options: dict[str, Any],
) -> None:
    """Explain each image into ``out``; report an image that fails and go on with the others."""
    from tqdm import tqdm

    taken = {path.resolve() for path in images}
    outputs = {image: _output_path(out, image.stem, taken) for image in images}
    _refuse_existing([outputs[image] for image in images if image not in problems], overwrite)
    loaded = camkit.load_model(model_name, weights=_weights(weights), device=torch_device)
    class_index = _resolve_target(target, getattr(loaded, "categories", None))
    interactive = len(images) > 1 and sys.stderr.isatty()
    failed: list[Path] = []
    for image in tqdm(images, desc="explaining", unit="image", disable=not interactive):
        try:
            if image in problems:  # missing: reported in its turn, like any image that fails
                raise CommandError(problems[image])
            explanation = _explain_and_save(
                loaded, image, outputs[image], target=class_index, **options
            )
        except (CommandError, CamkitError, ValueError, TypeError, OSError, RuntimeError) as error:
            # One image alone, or a mistake every image would repeat: stop with that one line.
            if len(images) == 1 or isinstance(error, (LayerNotFoundError, MethodNotFoundError)):
                raise
            failed.append(image)
            with tqdm.external_write_mode():
                click.echo(f"error: {image}: {_message(error)}", err=True)
            continue
        _report(str(image), explanation, outputs[image])
    if failed:
        raise _failures_summary(failed, len(images))


def _weights(text: str) -> str | None:
    """``--weights``: 'none' (any case) means random weights."""
    return None if text.strip().lower() == "none" else text


@main.command()
@_model_option
@click.option(
    "--weights",
    default="none",
    show_default=True,
    metavar="W",
    help="Weights to load, as for explain; names and shapes do not depend on them, so the "
    "default loads none (nothing is downloaded).",
)
@_reports_errors
def layers(model_name: str, weights: str) -> None:
    """List a model's layers; * marks the auto choice.

    Prints every module in execution order with its type and output shape; pass a name to
    `camkit explain --layer`.
    """
    loaded = camkit.load_model(model_name, weights=_weights(weights), device="cpu")
    infos = camkit.list_layers(loaded)
    rows = [
        (
            "*" if info.is_auto else " ",
            info.name,
            info.type_name,
            _shape_text(info.output_shape, getattr(info, "calls", 1)),
        )
        for info in infos
    ]
    header = (" ", "name", "type", "output shape")
    widths = [max(len(row[column]) for row in [header, *rows]) for column in (1, 2)]
    click.echo(f"layers of {model_name} in execution order (* = picked by --layer auto)")
    click.echo(f"  {'name':<{widths[0]}}  {'type':<{widths[1]}}  output shape")
    for mark, name, type_name, shape in rows:
        click.echo(f"{mark} {name:<{widths[0]}}  {type_name:<{widths[1]}}  {shape}".rstrip())


def _shape_text(shape: Sequence[int] | None, calls: int = 1) -> str:
    text = "-" if shape is None else "(" + ", ".join(str(size) for size in shape) + ")"
    # A module reused in one forward pass (a shared activation) reports its last call.
    return f"{text}  last of {calls} calls" if calls > 1 else text


@main.command()
@_out_option
@_overwrite_option
@_device_option
@_reports_errors
def demo(out: Path, overwrite: bool, device: str) -> None:
    """Explain the bundled cat photo into camkit-demo.png (replacing an earlier demo's file)."""
    torch_device = _device(device)
    sample = sample_image_path("chelsea")
    if not sample.is_file():
        raise CommandError(
            "the sample image chelsea.png is missing from the installation; reinstall camkit"
        )
    with _output_folder(out) as out:
        written = out / DEMO_FILE
        if not _written_by_demo(written):  # an earlier demo's own file is replaced freely
            _refuse_existing([written], overwrite, " (it was not written by camkit demo)")
        loaded = camkit.load_model(DEFAULT_MODEL, device=torch_device)
        explanation = _explain_and_save(
            loaded,
            sample,
            written,
            methods=("gradcam",),
            layers=("auto",),
            target=None,
            top_k=None,
            device=torch_device,
            colormap="jet",
            alpha=0.5,
            png_text=DEMO_MARK,
        )
    _report("chelsea.png (sample)", explanation, written)


def _written_by_demo(path: Path) -> bool:
    """Whether ``path`` is a PNG that ``camkit demo`` wrote (it carries :data:`DEMO_MARK`)."""
    from PIL import Image

    if not path.is_file() or path.is_symlink():
        return False
    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {})
            return image.format == "PNG" and all(text.get(k) == v for k, v in DEMO_MARK.items())
    except (OSError, ValueError, SyntaxError):  # not an image, or a damaged one: not ours
        return False


def _png_with_text(png: bytes, text: dict[str, str]) -> bytes:
    """``png`` with tEXt chunks added right after its header chunk (IHDR)."""
    header_end = 8 + 25  # the PNG signature, then IHDR: length, type, 13 bytes, CRC
    chunks = b""
    for key, value in text.items():
        data = key.encode("latin-1") + b"\0" + value.encode("latin-1")
        body = b"tEXt" + data
        chunks += struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    return png[:header_end] + chunks + png[header_end:]


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@_model_option
@click.option(
    "--method",
    "methods",
    multiple=True,
    metavar="M",
    help="Method or reference map (center, random); repeat for several. Default: gradcam and "
    "gradcam++, plus center and random (each map costs ~60 forward passes per image).",
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    default=("auto",),
    show_default=True,
    metavar="L",
    help="Layer to explain; repeat for several.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, metavar="N", help="Use the first N images."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("camkit-evaluation"),
    show_default=True,
    metavar="DIR",
    help="Folder for the CSV files, the table and the plot.",
)
@click.option(
    "--road",
    is_flag=True,
    help="Also score ROAD at 10,50,90 % (slow: minutes per image on a CPU, for its sparse solves).",
)
@click.option(
    "--road-percent",
    default=None,
    metavar="P,P",
    help="ROAD at these percentages of pixels removed (implies --road), or 'none'.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Most images per forward pass of the metrics.",
)
@click.option(
    "--max-channels",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Per-channel methods (scorecam, ...) perturb only each image's N strongest channels "
    "(an approximation; rows are named 'scorecam (max_channels=N)').",
)
@click.option(
    "--sanity",
    "sanity_images",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="Also run the sanity check (randomise the model from the output down) on the first N "
    "images: every step's correlation, the first below 0.5, and pass only if the map already "
    "changes with a random classifier; writes sanity.csv and sanity.md.",
)
@click.option("--resume", is_flag=True, help="Keep the rows already in --out and continue.")
@_overwrite_option
@click.option(
    "--weights",
    default="DEFAULT",
    show_default=True,
    metavar="W",
    help="Pretrained weights name, a state-dict file, or 'none' for random weights.",
)
@_device_option
@_reports_errors
def evaluate(
    path: Path,
    model_name: str,
    methods: tuple[str, ...],
    layers: tuple[str, ...],
    limit: int | None,
    out: Path,
    road: bool,
    road_percent: str | None,
    batch_size: int,
    max_channels: int | None,
    sanity_images: int,
    resume: bool,
    overwrite: bool,
    weights: str,
    device: str,
) -> None:
    """Score methods on a folder of images: Average Drop, deletion, insertion (ROAD on request).

    Labels come from a labels.csv, WordNet-id file names (n01440764_tench.JPEG) or an
    ImageFolder layout, else the model's prediction is explained. Writes per_image.csv,
    curves.csv, summary.csv, summary.md and curves.png into --out. The metrics: see the
    camkit.metrics module docstring.

    \b
    Examples:
      camkit evaluate ../shared/data/imagenet-sample --limit 10
      camkit evaluate photos/ --method gradcam --method center --out scores
      camkit evaluate ../shared/data/imagenet-sample --limit 10 --sanity 4
    """  # noqa: D301 - "\b" is click's marker for a paragraph it must not rewrap
    from camkit._evaluate import EVALUATE_ROAD_PERCENTAGES, run_evaluate

    if not resume and out.is_dir():
        _refuse_existing([out / name for name in EVALUATE_OUTPUTS], overwrite, " (or --resume)")
    if road_percent is None:
        road_percent = ",".join(map(str, EVALUATE_ROAD_PERCENTAGES)) if road else "none"
    with _output_folder(out, create=False) as out:  # created once the image folder is checked
        run_evaluate(
            path,
            model_name=model_name,
            methods=methods,
            layers=layers,
            limit=limit,
            out=out,
            road_percent=road_percent,
            batch_size=batch_size,
            resume=resume,
            weights=_weights(weights),
            device=_device(device),
            max_channels=max_channels,
            sanity_images=sanity_images,
        )


@main.command("export-explorer")
@click.argument("pictures", nargs=-1, metavar="[PICTURES]...")
@_model_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("explorer.html"),
    show_default=True,
    metavar="FILE",
    help="The HTML file to write.",
)
@_overwrite_option
@click.option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help="Progress bar over the pictures (shown only on a terminal).",
)
@_device_option
@_reports_errors
def export_explorer(
    pictures: tuple[str, ...],
    model_name: str,
    out: Path,
    overwrite: bool,
    progress: bool,
    device: str,
) -> None:
    """Write the explorer as one HTML page that needs no server (open it in any browser).

    Every layer, one-pass method and top-5 class of each PICTURE (image files or sample names;
    default the four sample pictures) is computed now and stored in the page, whose controls
    and labels are the notebook explorer's: students open the file offline, with no kernel.

    \b
    Examples:
      camkit export-explorer --out explorer.html
      camkit export-explorer cat.jpg dog.jpg --model efficientnet_lite2 --out pets.html
    """  # noqa: D301 - "\b" is click's marker for a paragraph it must not rewrap
    from camkit.explorer_page import check_out, export_explorer, read_pictures

    torch_device = _device(device)
    _refuse_existing([out], overwrite)
    check_out(out)
    chosen = read_pictures(list(pictures) or None)  # a bad picture fails before the model loads
    written = export_explorer(
        [picture.image for picture in chosen],
        model_name,
        out,
        titles=[picture.title for picture in chosen],
        device=torch_device,
        progress=None if progress else False,
    )
    size = written.stat().st_size / 1e6
    click.echo(f"wrote {written} ({size:.1f} MB, {len(chosen)} pictures); open it in a browser")


main.add_command(classroom)

if __name__ == "__main__":  # pragma: no cover
    main()
