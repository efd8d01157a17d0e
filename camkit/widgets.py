"""The explorer: pick a model, a layer, a method and a class, and see the heatmap at once.

``camkit.Explorer()`` evaluated in a notebook cell shows the photo, its heatmap and their overlay,
with controls for the model, the layer (a slider from the stem to the head), the method, the
class (the model's top 5) and the overlay's opacity, plus the sample pictures and an upload
button for the learner's own photo.

Why the slider answers at once: one :func:`camkit.explain` call per (model, picture, class)
asks for every candidate layer, so one forward and one gradient call give the shown method's raw
map at every layer; another method is computed for every layer the first time it is picked (one
more pass), then stored. Moving the layer slider, switching to a method already seen, or the
opacity or colours only upsamples, normalises, colours and encodes one map
(``benchmarks/bench_explorer.py`` times it). Computing one method up front keeps a model or class
change short on big models (VGG-16's eight methods at 31 layers took several times longer).

A model, picture or class change shows a busy line at once, fades the old picture and disables
the controls until the new view is drawn, so the controls and the picture never disagree. Slider
values that arrive from the browser while a frame is drawn are coalesced: a drawing thread draws
the latest view, so a drag ends on its last value one frame after release.

When displayed, the explorer also stores a still JPEG of its view (photo | heatmap | overlay,
labelled, with a colour bar) beside the live widget: GitHub and nbconvert's HTML, which cannot run
widgets, show the still.

Only the ipywidgets API that ipywidgets 7.7.1 (Colab) and 8 (JupyterLab 4) share is used, with no
custom front-end code, so the explorer runs in JupyterLab, Colab and Voilà alike. A callback that
fails shows a one-line message under the picture instead of vanishing into a log, and the
explorer keeps its last good state.
"""

from __future__ import annotations

import base64
import contextlib
import io
import textwrap
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

try:
    import ipywidgets as widgets
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(
        "camkit.Explorer needs ipywidgets; install it with pip install ipywidgets "
        "(Colab and JupyterLab already have it)"
    ) from None
import numpy as np
import torch
from PIL import Image
from torch import nn

from camkit._errors import ArgumentTypeError, CamkitError, InputError, MapWarning
from camkit._explorer import (
    COLORMAPS,
    DOWNLOAD_HOST,
    METHOD_TITLES,
    MODEL_TITLES,
    OFFLINE_MODELS,
    candidate_layers,
    colour_bar,
    colour_indices,
    colour_table,
    download_reachable,
    escape,
    one_line,
    one_pass_methods,
    png_bytes,
    read_image,
    source_name,
    still_picture,
    uploaded_files,
    weights_cached,
)
from camkit.api import explain
from camkit.cam import get_method
from camkit.engine import upsample_and_normalise
from camkit.figures import map_warning, warned_heatmap
from camkit.layers import LayerInfo
from camkit.models import TUTORIAL_MODELS, LoadedModel, load_model
from camkit.samples import SAMPLES, sample_image, sample_image_path

__all__ = ["Explorer", "candidate_layers", "colour_table", "one_pass_methods"]

#: ipywidgets' major version: 8 (JupyterLab 4) or 7 (Colab's 7.7.1).
_IPYWIDGETS_MAJOR = int(widgets.__version__.split(".")[0])

#: The mimetype of a live widget view in a notebook output.
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

#: Gap between the three panels of the picture, in pixels.
_GAP = 6

#: Candidate layers per model object and input size: a new explorer on the same model probes none.
_LAYERS: weakref.WeakKeyDictionary[nn.Module, dict[int, list[LayerInfo]]] = (
    weakref.WeakKeyDictionary()
)

_Handler = TypeVar("_Handler", bound=Callable[..., None])


@dataclass
class _Model:
    """One entry of the model dropdown, loaded on first use."""

    title: str
    source: str | nn.Module | LoadedModel
    loaded: LoadedModel | None = None
    layers: list[LayerInfo] = field(default_factory=list)
    start: int = 0  # the layer the slider starts on: "auto"'s choice when it is a candidate


class _DrawQueue:
    """The latest-view-wins hand-over between the kernel's thread and the drawing thread.

    A slider dragged in the browser sends a value per step; each is recorded at once and the
    drawing thread draws whatever the controls say when it is free, so a drag ends on its final
    value one frame after release instead of after every queued frame.
    """

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.pending = False  # a frame was asked for and not yet started
        self.drawing = False
        self.worker: threading.Thread | None = None
        self.frames = 0  # frames the drawing thread drew (for tests and benchmarks)


def _draw_latest(queue: _DrawQueue, explorer_ref: weakref.ref[Explorer]) -> None:
    """The drawing thread: draw the current view whenever one is asked for; stop when idle."""
    while True:
        with queue.condition:
            if not queue.pending:
                queue.condition.wait(timeout=30.0)
            if not queue.pending:
                queue.worker = None
                return
            queue.pending, queue.drawing = False, True
        try:
            explorer = explorer_ref()
            if explorer is None:
                return
            explorer._draw_requested()
            queue.frames += 1
            del explorer
        finally:
            with queue.condition:
                queue.drawing = False
                queue.condition.notify_all()


@dataclass
class _Pass:
    """What the explain calls gave for a (model, picture, class): every layer's raw maps.

    The first call computes the method shown; each other method is computed for every layer the
    first time it is picked (one more pass), then stored.
    """

    raw: dict[tuple[str, str], torch.Tensor]
    photo: np.ndarray  # (H, W, 3) uint8: the picture as the model saw it
    probs: torch.Tensor  # (classes,)
    target: int
    size: tuple[int, int]
    image: Image.Image
    methods: set[str] = field(default_factory=set)
    #: (layer, method) -> the MapWarning of that map: drawn flat, with the message under it.
    warned: dict[tuple[str, str], str] = field(default_factory=dict)


class Explorer(widgets.VBox):
    """An interactive heatmap explorer built from core ipywidgets (shown by evaluating it).

    Controls (attributes, for scripts and tests): ``model_picker``, ``image_picker``, ``upload``,
    ``layer_slider`` (index into :attr:`layers`), ``method_picker``, ``class_picker``,
    ``alpha_slider``, ``colour_picker``; output: ``picture`` (PNG of photo | heatmap | overlay),
    ``colour_bar``, ``caption``, ``layer_label``, ``status`` (the one-line message of the last
    error or note, else empty).

    Args:
        image: A picture to start with: a PIL image, a path, or a sample name
            (:data:`camkit.samples.SAMPLES`); the water-bird photo by default.
        models: Models to add to the dropdown, first one shown first: a mapping title -> model,
            or a list of models. A model is an ``nn.Module`` (ImageNet preprocessing, classes
            shown by index), a :class:`camkit.LoadedModel`, or a name for
            :func:`camkit.load_model`.
        tutorial_models: Offer the tutorial's torchvision models (AlexNet, VGG-16, ResNet-101,
            DenseNet-161, SqueezeNet 1.1) where their pretrained weights can be had: already
            downloaded, or the download server reachable. Otherwise one line lists them as
            unavailable; they are never shown with random weights.
        methods: The method buttons; by default every one-pass method (:func:`one_pass_methods`).
        colormap: Matplotlib colormap the heatmap starts with; the ``colour_picker`` offers jet
            (as the papers draw) and viridis (colour-blind safe), plus this one if it is another.
        coalesce: Draw slider moves that come from the browser on a drawing thread, latest value
            first (a drag ends on its last value at once); moves set from code always draw
            before the assignment returns.

    Raises:
        ValueError: For an unknown sample name or method, or an unreadable image file.
        TypeError: For a model of the wrong type.
    """

    def __init__(
        self,
        image: Image.Image | str | Path | None = None,
        models: Mapping[str, Any] | Iterable[Any] | None = None,
        *,
        tutorial_models: bool = True,
        methods: Iterable[str] | None = None,
        colormap: str = "jet",
        coalesce: bool = True,
    ) -> None:
        self._colours = colour_table(colormap)  # raises for an unknown colormap name
        self.coalesce = coalesce
        self._drawing = threading.RLock()  # one frame or one model pass at a time
        self._queue = _DrawQueue()
        self._bar_key: tuple[str, int] | None = None
        self.methods = list(methods) if methods is not None else one_pass_methods()
        for name in self.methods:
            if get_method(name).perturbation or get_method(name).own_pass:
                raise InputError(
                    f"method {name!r} runs the model again for every change; the explorer takes "
                    f"one-pass methods: {', '.join(one_pass_methods())}"
                )
        #: How many explain calls (model passes) the explorer has made.
        self.passes = 0
        self._models: dict[str, _Model] = {}
        self._unavailable: dict[str, str] = {}
        self._add_models(models, tutorial_models)
        self._images: dict[str, Image.Image] = {}
        self._image_titles: dict[str, str] = {}
        for name in SAMPLES:
            self._images[name] = sample_image(name)
            self._image_titles[name] = f"sample: {name}"
        first_image = self._add_image(image) if image is not None else "water-bird"
        self._passes: OrderedDict[tuple[str, str, int | None], _Pass] = OrderedDict()
        self._pngs: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._quiet = False  # set while the explorer changes its own controls
        self._notice = ""  # an information line for the status once the callback succeeds
        self._message = ""
        self._failed = False  # whether the message is an error
        self._build_widgets(first_image, colormap)
        super().__init__(children=self._layout())
        first_model = next(iter(self._models))
        self._guarded(lambda: self._switch_model(first_model))()

    # ----------------------------------------------------------------------------------------
    # Public read-outs
    # ----------------------------------------------------------------------------------------

    @property
    def loaded(self) -> LoadedModel:
        """The model shown now."""
        entry = self._models[self.model_picker.value]
        assert entry.loaded is not None
        return entry.loaded

    @property
    def layers(self) -> list[LayerInfo]:
        """The candidate layers of the model shown, stem to head (the slider's positions)."""
        return self._models[self.model_picker.value].layers

    @property
    def layer(self) -> str:
        """The layer shown now."""
        return self.layers[self.layer_slider.value].name

    @property
    def colormap(self) -> str:
        """The colour map of the heatmap now (matplotlib name)."""
        return str(self.colour_picker.value)

    @property
    def method(self) -> str:
        """The method shown now."""
        return str(self.method_picker.value)

    @property
    def target(self) -> int:
        """The class index explained now."""
        return self._current_pass().target

    @property
    def probability(self) -> float:
        """The model's probability of the class explained now."""
        result = self._current_pass()
        return float(result.probs[result.target])

    @property
    def image(self) -> Image.Image:
        """The picture explained now, as given (before the model's resize and crop)."""
        return self._images[self.image_picker.value]

    @property
    def photo(self) -> Image.Image:
        """The picture as the model saw it (resized and cropped), under the heatmap."""
        return Image.fromarray(self._current_pass().photo)

    @property
    def current_map(self) -> torch.Tensor:
        """The heatmap shown now: (H, W) in [0, 1] at the model's input size."""
        return self._map(self._current_pass(), self.layer, self.method)

    @property
    def message(self) -> str:
        """The line :attr:`status` shows, as plain text: the last error or note, else empty."""
        return self._message

    @property
    def png(self) -> bytes:
        """The PNG shown now (photo | heatmap | overlay)."""
        return bytes(self.picture.value)

    def show(
        self,
        layer: str | None = None,
        method: str | None = None,
        target: int | str | None = None,
        alpha: float | None = None,
    ) -> None:
        """Set the view from code, as the controls would: for scripts, lessons and exercises.

        Args:
            layer: A name among :attr:`layers`.
            method: A name among :attr:`methods`.
            target: A class index or name; one outside the top 5 is added to the class list.
            alpha: The overlay's opacity, 0 to 1.

        Raises:
            ValueError: For a layer, method or class the explorer does not have, or when drawing
                fails (the message the explorer shows).
        """
        names = [info.name for info in self.layers]
        if layer is not None and layer not in names:
            raise InputError(f"`layer` {layer!r} is not one of the slider's: {', '.join(names)}")
        if method is not None and method not in self.methods:
            raise InputError(f"`method` {method!r} is not offered; use one of {self.methods}")
        if alpha is not None and not 0.0 <= float(alpha) <= 1.0:
            raise InputError(f"`alpha` must be in [0, 1], got {alpha}")
        index = self._class_index(target) if target is not None else None
        self._message, self._failed = "", False
        if index is not None and index != self.target:
            self._guarded(self._switch_pass)(index)
        if layer is not None:
            self.layer_slider.value = names.index(layer)
        if method is not None:
            self.method_picker.value = method
        if alpha is not None:
            self.alpha_slider.value = float(alpha)
        if self._failed:
            raise InputError(self._message)

    def _class_index(self, target: int | str) -> int:
        categories = self.loaded.categories
        count = int(self._current_pass().probs.numel())
        if isinstance(target, str):
            if not categories or target not in categories:
                raise InputError(
                    f"`target` {target!r} is not a class name of {self.model_picker.value}"
                )
            return categories.index(target)
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < count:
            raise InputError(f"`target` must be a class index in [0, {count}), got {target!r}")
        return target

    def __repr__(self) -> str:
        """One line naming the view, instead of every widget's state."""
        try:
            names = self.loaded.categories
            target = names[self.target] if names else self.target
            return (
                f"Explorer(model={self.model_picker.value!r}, layer={self.layer!r}, "
                f"method={self.method!r}, target={target!r})"
            )
        except Exception:  # not drawn yet (the first model failed)
            return f"Explorer(model={self.model_picker.value!r})"

    # ----------------------------------------------------------------------------------------
    # Building
    # ----------------------------------------------------------------------------------------

    def _add_models(self, models: Mapping[str, Any] | Iterable[Any] | None, tutorial: bool) -> None:
        given: list[tuple[str | None, Any]]
        if models is None:
            given = []
        elif isinstance(models, Mapping):
            given = [(str(title), model) for title, model in models.items()]
        elif isinstance(models, (nn.Module, LoadedModel, str)):
            given = [(None, models)]
        else:
            given = [(None, model) for model in models]
        for title, model in given:
            if isinstance(model, str):
                title = title or MODEL_TITLES.get(model, model)
            elif isinstance(model, LoadedModel):
                title = title or MODEL_TITLES.get(model.name or "", model.name or "model")
            elif isinstance(model, nn.Module):
                title = title or type(model).__name__
            else:
                raise ArgumentTypeError(
                    "`models` entries must be torch.nn.Module, camkit.LoadedModel or model "
                    f"names, got {type(model).__name__}"
                )
            self._add_model(title, model)
        for name in OFFLINE_MODELS:
            self._add_model(MODEL_TITLES[name], name)
        if not tutorial:
            return
        reachable = None
        for name in TUTORIAL_MODELS:
            if weights_cached(name):
                self._add_model(MODEL_TITLES[name], name)
                continue
            if reachable is None:
                reachable = download_reachable()
            if reachable:
                self._add_model(f"{MODEL_TITLES[name]} (downloads its weights)", name)
            else:
                self._unavailable[name] = f"cannot reach {DOWNLOAD_HOST} to download weights"

    def _add_model(self, title: str, source: str | nn.Module | LoadedModel) -> None:
        if isinstance(source, str) and any(
            source_name(entry.source) == source for entry in self._models.values()
        ):
            return  # a name given in `models` (or a model loaded by it) offered by default too
        unique, number = title, 2
        while unique in self._models:
            unique, number = f"{title} ({number})", number + 1
        self._models[unique] = _Model(unique, source)

    def _add_image(self, image: Image.Image | str | Path) -> str:
        if isinstance(image, Image.Image):
            key, title, picture = "image", "your image", image.convert("RGB")
        elif isinstance(image, str) and not Path(image).is_file():
            file_name = sample_image_path(image).name  # raises naming the known samples
            return next(key for key, name in SAMPLES.items() if name == file_name)
        elif isinstance(image, (str, Path)):
            path = Path(image)
            picture = read_image(path.name, path.read_bytes())
            key, title = f"file:{path}", path.name
        else:
            raise ArgumentTypeError(
                f"`image` must be a PIL image, a file path or a sample name, got "
                f"{type(image).__name__}"
            )
        self._images[key] = picture
        self._image_titles[key] = title
        return key

    def _build_widgets(self, first_image: str, colormap: str) -> None:
        wide = {"description_width": "initial"}
        # Buttons as wide as their text: the default width cuts "Grad-CAM elementwise".
        buttons = {"description_width": "initial", "button_width": "auto"}
        self.model_picker = widgets.Dropdown(
            options=list(self._models), description="Model", style=wide
        )
        self.image_picker = widgets.Dropdown(
            options=self._image_options(), value=first_image, description="Picture", style=wide
        )
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload")
        self.layer_slider = widgets.IntSlider(
            value=0, min=0, max=1, description="Layer", readout=False, continuous_update=True
        )
        self.layer_label = widgets.Label(value="")
        self.method_picker = widgets.ToggleButtons(
            options=[(METHOD_TITLES.get(name, name), name) for name in self.methods],
            description="Method",
            style=buttons,
        )
        colour_options = list(COLORMAPS)
        if colormap not in [name for _, name in colour_options]:
            colour_options.append((colormap, colormap))
        self.colour_picker = widgets.ToggleButtons(
            options=colour_options, value=colormap, description="Colours", style=buttons
        )
        self.class_picker = widgets.Dropdown(options=[], description="Class", style=wide)
        self.alpha_slider = widgets.FloatSlider(
            value=0.5, min=0.0, max=1.0, step=0.05, description="Opacity", readout_format=".2f"
        )
        self.caption = widgets.HTML(value="")
        self.picture = widgets.Image(value=b"", format="png")
        self.colour_bar = widgets.Image(value=b"", format="png")
        self._bar_box = widgets.VBox(
            [
                widgets.HTML(value="<small>high</small>"),
                self.colour_bar,
                widgets.HTML(value="<small>low</small>"),
            ],
            layout=widgets.Layout(align_items="center"),
        )
        self.status = widgets.HTML(value="")
        missing = ", ".join(MODEL_TITLES.get(name, name) for name in self._unavailable)
        self.note = widgets.HTML(
            value=(
                f"<small>Not available here: {escape(missing)} (their pretrained weights "
                f"need a download and {DOWNLOAD_HOST} cannot be reached); the EfficientNet-Lite "
                "models run offline.</small>"
                if missing
                else ""
            )
        )
        self.model_picker.observe(self._guarded(self._on_model), names="value")
        self.image_picker.observe(self._guarded(self._on_image), names="value")
        self.upload.observe(self._guarded(self._on_upload), names="value")
        self.class_picker.observe(self._guarded(self._on_class), names="value")
        for control in (self.layer_slider, self.method_picker, self.alpha_slider):
            control.observe(self._guarded(self._on_view), names="value")
        self.colour_picker.observe(self._guarded(self._on_colours), names="value")

    def _layout(self) -> list[widgets.Widget]:
        return [
            widgets.HBox([self.model_picker, self.image_picker, self.upload]),
            widgets.HBox([self.layer_slider, self.layer_label]),
            self.method_picker,
            widgets.HBox([self.class_picker, self.alpha_slider]),
            self.colour_picker,
            self.caption,
            widgets.HBox([self.picture, self._bar_box]),
            self.status,
            self.note,
        ]

    def _controls(self) -> list[widgets.Widget]:
        """Every control a learner can move."""
        return [
            self.model_picker,
            self.image_picker,
            self.upload,
            self.layer_slider,
            self.method_picker,
            self.class_picker,
            self.alpha_slider,
            self.colour_picker,
        ]

    def _image_options(self) -> list[tuple[str, str]]:
        return [(title, key) for key, title in self._image_titles.items()]

    # ----------------------------------------------------------------------------------------
    # Callbacks
    # ----------------------------------------------------------------------------------------

    def _guarded(self, handler: _Handler) -> _Handler:
        """Run ``handler`` unless the explorer is setting its own controls; show its errors.

        ipywidgets drops exceptions raised in callbacks into a log the learner never sees; here
        they become a one-line message in :attr:`status`, and the explorer keeps working.
        """

        @wraps(handler)
        def run(*args: Any) -> None:
            if self._quiet:
                return
            self._notice = ""
            try:
                handler(*args)
            except Exception as error:
                self._show_error(error)
            else:
                self._show_info(self._notice)

        return run  # type: ignore[return-value]

    def _show_error(self, error: BaseException) -> None:
        self._message, self._failed = one_line(error), True
        text = escape(self._message)
        self.status.value = f'<span style="color:#b00020">&#9888; {text}</span>'

    def _show_info(self, text: str) -> None:
        self._message, self._failed = text, False
        escaped = escape(text)
        self.status.value = f'<span style="color:#555">{escaped}</span>' if text else ""

    def _set_quietly(self, control: widgets.Widget, **values: Any) -> None:
        """Set traits of a control without running the explorer's callbacks."""
        self._quiet = True
        try:
            for name, value in values.items():
                setattr(control, name, value)
        finally:
            self._quiet = False

    def _on_model(self, change: dict[str, Any]) -> None:
        try:
            self._switch_model(change["new"])
        except Exception:
            self._set_quietly(self.model_picker, value=change["old"])
            raise

    def _on_image(self, change: dict[str, Any]) -> None:
        try:
            self._switch_pass(target=None)
        except Exception:
            self._set_quietly(self.image_picker, value=change["old"])
            raise

    def _on_upload(self, change: dict[str, Any]) -> None:
        files = uploaded_files(change["new"])
        if not files:
            return
        self._clear_upload()  # the button reads "Upload" again, whatever the file turns out
        name, content = files[-1]
        picture = read_image(name, content)
        key = f"upload:{name}"
        self._images[key] = picture
        self._image_titles[key] = f"upload: {name}"
        previous = self.image_picker.value
        self._set_quietly(self.image_picker, options=self._image_options(), value=key)
        try:
            self._switch_pass(target=None)
        except Exception:
            self._set_quietly(self.image_picker, value=previous)
            raise

    def _on_class(self, change: dict[str, Any]) -> None:
        if change["new"] is None:
            return
        try:
            self._switch_pass(target=int(change["new"]))
        except Exception:
            self._set_quietly(self.class_picker, value=change["old"])
            raise

    def _clear_upload(self) -> None:
        """Forget the uploaded file, so the button no longer counts it ("Upload (1)")."""
        if _IPYWIDGETS_MAJOR >= 8:
            self._set_quietly(self.upload, value=())
        else:  # 7.x computes the read-only value from these three, and shows the counter
            self._set_quietly(self.upload, metadata=[], data=[], _counter=0)

    def _on_view(self, change: dict[str, Any]) -> None:
        # A value from the browser (ipywidgets holds its property lock while applying it) is
        # drawn on the drawing thread, latest first; one set from code is drawn before returning.
        if self.coalesce and getattr(change["owner"], "_property_lock", None):
            key = (self.model_picker.value, self.image_picker.value, self.class_picker.value)
            stored = self._passes.get(key)
            if stored is None or self.method not in stored.methods:
                self._render()  # a method not computed yet: a model pass, with the busy sign
                return
            self._request_render()
        else:
            self._render()

    def _on_colours(self, change: dict[str, Any]) -> None:
        try:
            self._colours = colour_table(str(change["new"]))
        except Exception:
            self._set_quietly(self.colour_picker, value=change["old"])
            raise
        self._render()

    def _request_render(self) -> None:
        """Ask the drawing thread for a frame of the current view (started when needed)."""
        queue = self._queue
        with queue.condition:
            queue.pending = True
            queue.condition.notify_all()
            if queue.worker is None:
                queue.worker = threading.Thread(
                    target=_draw_latest,
                    args=(queue, weakref.ref(self)),
                    name="camkit-explorer-draw",
                    daemon=True,
                )
                queue.worker.start()

    def _draw_requested(self) -> None:
        """The drawing thread's frame: the view the controls show now."""
        with self._drawing:
            self._notice = ""
            try:
                self._render(compute=False)
            except Exception as error:
                self._show_error(error)
            else:
                self._show_info(self._notice)

    def wait_drawn(self, timeout: float = 10.0) -> bool:
        """Wait until the frames asked for by the browser are drawn; False on timeout."""
        queue = self._queue
        with queue.condition:
            return queue.condition.wait_for(
                lambda: not queue.pending and not queue.drawing, timeout=timeout
            )

    @contextlib.contextmanager
    def _busy(self, text: str) -> Iterator[None]:
        """Show ``text`` as busy and disable the controls while the block runs a model pass.

        Sent to the browser at once, before the pass: the caption no longer names the old view
        and the old picture is faded, so what the controls say and what is shown never disagree.
        When the block fails, the caption and picture it replaced come back.
        """
        with self._drawing:
            saved = (self.caption.value, self.picture.value)
            states = [(control, bool(control.disabled)) for control in self._controls()]
            for control, _ in states:
                control.disabled = True
            self.caption.value = (
                f'<span style="color:#555">&#8987; <b>{escape(text)}</b> &hellip;</span>'
            )
            if saved[1]:
                with Image.open(io.BytesIO(saved[1])) as shown:
                    pixels = np.asarray(shown.convert("RGB"), dtype=np.float32)
                self.picture.value = png_bytes(np.rint(pixels * 0.35 + 255 * 0.65).astype(np.uint8))
            done = False
            try:
                yield
                done = True
            finally:
                for control, disabled in states:
                    control.disabled = disabled
                if not done:
                    self.caption.value, self.picture.value = saved

    # ----------------------------------------------------------------------------------------
    # Work
    # ----------------------------------------------------------------------------------------

    def _load(self, entry: _Model) -> None:
        """Load the entry's model and find its candidate layers (once per model)."""
        if entry.loaded is not None:
            return
        if isinstance(entry.source, str):
            loaded = load_model(entry.source)
        elif isinstance(entry.source, LoadedModel):
            loaded = entry.source
        else:
            loaded = LoadedModel(entry.source, name=entry.title)
        size = loaded.preprocessing.crop_size
        known = _LAYERS.get(loaded.model, {})
        layers = known[size] if size in known else candidate_layers(loaded)
        _LAYERS.setdefault(loaded.model, {})[size] = layers
        auto = [i for i, info in enumerate(layers) if info.is_auto]
        entry.loaded, entry.layers = loaded, layers
        entry.start = auto[0] if auto else len(layers) - 1

    def _switch_model(self, title: str) -> None:
        with self._drawing:  # the drawing thread waits: no frame of a half-switched view
            self._switch_model_now(title)

    def _switch_model_now(self, title: str) -> None:
        entry = self._models[title]
        image_key = self.image_picker.value
        if entry.loaded is None or (title, image_key, None) not in self._passes:
            doing = "Loading" if entry.loaded is None else "Switching to"
            with self._busy(f"{doing} {title}: explaining every layer"):
                self._load(entry)
                result = self._pass(title, image_key, None)
        else:
            result = self._pass(title, image_key, None)
        self._set_quietly(self.model_picker, value=title)
        self._set_quietly(
            self.layer_slider, min=0, max=max(len(entry.layers) - 1, 1), value=entry.start
        )
        self._set_class_options(result, entry)
        self._render()

    def _switch_pass(self, target: int | None) -> None:
        """Explain the picture for ``target`` (None: the top class), then draw it."""
        with self._drawing:
            self._switch_pass_now(target)

    def _switch_pass_now(self, target: int | None) -> None:
        title = self.model_picker.value
        image_key = self.image_picker.value
        if (title, image_key, target) not in self._passes:
            what = "this class" if target is not None else self._image_titles[image_key]
            with self._busy(f"{title}: explaining every layer for {what}"):
                result = self._pass(title, image_key, target)
        else:
            result = self._pass(title, image_key, target)
        self._set_class_options(result, self._models[title])
        self._render()

    def _pass(self, title: str, image_key: str, target: int | None) -> _Pass:
        """The cached explain call for (model, picture, class); runs the model when new."""
        key = (title, image_key, target)
        if key in self._passes:
            self._passes.move_to_end(key)
            return self._passes[key]
        entry = self._models[title]
        assert entry.loaded is not None
        method = self.method
        exp, skipped = self._explain_layers(entry, self._images[image_key], target, [method])
        pixels = exp.images[0].clamp(0, 1).permute(1, 2, 0).numpy()
        result = _Pass(
            image=self._images[image_key],
            methods={method},
            raw=dict(exp.raw),
            warned=self._warnings_of(exp),
            photo=np.rint(pixels * 255).astype(np.uint8),  # rounded as camkit.overlay rounds
            probs=exp.probs[0],
            target=int(exp.targets.reshape(-1)[0]) if exp.targets is not None else 0,
            size=(int(exp.images.shape[-2]), int(exp.images.shape[-1])),
        )
        self._passes[key] = result
        if target is None:  # the top class and its own index are the same pass
            self._passes[(title, image_key, result.target)] = result
        while len(self._passes) > 8:
            self._passes.popitem(last=False)
        if skipped:
            self._notice = f"{entry.title}: layers left out of the slider: {skipped}"
        return result

    @staticmethod
    def _warnings_of(exp: Any) -> dict[tuple[str, str], str]:
        found = {}
        for layer in exp.layers:
            for method in exp.methods:
                message = map_warning(exp, layer, method)
                if message is not None:
                    found[(layer, method)] = message
        return found

    def _add_method(self, result: _Pass, method: str) -> None:
        """Compute ``method`` at every layer for a stored pass (one more model pass)."""
        title = self.model_picker.value
        entry = self._models[title]
        name = METHOD_TITLES.get(method, method)
        with self._busy(f"{title}: computing {name} at every layer"):
            exp, skipped = self._explain_layers(entry, result.image, result.target, [method])
        result.raw.update(exp.raw)
        result.warned.update(self._warnings_of(exp))
        result.methods.add(method)
        if skipped:
            self._notice = f"{entry.title}: layers left out of the slider: {skipped}"

    def _explain_layers(
        self, entry: _Model, image: Image.Image, target: int | None, methods: list[str]
    ) -> Any:
        """One explain call for every candidate layer; a layer the engine refuses is dropped.

        A layer of a user's model may turn out unusable only when explained (its output does not
        influence the score, or it did not run): it is removed from the slider and named, and the
        call is repeated without it.
        """
        assert entry.loaded is not None
        skipped: list[str] = []
        while True:
            names = [info.name for info in entry.layers]
            try:
                self.passes += 1
                with warnings.catch_warnings():
                    # Shown in the widget, on the map they concern, not as stderr in the log.
                    warnings.simplefilter("ignore", MapWarning)
                    exp = explain(entry.loaded, image, methods=methods, layers=names, target=target)
                return exp, ", ".join(skipped)
            except CamkitError as error:
                bad = [name for name in names if f"'{name}'" in str(error)]
                if not bad:
                    raise
                if len(bad) == len(names):
                    raise InputError(
                        f"{entry.title}: no candidate layer can be explained ({one_line(error)})"
                    ) from None
                skipped.extend(bad)
                current = self.layer if self.layers is entry.layers else None
                entry.layers = [info for info in entry.layers if info.name not in bad]
                self._reset_slider(entry, current)

    def _reset_slider(self, entry: _Model, current: str | None) -> None:
        names = [info.name for info in entry.layers]
        auto = [i for i, info in enumerate(entry.layers) if info.is_auto]
        entry.start = auto[0] if auto else len(names) - 1
        value = names.index(current) if current in names else entry.start
        if self.model_picker.value == entry.title:
            self._set_quietly(self.layer_slider, min=0, max=max(len(names) - 1, 1), value=value)

    def _set_class_options(self, result: _Pass, entry: _Model) -> None:
        assert entry.loaded is not None
        categories = entry.loaded.categories
        top = result.probs.topk(min(5, result.probs.numel()))
        indices = [int(i) for i in top.indices]
        if result.target not in indices:
            indices.append(result.target)
        options = []
        for rank, index in enumerate(indices, start=1):
            name = categories[index] if categories else f"class {index}"
            place = f"{rank}." if rank <= 5 else "other:"
            options.append((f"{place} {name} ({float(result.probs[index]):.1%})", index))
        self._set_quietly(self.class_picker, options=options, value=result.target)

    def _current_pass(self) -> _Pass:
        target = self.class_picker.value
        key = (self.model_picker.value, self.image_picker.value, target)
        if key not in self._passes:
            return self._pass(*key)
        return self._passes[key]

    def _map(self, result: _Pass, layer: str, method: str) -> torch.Tensor:
        """The (H, W) heatmap of one layer and method, as :func:`camkit.explain` gives it."""
        if method not in result.methods:
            with self._drawing:
                if method not in result.methods:
                    self._add_method(result, method)
        raw = result.raw[(layer, method)]
        return upsample_and_normalise(raw.reshape(1, *raw.shape[-2:]).float(), result.size)[0]

    def _render(self, compute: bool = True) -> None:
        """Draw photo | heatmap | overlay for the current controls into :attr:`picture`.

        Args:
            compute: Run the model when the current (model, picture, class) has no stored pass;
                the drawing thread passes False and leaves such a view to the kernel's thread.
        """
        with self._drawing:
            self._render_now(compute)

    def _render_now(self, compute: bool) -> None:
        key0 = (self.model_picker.value, self.image_picker.value, self.class_picker.value)
        if not compute and (
            key0 not in self._passes
            or not self.layers
            or self.method not in self._passes[key0].methods
        ):
            return  # a view that needs the model: the kernel's thread draws it
        result = self._current_pass()
        index = min(self.layer_slider.value, len(self.layers) - 1)
        info = self.layers[index]
        alpha = round(float(self.alpha_slider.value), 4)
        key = (
            self.model_picker.value,
            self.image_picker.value,
            result.target,
            info.name,
            self.method,
            alpha,
            self.colormap,
        )
        png = self._pngs.get(key)
        if png is None:
            png = png_bytes(self._strip_pixels(result, info.name, self.method, alpha))
            self._pngs[key] = png
            while len(self._pngs) > 48:
                self._pngs.popitem(last=False)
        self._pngs.move_to_end(key)
        self._draw_colour_bar(result.size[0])
        shape = "x".join(str(n) for n in (info.output_shape or ())[1:])
        self.layer_label.value = (
            f"{index + 1}/{len(self.layers)}  {info.name}  ({info.type_name}, {shape})"
        )
        self.caption.value = self._caption(result, info)
        warning = result.warned.get((info.name, self.method))
        if warning is not None:  # shown as the status line once the callback succeeds
            self._notice = f"map drawn flat: {warning}"
        self.picture.value = png

    def _panels(
        self, result: _Pass, layer: str, method: str, alpha: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The photo, heatmap and overlay pixels of one view."""
        heat = self._map(result, layer, method)
        if (layer, method) in result.warned:  # drawn flat, as camkit's figures draw it
            heat = warned_heatmap(heat)
        photo = result.photo
        coloured = self._colours[colour_indices(heat)]
        # overlay()'s blend, (1 - alpha) * photo + alpha * colour, on the colours already
        # drawn: one colormap lookup per move instead of two.
        mixed = photo.astype(np.float32) * (1.0 - alpha) + coloured.astype(np.float32) * alpha
        blended = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        return photo, coloured, blended

    def _strip_pixels(self, result: _Pass, layer: str, method: str, alpha: float) -> np.ndarray:
        photo, coloured, blended = self._panels(result, layer, method, alpha)
        gap = np.full((photo.shape[0], _GAP, 3), 255, dtype=np.uint8)
        return np.concatenate([photo, gap, coloured, gap, blended], axis=1)

    def _draw_colour_bar(self, height: int) -> None:
        if self._bar_key != (self.colormap, height):
            self.colour_bar.value = png_bytes(colour_bar(self.colormap, height))
            self._bar_key = (self.colormap, height)

    # ----------------------------------------------------------------------------------------
    # A still picture where there is no kernel
    # ----------------------------------------------------------------------------------------

    def still(self) -> bytes:
        """The current view as one labelled JPEG (photo | heatmap | overlay, colour bar).

        Stored with the widget when the explorer is displayed, so that GitHub, nbconvert's HTML
        and a notebook opened without a kernel show the view instead of an empty widget.
        """
        result = self._current_pass()
        info = self.layers[min(self.layer_slider.value, len(self.layers) - 1)]
        alpha = round(float(self.alpha_slider.value), 4)
        photo, coloured, blended = self._panels(result, info.name, self.method, alpha)
        title = self._title(result, info)
        warning = result.warned.get((info.name, self.method))
        if warning is not None:
            reason = "map drawn flat: " + warning.split(": ", 1)[-1]
            title += "\n" + "\n".join(textwrap.wrap(reason, 120, max_lines=2, placeholder=" ..."))
        return still_picture(
            photo, coloured, blended, colormap=self.colormap, title=title, alpha=alpha
        )

    def _title(self, result: _Pass, info: LayerInfo) -> str:
        entry = self._models[self.model_picker.value]
        assert entry.loaded is not None
        categories = entry.loaded.categories
        name = categories[result.target] if categories else f"class {result.target}"
        method = METHOD_TITLES.get(self.method, self.method)
        text = (
            f"{entry.title} · layer {info.name} · {method} · class {name!r} "
            f"(p = {float(result.probs[result.target]):.1%})"
        )
        if entry.loaded.pretrained is False:
            text += "\nrandom weights: the map means nothing"
        return text + "\n(a still of the explorer: run the notebook to move its controls)"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The live widget view, plus a still JPEG of its view for frontends without a kernel.

        A frontend that renders widgets (JupyterLab, Colab, Voilà, VS Code) shows the widget; one
        that cannot (GitHub, nbconvert's HTML without widget state) falls back to the picture.
        """
        parent = getattr(super(), "_repr_mimebundle_", None)
        data: dict[str, Any] = dict(parent(**kwargs)) if parent is not None else {}
        data["text/plain"] = repr(self)
        if self._view_name is not None and _WIDGET_VIEW not in data:
            data[_WIDGET_VIEW] = {
                "version_major": 2,
                "version_minor": 0,
                "model_id": self._model_id,
            }
        # Nothing to draw yet (the first model failed): the widget alone.
        with contextlib.suppress(Exception):
            data["image/jpeg"] = base64.b64encode(self.still()).decode("ascii")
        return data

    if _IPYWIDGETS_MAJOR < 8:

        def _ipython_display_(self, **kwargs: Any) -> None:
            """Display the same bundle on ipywidgets 7, which IPython shows through this hook."""
            from IPython.display import display

            display(self._repr_mimebundle_(**kwargs), raw=True)
            self._handle_displayed(**kwargs)

    def _caption(self, result: _Pass, info: LayerInfo) -> str:
        entry = self._models[self.model_picker.value]
        assert entry.loaded is not None
        categories = entry.loaded.categories
        name = categories[result.target] if categories else f"class {result.target}"
        probability = float(result.probs[result.target])
        method = METHOD_TITLES.get(self.method, self.method)
        text = (
            f"<b>{escape(entry.title)}</b> &middot; layer <code>{escape(info.name)}</code> "
            f"&middot; {escape(method)} &middot; class <b>{escape(name)}</b> "
            f"(p = {probability:.1%}) &middot; photo | heatmap | overlay"
        )
        if entry.loaded.pretrained is False:
            warning = "random weights: the map means nothing"
            text += f' &middot; <span style="color:#b00020">{warning}</span>'
        return text
