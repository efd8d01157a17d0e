"""The explorer as one web page: every map computed once here, drawn by the browser, no server.

``camkit.export_explorer(out="explorer.html")`` (or ``camkit export-explorer``) runs one
:func:`camkit.explain` call per picture that asks for every candidate layer of the model (the
explorer's layer slider: :func:`camkit._explorer.candidate_layers`), every one-pass method and the
top 5 classes, and writes one self-contained HTML file. Opened in a browser, it has the explorer's
controls (picture, layer, method, class, opacity, colour map) and labels (model, layer with its
name and shape, method, class, probability), and needs no kernel, no server and no network:
the data, the script and the style are all inside the file.

Each raw map is stored at its layer's own resolution, min-max scaled to 0-255 (one byte per
value, base64). The page's script does what :func:`camkit.engine.upsample_and_normalise` and
:func:`camkit.overlay.overlay` do: bilinear upsampling to the picture's size (PyTorch's
``align_corners=False`` convention), min-max normalisation, a 256-entry colour table (the same
one the widget uses, :func:`camkit._explorer.colour_table`) and the blend
``(1 - alpha) * photo + alpha * colour``. So the page shows :func:`camkit.explain`'s maps to within
the 8-bit rounding of the stored values (``tests/test_explorer_page.py`` reads the canvas and
compares).

This is an interface module: no formula lives here, only the explain call and the packing.
"""

from __future__ import annotations

import base64
import datetime
import html
import importlib.resources
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from camkit._errors import ArgumentTypeError, CamkitError, InputError, MapWarning
from camkit._explorer import (
    COLORMAPS,
    METHOD_TITLES,
    MODEL_TITLES,
    candidate_layers,
    colour_table,
    one_pass_methods,
)
from camkit._inputs import load_image
from camkit.api import explain
from camkit.cam import get_method
from camkit.layers import LayerInfo
from camkit.models import LoadedModel, load_model
from camkit.overlay import write_atomically
from camkit.samples import SAMPLES, sample_image, sample_image_path

__all__ = [
    "DEFAULT_COLORMAPS",
    "Picture",
    "check_out",
    "explorer_html",
    "export_explorer",
    "read_pictures",
]

#: The colour maps offered, first one shown first: jet as the papers and the tutorial draw the
#: maps, and viridis, readable with every common colour-vision deficiency and in grey.
DEFAULT_COLORMAPS = ("jet", "viridis")

#: How many of the model's most likely classes the page offers per picture.
TOP_CLASSES = 5

#: The page's HTML, style and script, with the data put in at ``/*CAMKIT_DATA*/``.
_TEMPLATE = "explorer_page.html"
_DATA_MARK = "/*CAMKIT_DATA*/null"


@dataclass
class Picture:
    """A picture for the page and the name its button shows."""

    title: str
    image: Image.Image


def export_explorer(
    pictures: Iterable[str | os.PathLike[str] | Image.Image] | str | os.PathLike[str] | None = None,
    model: str | LoadedModel | nn.Module = "efficientnet_lite0",
    out: str | os.PathLike[str] = "explorer.html",
    *,
    titles: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    colormaps: Sequence[str] = DEFAULT_COLORMAPS,
    device: str | torch.device | None = "cpu",
    progress: bool | None = True,
) -> Path:
    """Write the explorer as one self-contained HTML page that needs no server.

    Args:
        pictures: Image files, sample names (:data:`camkit.samples.SAMPLES`) or PIL images;
            the four sample pictures by default.
        model: A name for :func:`camkit.load_model`, a :class:`camkit.LoadedModel` or an
            ``nn.Module`` (ImageNet preprocessing, classes shown by index).
        out: The HTML file to write (replaced if it exists; written under a temporary name and
            renamed, so a failure never leaves half a page).
        titles: The pictures' names on the page's buttons; by default the file name, "sample:
            NAME" or "picture N".
        methods: One-pass method names; every one-pass method by default
            (:func:`camkit._explorer.one_pass_methods`).
        colormaps: Matplotlib colour maps offered by the page's colour-map control, first one
            shown first.
        device: Where the model runs.
        progress: A tqdm progress bar over the pictures (in a notebook, its widget);
            ``None`` shows it on a terminal only.

    Returns:
        The path written.

    Raises:
        ValueError: For a missing or unreadable picture, an unknown model, method or colour
            map, or an ``out`` that cannot be written (checked before any model runs).
        TypeError: For arguments of the wrong type.
    """
    target = check_out(out)
    text = explorer_html(
        pictures,
        model,
        titles=titles,
        methods=methods,
        colormaps=colormaps,
        device=device,
        progress=progress,
    )
    write_atomically(target, text.encode("utf-8"))
    return target


def explorer_html(
    pictures: Iterable[str | os.PathLike[str] | Image.Image] | str | os.PathLike[str] | None = None,
    model: str | LoadedModel | nn.Module = "efficientnet_lite0",
    *,
    titles: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    colormaps: Sequence[str] = DEFAULT_COLORMAPS,
    device: str | torch.device | None = "cpu",
    progress: bool | None = True,
) -> str:
    """The text of the page :func:`export_explorer` writes (arguments as there)."""
    chosen = read_pictures(pictures)
    if titles is not None:
        titles = [titles] if isinstance(titles, str) else list(titles)
        if len(titles) != len(chosen):
            raise InputError(
                f"`titles` has {len(titles)} names for {len(chosen)} pictures; pass one each"
            )
        chosen = [
            Picture(str(title), picture.image)
            for title, picture in zip(titles, chosen, strict=True)
        ]
    method_names = _check_methods(methods)
    tables = _colour_tables(colormaps)
    loaded = _load(model, device)
    data = _page_data(loaded, chosen, method_names, tables, progress)
    template = importlib.resources.files("camkit").joinpath(_TEMPLATE).read_text(encoding="utf-8")
    if _DATA_MARK not in template:  # pragma: no cover - a broken installation
        raise CamkitError(f"camkit/{_TEMPLATE} has no data mark; reinstall camkit")
    # "</" cannot end the script element early: JSON allows "<\/" for "</".
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(f"camkit explorer: {data['model']['title']}")
    page = template.replace("<title>camkit explorer</title>", f"<title>{title}</title>")
    return page.replace(_DATA_MARK, payload)


# --------------------------------------------------------------------------------------------
# Checking the arguments before the model runs
# --------------------------------------------------------------------------------------------


def check_out(out: str | os.PathLike[str]) -> Path:
    """``out`` as a path, checked to be a writable file location (nothing is written).

    Raises:
        ValueError: When ``out`` is a folder, its folder is missing or not a folder, or cannot
            be written.
    """
    if not isinstance(out, (str, os.PathLike)):
        raise ArgumentTypeError(f"`out` must be a file path, got {type(out).__name__}")
    path = Path(out)
    if not str(out).strip():
        raise InputError("`out` is an empty string; pass a file name such as explorer.html")
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder; pass a file name such as explorer.html")
    folder = path.parent
    if not folder.exists():
        raise InputError(
            f"cannot write {str(path)!r}: folder {str(folder)!r} does not exist; create it or "
            "choose another file"
        )
    if not folder.is_dir():
        raise InputError(
            f"cannot write {str(path)!r}: {str(folder)!r} is not a folder; choose another file"
        )
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"cannot write {str(path)!r}: permission denied; choose a writable place")
    return path


def read_pictures(
    pictures: Iterable[str | os.PathLike[str] | Image.Image] | str | os.PathLike[str] | None,
) -> list[Picture]:
    """The pictures with their titles; files are read now, so a bad one fails before the model.

    A string that is not an existing file but names a sample picture is that sample.
    """
    if pictures is None:
        return [Picture(f"sample: {name}", sample_image(name)) for name in SAMPLES]
    if isinstance(pictures, (str, os.PathLike, Image.Image)):
        pictures = [pictures]
    chosen: list[Picture] = []
    for position, item in enumerate(pictures):
        if isinstance(item, Image.Image):
            chosen.append(Picture(f"picture {position + 1}", item.convert("RGB")))
        elif isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if isinstance(item, str) and not path.exists() and _is_sample(item):
                file_name = sample_image_path(item).name
                name = next(key for key, value in SAMPLES.items() if value == file_name)
                chosen.append(Picture(f"sample: {name}", sample_image(name)))
            elif not path.exists():
                samples = ", ".join(SAMPLES)
                raise InputError(
                    f"image file {str(path)!r} not found; check the path (or name a sample "
                    f"picture: {samples})"
                )
            else:
                chosen.append(Picture(path.name, load_image(path)))
        else:
            raise ArgumentTypeError(
                "`pictures` must be image file paths, sample names or PIL images, got "
                f"{type(item).__name__}"
            )
    if not chosen:
        raise InputError("`pictures` is empty; pass at least one picture, or None for the samples")
    return chosen


def _is_sample(name: str) -> bool:
    try:
        sample_image_path(name)
    except ValueError:
        return False
    return True


def _check_methods(methods: Sequence[str] | None) -> list[str]:
    if methods is None:
        return one_pass_methods()
    if isinstance(methods, str):
        methods = [methods]
    names = [get_method(name).name for name in methods]  # unknown names: the registry's message
    for name in names:
        if get_method(name).perturbation or get_method(name).own_pass:
            raise InputError(
                f"method {name!r} needs passes of its own for every map; the page takes "
                f"one-pass methods: {', '.join(one_pass_methods())}"
            )
    if not names:
        raise InputError("`methods` is empty; pass at least one method, or None for all")
    return list(dict.fromkeys(names))


def _colour_tables(colormaps: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    if isinstance(colormaps, str):
        colormaps = [colormaps]
    names = list(dict.fromkeys(colormaps))
    if not names:
        raise InputError("`colormaps` is empty; pass at least one, e.g. ('jet', 'viridis')")
    return [(name, colour_table(name)) for name in names]  # unknown: the closest names


def _load(model: str | LoadedModel | nn.Module, device: str | torch.device | None) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, nn.Module):
        return LoadedModel(model, name=type(model).__name__)
    if isinstance(model, (str, os.PathLike)):
        return load_model(model, device=device)
    raise ArgumentTypeError(
        f"`model` must be a model name, a camkit.LoadedModel or a torch.nn.Module, got "
        f"{type(model).__name__}"
    )


# --------------------------------------------------------------------------------------------
# Computing and packing
# --------------------------------------------------------------------------------------------


def _page_data(
    loaded: LoadedModel,
    pictures: Sequence[Picture],
    methods: Sequence[str],
    tables: Sequence[tuple[str, np.ndarray]],
    progress: bool | None,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    layers = candidate_layers(loaded)
    title = MODEL_TITLES.get(loaded.name or "", loaded.name or "model")
    top = min(TOP_CLASSES, _class_count(loaded, pictures[0].image, methods[0], layers[-1].name))
    packed: list[dict[str, Any]] = []
    kept = list(layers)
    bar = tqdm(
        pictures,
        desc=f"explaining ({title}, {len(layers)} layers x {len(methods)} methods x top {top})",
        unit="picture",
        disable=(None if progress is None else not progress),
    )
    for picture in bar:
        exp, kept = _explain_all(loaded, picture.image, kept, methods, top)
        packed.append(_pack_picture(picture, exp, kept, methods))
    bar.close()
    for entry in packed:  # [layer][method], in the slider's order; a layer dropped for a
        entry["maps"] = [entry["maps"][info.name] for info in kept]  # later picture: for all
    first = packed[0]
    colormap_titles = {name: label for label, name in COLORMAPS}  # the widget's button labels
    auto = [i for i, info in enumerate(kept) if info.is_auto]
    return {
        "model": {"title": title, "name": loaded.name, "pretrained": loaded.pretrained},
        "size": first["size"],
        "layers": [_layer_entry(info, first["grids"][info.name]) for info in kept],
        "start": auto[0] if auto else len(kept) - 1,
        "methods": [{"name": name, "title": METHOD_TITLES.get(name, name)} for name in methods],
        "colormaps": [
            {
                "name": name,
                "title": colormap_titles.get(name, name),
                "colours": base64.b64encode(table.tobytes()).decode("ascii"),
            }
            for name, table in tables
        ],
        "pictures": [
            {key: value for key, value in entry.items() if key != "grids"} for entry in packed
        ],
        "made": f"camkit {_version()}, {datetime.date.today().isoformat()}",
    }


def _class_count(loaded: LoadedModel, image: Image.Image, method: str, layer: str) -> int:
    """How many classes the model has: its category list, or one explain call's output."""
    if loaded.categories is not None:
        return len(loaded.categories)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MapWarning)
        return int(explain(loaded, image, methods=[method], layers=[layer]).probs.shape[-1])


def _explain_all(
    loaded: LoadedModel,
    image: Image.Image,
    layers: list[LayerInfo],
    methods: Sequence[str],
    top: int,
) -> tuple[Any, list[LayerInfo]]:
    """One explain call for every layer, method and top class; a refused layer is dropped."""
    while True:
        names = [info.name for info in layers]
        try:
            with warnings.catch_warnings():
                # Kept in the explanation and shown on the page beside the map they concern.
                warnings.simplefilter("ignore", MapWarning)
                exp = explain(loaded, image, methods=list(methods), layers=names, top_k=top)
            return exp, layers
        except CamkitError as error:
            bad = [name for name in names if f"'{name}'" in str(error)]
            if not bad or len(bad) == len(names):
                raise
            layers = [info for info in layers if info.name not in bad]


def _pack_picture(
    picture: Picture, exp: Any, layers: Sequence[LayerInfo], methods: Sequence[str]
) -> dict[str, Any]:
    pixels = exp.images[0].clamp(0, 1).permute(1, 2, 0).numpy()
    photo = np.rint(pixels * 255).astype(np.uint8)  # rounded as camkit.overlay rounds
    probs = exp.probs[0]
    targets = [int(index) for index in exp.targets[0]]
    categories = exp.categories
    classes = [
        {
            "index": index,
            "name": categories[index] if categories else f"class {index}",
            "probability": float(probs[index]),
        }
        for index in targets
    ]
    maps: dict[str, list[str]] = {}
    grids: dict[str, tuple[int, int]] = {}
    warned: dict[str, str] = {}
    for info in layers:
        per_method = []
        for method in methods:
            raw = exp.raw[(info.name, method)][0]  # (K, h, w)
            grids[info.name] = (int(raw.shape[-2]), int(raw.shape[-1]))
            flat = []
            for rank in range(raw.shape[0]):
                # A warned map is drawn flat with its message, as camkit's figures draw it.
                message = exp.warning_for(method, info.name, 0, rank)
                if message is not None:
                    warned[f"{info.name}|{method}|{rank}"] = message
                    flat.append(rank)
            per_method.append(_quantised(raw, flat))
        maps[info.name] = per_method
    flagged = {message for rows in exp.flagged.values() for message in rows.values()}
    return {
        "title": picture.title,
        "size": [int(photo.shape[0]), int(photo.shape[1])],
        "photo": base64.b64encode(photo.tobytes()).decode("ascii"),
        "classes": classes,
        "maps": maps,
        "warned": warned,
        "notes": [message for message in exp.warnings if message not in flagged],
        "grids": grids,
    }


def _quantised(raw: torch.Tensor, warned: Sequence[int] = ()) -> str:
    """(K, h, w) raw maps as 0-255 bytes, min-max per map, base64; ranks in ``warned``: zeros.

    A constant map becomes zeros too, which the page draws flat, as camkit.explain gives it.
    """
    values = torch.nan_to_num(raw.detach().float().cpu(), nan=0.0, posinf=0.0, neginf=0.0)
    if warned:
        values = values.clone()
        values[list(warned)] = 0.0
    flat = values.reshape(values.shape[0], -1)
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low
    scaled = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, 1), 0.0)
    data = torch.round(scaled * 255).to(torch.uint8).numpy()
    return base64.b64encode(data.tobytes()).decode("ascii")


def _layer_entry(info: LayerInfo, grid: tuple[int, int]) -> dict[str, Any]:
    shape = "x".join(str(n) for n in (info.output_shape or ())[1:])
    return {"name": info.name, "type": info.type_name, "shape": shape, "grid": list(grid)}


def _version() -> str:
    import camkit

    return str(getattr(camkit, "__version__", "")) or "unknown"
