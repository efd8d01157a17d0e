"""The explorer widget, driven without a browser by setting its controls' values.

Runs on ipywidgets 8 and 7.7.1 (tests/run_ipywidgets7.sh runs this file against 7.7.1).
"""

from __future__ import annotations

import io
import itertools
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

pytest.importorskip("ipywidgets")

import camkit
from camkit import _explorer, hooks, widgets
from camkit.overlay import heatmap_image
from camkit.widgets import Explorer, candidate_layers, colour_table, one_pass_methods
from tests.widget_helpers import panels, png_bytes, upload

GAP = widgets._GAP


def all_hooks(model: nn.Module) -> int:
    """Every hook PyTorch can hold on a module, counted by hand (not only forward hooks)."""
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in model.modules()
    )


@pytest.fixture(scope="module")
def lite0_explorer() -> Explorer:
    torch.manual_seed(0)
    return Explorer(tutorial_models=False)


class TinyNet(nn.Module):
    """Three conv stages and a linear head: a user's own model (random weights)."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.body(self.stem(x))), 1))


class UnusedBranch(TinyNet):
    """A spatial branch whose output the score never sees: the engine refuses that layer."""

    def __init__(self) -> None:
        super().__init__()
        self.side = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.side(x)
        return super().forward(x)


class Broken(nn.Module):
    """A model whose forward fails on every input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.abs().sum() == 0:  # list_layers probes with a zero image: that works
            return self.conv(x).mean(dim=(2, 3))
        raise RuntimeError("this model is broken on purpose")


def small(models: dict[str, nn.Module]) -> Explorer:
    torch.manual_seed(0)
    return Explorer(models=models, tutorial_models=False)


# --------------------------------------------------------------------------------------------
# What the explorer shows
# --------------------------------------------------------------------------------------------


def test_starts_on_the_head_with_the_top_class(lite0_explorer: Explorer) -> None:
    e = lite0_explorer
    assert e.model_picker.value == "EfficientNet-Lite0"
    assert e.layer == "_swish"  # the layer layers="auto" picks, at the head
    assert e.layer_slider.value == len(e.layers) - 1
    names = [info.name for info in e.layers]
    assert names[0] == "_conv_stem" and "_blocks.0" in names and "_blocks.15" in names
    labels = [label for label, _ in e.class_picker.options]
    assert len(labels) == 5 and labels[0].startswith("1. spoonbill (")
    assert "spoonbill" in e.caption.value and "Grad-CAM" in e.caption.value
    assert "_swish" in e.layer_label.value and "1280x7x7" in e.layer_label.value
    assert e.message == ""
    photo, heat, over = panels(e.png, GAP)
    assert photo.shape == heat.shape == over.shape == (224, 224, 3)


def test_the_map_shown_is_explains_map_at_that_layer(lite0_explorer: Explorer) -> None:
    e = lite0_explorer
    e.alpha_slider.value = 0.5
    e.class_picker.value = e.class_picker.options[0][1]
    names = [info.name for info in e.layers]
    for layer in (names[0], names[len(names) // 2], names[-1]):
        for method in ("gradcam", "gradcam++"):
            e.layer_slider.value = names.index(layer)
            e.method_picker.value = method
            assert e.message == ""
            expected = camkit.explain(e.loaded, e.image, methods=[method], layers=[layer])
            reference = expected.maps[(layer, method)][0]
            assert float(reference.max()) == pytest.approx(1.0)  # a real, non-flat map
            torch.testing.assert_close(e.current_map, reference, atol=2e-4, rtol=0)
            # The heatmap panel is that map coloured: decode the PNG and compare pixels.
            _, heat, _ = panels(e.png, GAP)
            drawn = np.asarray(heatmap_image(reference)).astype(int)
            close = np.abs(heat.astype(int) - drawn).max(axis=-1) <= 8
            assert close.mean() > 0.995, (layer, method, close.mean())


def test_each_control_changes_the_picture_and_the_labels(lite0_explorer: Explorer) -> None:
    e = lite0_explorer
    e.method_picker.value = "gradcam"
    e.alpha_slider.value = 0.5
    e.layer_slider.value = len(e.layers) - 1
    e.class_picker.value = e.class_picker.options[0][1]
    before, label, caption = e.png, e.layer_label.value, e.caption.value

    e.layer_slider.value = 5
    assert e.png != before and e.layer_label.value != label
    assert e.layers[5].name in e.layer_label.value and e.layers[5].name in e.caption.value

    moved = e.png
    e.method_picker.value = "gradcam++"
    assert e.png != moved and "Grad-CAM++" in e.caption.value

    photo, heat, over = panels(e.png, GAP)
    e.alpha_slider.value = 0.9
    photo2, heat2, over2 = panels(e.png, GAP)
    assert np.array_equal(photo, photo2) and np.array_equal(heat, heat2)
    assert not np.array_equal(over, over2)
    # At alpha 0.9 the overlay is nine parts heatmap colour to one part photo.
    expected = np.rint(0.1 * photo2.astype(float) + 0.9 * heat2.astype(float))
    assert np.abs(over2 - expected).max() <= 1

    second_index = e.class_picker.options[1][1]
    second_name = e.loaded.categories[second_index]
    shown = e.png
    e.class_picker.value = second_index
    assert e.png != shown and second_name in e.caption.value and e.target == second_index
    expected = camkit.explain(
        e.loaded, e.image, methods=["gradcam++"], layers=[e.layer], target=second_index
    )
    torch.testing.assert_close(
        e.current_map, expected.maps[(e.layer, "gradcam++")][0], atol=2e-4, rtol=0
    )

    e.image_picker.value = "coffee"
    x = e.loaded.preprocessing(camkit.sample_image("coffee"))[None]
    with torch.no_grad():
        probs = e.loaded.model(x).softmax(dim=1)[0]
    top = [int(i) for i in probs.topk(5).indices]
    assert [index for _, index in e.class_picker.options] == top  # the model's own top 5
    assert e.class_picker.value == top[0] and e.loaded.categories[top[0]] in e.caption.value
    e.image_picker.value = "water-bird"
    assert caption != e.caption.value  # still gradcam++ at layer 6
    assert e.message == ""


def _bias_free_1x1_conv_on(model: nn.Module, name: str, previous: camkit.LayerInfo) -> bool:
    """Whether layer `name` is a bias-free 1x1 convolution taking `previous`'s output channels.

    Grad-CAM is invariant to such a layer: with B = M A (a linear mix of channels at each position)
    the pooled gradients are w_A = M^T w_B, so sum_k w_A,k A_k = w_B^T M A = sum_j w_B,j B_j.
    """
    module = model.get_submodule(name)
    return (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (1, 1)
        and module.bias is None
        and module.groups == 1
        and previous.output_shape is not None
        and module.in_channels == previous.output_shape[1]
    )


def test_a_method_is_computed_once_at_every_layer_then_stored(lite0_explorer: Explorer) -> None:
    e = lite0_explorer
    e.image_picker.value = "water-bird"
    e.class_picker.value = e.class_picker.options[0][1]
    e.method_picker.value = "gradcam"
    stored = e._current_pass()
    new = [method for method in e.methods if method not in stored.methods]
    assert new, "every method is already computed: pick a fresh picture"
    passes = e.passes
    e.method_picker.value = new[0]
    assert e.passes == passes + 1 and new[0] in stored.methods
    assert all((info.name, new[0]) in stored.raw for info in e.layers)  # every layer at once
    e.method_picker.value = "gradcam"
    e.method_picker.value = new[0]
    assert e.passes == passes + 1  # the second visit draws the stored maps


def test_moving_sliders_never_runs_the_model(lite0_explorer: Explorer) -> None:
    e = lite0_explorer
    e.image_picker.value = "water-bird"
    e.class_picker.value = e.class_picker.options[0][1]
    for method in e.methods:  # each method's first visit computes it (one pass each)
        e.method_picker.value = method
    e.method_picker.value = "gradcam"
    forwards = []
    handle = e.loaded.model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        passes = e.passes
        by_layer, by_method, by_alpha = [], [], set()
        for index in range(len(e.layers)):
            e.layer_slider.value = index
            by_layer.append((e.layer, e.current_map.clone(), e.png))
        e.layer_slider.value = len(e.layers) // 2  # at the head some methods coincide
        for method in e.methods:
            e.method_picker.value = method
            by_method.append((method, e.current_map.clone()))
        for alpha in (0.1, 0.3, 0.7):
            e.alpha_slider.value = alpha
            by_alpha.add(e.png)
    finally:
        handle.remove()
    assert forwards == [] and e.passes == passes
    assert len(by_alpha) == 3
    # Each layer shows its own map. Neighbours differ clearly, except where the second layer is a
    # bias-free 1x1 convolution of the first (Lite0's `_conv_head` after `_blocks.15`): Grad-CAM
    # gives the same map there up to float rounding, so their pictures may or may not differ by
    # a pixel depending on the machine; compare the maps, not the PNG bytes.
    invariant = []
    for index in range(1, len(e.layers)):
        (before, map_before, png_before), (name, map_now, png_now) = by_layer[index - 1 : index + 1]
        if _bias_free_1x1_conv_on(e.loaded.model, name, e.layers[index - 1]):
            invariant.append((before, name))
            torch.testing.assert_close(map_now, map_before, atol=1e-4, rtol=0)
            continue
        if map_now.shape == map_before.shape:
            assert float((map_now - map_before).abs().max()) > 0.05, (before, name)
        assert png_now != png_before, (before, name)
    assert invariant == [("_blocks.15", "_conv_head")]
    for (first, map_first), (second, map_second) in itertools.pairwise(by_method):
        assert float((map_first - map_second).abs().max()) > 0.05, (first, second)


def test_no_hooks_left_after_100_changes(lite0_explorer: Explorer) -> None:
    e = lite0_explorer
    model = e.loaded.model
    rng = random.Random(0)
    for step in range(100):
        control = rng.choice(["layer", "method", "alpha", "class", "image"])
        if control == "layer":
            e.layer_slider.value = rng.randrange(len(e.layers))
        elif control == "method":
            e.method_picker.value = rng.choice(e.methods)
        elif control == "alpha":
            e.alpha_slider.value = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0])
        elif control == "class":
            e.class_picker.value = rng.choice(e.class_picker.options[:3])[1]
        else:
            e.image_picker.value = rng.choice(["water-bird", "both"])
        assert not e._failed, (step, control, e.message)
    assert hooks.hook_count(model) == 0
    assert all_hooks(model) == 0
    assert not model.training


# --------------------------------------------------------------------------------------------
# Errors are shown in the widget, which keeps working
# --------------------------------------------------------------------------------------------


def test_a_bad_upload_shows_a_message_and_a_good_one_works(lite0_explorer: Explorer) -> None:
    e = lite0_explorer
    e.image_picker.value = "water-bird"
    shown = e.png
    upload(e.upload, "notes.txt", b"these are not pixels")
    assert "cannot read 'notes.txt' as a picture" in e.message
    assert "upload a JPEG or PNG photo" in e.message
    assert e.png == shown and e.image_picker.value == "water-bird"

    e.layer_slider.value = 2  # still working
    assert e.png != shown and e.message == ""

    upload(e.upload, "cat.png", png_bytes(camkit.sample_image("chelsea")))
    assert e.image_picker.value == "upload:cat.png"
    assert e.message == ""
    assert "cat" in e.caption.value  # Lite0 sees a tabby or tiger cat
    e.image_picker.value = "water-bird"


def test_a_failing_model_shows_a_message_and_the_explorer_goes_on() -> None:
    e = small({"tiny": TinyNet(), "broken": Broken()})
    assert e.model_picker.value == "tiny" and e.message == ""
    shown = e.png
    e.model_picker.value = "broken"
    assert "RuntimeError: this model is broken on purpose" in e.message
    assert e.model_picker.value == "tiny" and e.png == shown
    e.layer_slider.value = 0
    assert e.png != shown and e.message == ""


def test_a_layer_the_engine_refuses_leaves_the_slider_with_a_note() -> None:
    model = UnusedBranch()
    names = [info.name for info in candidate_layers(model)]
    assert "side" in names  # spatial, so a candidate; only explaining shows it is unused
    e = small({"branchy": model})
    assert "side" not in [info.name for info in e.layers]
    assert "layers left out of the slider: side" in e.message
    e.layer_slider.value = 0
    assert e.message == ""


def test_user_models_come_first_and_random_weights_are_said() -> None:
    categories = ["ant", "bee", "cat", "dog"]
    loaded = camkit.LoadedModel(TinyNet(), categories=categories, name="tiny", pretrained=False)
    e = small({"my net": loaded})
    options = list(e.model_picker.options)
    assert options[0] == "my net" and "EfficientNet-Lite0" in options
    assert "random weights" in e.caption.value
    assert e.loaded.categories[e.target] in e.caption.value
    assert [info.name for info in e.layers] == ["stem.0", "stem.1", "body.0", "body.1"]


def test_a_plain_module_shows_class_indices() -> None:
    e = small({"plain": TinyNet()})
    assert all(label.split(". ", 1)[1].startswith("class ") for label, _ in e.class_picker.options)


def test_unreachable_tutorial_models_are_listed_not_offered(monkeypatch) -> None:
    monkeypatch.setattr(widgets, "weights_cached", lambda name: False)
    monkeypatch.setattr(widgets, "download_reachable", lambda: False)
    e = Explorer(models={"tiny": TinyNet()})
    assert not any("ResNet-101" in option for option in e.model_picker.options)
    for title in ("AlexNet", "VGG-16", "ResNet-101", "DenseNet-161", "SqueezeNet 1.1"):
        assert title in e.note.value
    assert "download.pytorch.org cannot be reached" in e.note.value


def test_a_download_that_fails_is_shown_and_reverted(monkeypatch) -> None:
    monkeypatch.setattr(widgets, "weights_cached", lambda name: False)
    monkeypatch.setattr(widgets, "download_reachable", lambda: True)

    def offline(name: str, *args: object, **kwargs: object) -> camkit.LoadedModel:
        raise camkit.WeightsUnavailableError(f"cannot fetch {name!r} weights (offline?)")

    monkeypatch.setattr(widgets, "load_model", offline)
    e = Explorer(models={"tiny": TinyNet()})
    assert e.note.value == ""
    title = "ResNet-101 (downloads its weights)"
    assert title in e.model_picker.options
    e.model_picker.value = title
    assert "cannot fetch 'resnet101' weights" in e.message
    assert e.model_picker.value == "tiny"


def test_the_user_model_is_left_as_found() -> None:
    model = TinyNet().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    e = small({"tiny": model})
    for index in range(len(e.layers)):
        e.layer_slider.value = index
    e.class_picker.value = e.class_picker.options[-1][1]
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all_hooks(model) == 0
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------------------------


def test_upload_values_of_both_ipywidgets_versions_are_read() -> None:
    v7 = {"a.png": {"metadata": {"name": "a.png"}, "content": b"123"}}
    v8 = ({"name": "a.png", "type": "image/png", "size": 3, "content": memoryview(b"123")},)
    assert _explorer.uploaded_files(v7) == _explorer.uploaded_files(v8) == [("a.png", b"123")]
    assert _explorer.uploaded_files({}) == _explorer.uploaded_files(()) == []


def test_colour_table_gives_heatmap_image_colours() -> None:
    generator = torch.Generator().manual_seed(0)
    heat = torch.rand(64, 64, generator=generator)
    heat[0, :4] = torch.tensor([0.0, 1.0, 0.5, 255 / 256])
    for colormap in ("jet", "viridis"):
        table = colour_table(colormap)
        drawn = table[_explorer.colour_indices(heat)]
        assert np.array_equal(drawn, np.asarray(heatmap_image(heat, colormap=colormap)))


def test_only_one_pass_methods_are_offered() -> None:
    names = one_pass_methods()
    assert names[:2] == ["gradcam", "gradcam++"]
    assert "scorecam" not in names and "guided-backprop" not in names
    with pytest.raises(ValueError, match="runs the model again"):
        Explorer(methods=["scorecam"], tutorial_models=False)


def test_candidate_layers_of_torchvision_models_run_stem_to_head() -> None:
    import torchvision

    resnet = torchvision.models.resnet18(weights=None)
    names = [info.name for info in candidate_layers(resnet)]
    assert names == [
        "conv1", "bn1", "relu", "maxpool",
        "layer1.0", "layer1.1", "layer2.0", "layer2.1",
        "layer3.0", "layer3.1", "layer4.0", "layer4.1",
    ]  # fmt: skip
    vgg = torchvision.models.vgg11(weights=None)
    names = [info.name for info in candidate_layers(vgg)]
    assert names == [f"features.{i}" for i in range(21)]  # avgpool and the head left out


def test_show_sets_the_view_by_name_and_refuses_unknown_names(lite0_explorer: Explorer) -> None:
    e = lite0_explorer
    e.image_picker.value = "water-bird"
    e.show(layer="_blocks.10", method="gradcam++", target="pelican", alpha=0.3)
    assert (e.layer, e.method, e.alpha_slider.value) == ("_blocks.10", "gradcam++", 0.3)
    assert e.loaded.categories[e.target] == "pelican" and "pelican" in e.caption.value
    expected = camkit.explain(e.loaded, e.image, methods=["gradcam++"], layers=["_blocks.10"])
    tabby = e.loaded.categories.index("tabby")
    assert tabby not in [index for _, index in e.class_picker.options]
    e.show(target=tabby)  # outside the top 5: added to the list
    labels = dict((index, label) for label, index in e.class_picker.options)
    assert labels[tabby].startswith("other: tabby (") and e.target == tabby
    assert e.probability == pytest.approx(float(expected.probs[0, tabby]))
    assert repr(e) == (
        "Explorer(model='EfficientNet-Lite0', layer='_blocks.10', method='gradcam++', "
        "target='tabby')"
    )
    for bad, match in (
        ({"layer": "layer4"}, "not one of the slider's"),
        ({"method": "scorecam"}, "is not offered"),
        ({"target": "unicorn"}, "is not a class name"),
        ({"target": 1000}, "class index in"),
        ({"alpha": 1.5}, "must be in"),
    ):
        with pytest.raises(ValueError, match=match):
            e.show(**bad)
    e.show(target="spoonbill", layer="_swish", method="gradcam", alpha=0.5)
    assert e.message == ""


def test_the_photo_is_what_the_model_saw(lite0_explorer: Explorer) -> None:
    e = lite0_explorer
    e.image_picker.value = "water-bird"
    photo, _, _ = panels(e.png, GAP)
    assert np.array_equal(np.asarray(e.photo), photo)
    x = e.loaded.preprocessing(e.image)
    mean = torch.tensor(e.loaded.preprocessing.mean)[:, None, None]
    std = torch.tensor(e.loaded.preprocessing.std)[:, None, None]
    seen = ((x * std + mean).clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    assert np.abs(seen - photo.astype(float)).max() <= 1


def test_a_picture_or_a_path_can_start_the_explorer(tmp_path) -> None:
    path = tmp_path / "cat.png"
    camkit.sample_image("chelsea").save(path)
    from_path = Explorer(image=path, models=[TinyNet()], tutorial_models=False)
    assert from_path.image_picker.value == f"file:{path}"
    assert from_path.model_picker.value == "TinyNet"
    from_image = Explorer(
        image=camkit.sample_image("coffee"), models=[TinyNet()], tutorial_models=False
    )
    assert from_image.image_picker.value == "image"
    assert np.array_equal(np.asarray(from_image.image), np.asarray(camkit.sample_image("coffee")))
    assert Explorer(image="both", models=[TinyNet()], tutorial_models=False).image_picker.value == (
        "both"
    )
    with pytest.raises(ValueError, match="no sample image"):
        Explorer(image="unicorn", models=[TinyNet()], tutorial_models=False)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read 'notes\.png' as a picture"):
        Explorer(image=bad, models=[TinyNet()], tutorial_models=False)


def test_a_first_model_that_fails_leaves_the_others_usable() -> None:
    e = small({"broken": Broken(), "tiny": TinyNet()})
    assert "this model is broken on purpose" in e.message and e.png == b""
    assert repr(e) == "Explorer(model='broken')"
    e.model_picker.value = "tiny"
    assert e.message == "" and e.png != b"" and e.layer == "body.1"


# --------------------------------------------------------------------------------------------
# Keeping up with the browser
# --------------------------------------------------------------------------------------------


def watch_passes(monkeypatch, e: Explorer) -> list[tuple[str, list[bool], bytes]]:
    """Record (caption, controls disabled, picture) at the start of each model pass."""
    seen: list[tuple[str, list[bool], bytes]] = []
    real = widgets.explain

    def watching(*args: object, **kwargs: object) -> camkit.Explanation:
        seen.append((e.caption.value, [c.disabled for c in e._controls()], bytes(e.png)))
        return real(*args, **kwargs)

    monkeypatch.setattr(widgets, "explain", watching)
    return seen


def brightness(png: bytes) -> float:
    return float(np.asarray(panels(png, GAP)[0], dtype=float).mean())


def test_a_model_class_or_picture_change_is_busy_before_the_pass(monkeypatch) -> None:
    e = small({"tiny": TinyNet(), "other": TinyNet()})
    seen = watch_passes(monkeypatch, e)
    for change, busy_text in (
        (lambda: setattr(e.model_picker, "value", "other"), "Loading other"),
        (lambda: setattr(e.class_picker, "value", e.class_picker.options[1][1]), "this class"),
        (lambda: setattr(e.image_picker, "value", "coffee"), "sample: coffee"),
    ):
        shown, caption = e.png, e.caption.value
        change()
        busy_caption, disabled, picture = seen[-1]
        # While the model runs, the caption names no view (not the old one) and says what runs;
        # every control is disabled and the old picture is faded (brighter, towards white).
        assert busy_text in busy_caption and "&#8987;" in busy_caption
        assert "&middot; layer" not in busy_caption and busy_caption != caption
        assert all(disabled), disabled
        assert brightness(picture) > brightness(shown) + 20
        # After it: a new view, every control enabled again, nothing faded.
        assert not any(c.disabled for c in e._controls())
        assert "&#8987;" not in e.caption.value and e.png != picture
        assert e.message == ""
    assert e.model_picker.value == "other" and "<b>other</b>" in e.caption.value


def test_a_pass_that_fails_gives_back_the_view_it_replaced() -> None:
    e = small({"tiny": TinyNet(), "broken": Broken()})
    shown, caption = e.png, e.caption.value
    e.model_picker.value = "broken"
    assert "broken on purpose" in e.message
    assert e.png == shown and e.caption.value == caption
    assert not any(c.disabled for c in e._controls())


def test_a_stored_view_needs_no_busy_sign(lite0_explorer: Explorer, monkeypatch) -> None:
    e = lite0_explorer
    e.image_picker.value = "water-bird"
    e.class_picker.value = e.class_picker.options[0][1]
    e.class_picker.value = e.class_picker.options[1][1]
    seen = watch_passes(monkeypatch, e)
    e.class_picker.value = e.class_picker.options[0][1]  # both passes are stored now
    assert seen == [] and "&#8987;" not in e.caption.value


def test_browser_slider_values_are_coalesced_to_the_latest(
    lite0_explorer: Explorer, monkeypatch
) -> None:
    e = lite0_explorer
    e.image_picker.value = "water-bird"
    e.method_picker.value = "gradcam"
    e.layer_slider.value = 0
    real = Explorer._render_now

    def slow(self: Explorer, compute: bool) -> None:
        import time

        time.sleep(0.05)  # a frame that takes 50 ms to draw and send
        real(self, compute)

    monkeypatch.setattr(Explorer, "_render_now", slow)
    frames = e._queue.frames
    for index in range(1, 11):  # a drag: ten values from the browser, faster than frames
        e.layer_slider.set_state({"value": index})
    assert e.wait_drawn(timeout=10)
    drawn = e._queue.frames - frames
    assert 1 <= drawn <= 3, drawn  # not ten frames queued behind each other
    assert e.layer_label.value.startswith(f"11/{len(e.layers)} ")
    assert e.layers[10].name in e.caption.value
    monkeypatch.setattr(Explorer, "_render_now", real)
    last = e.png
    e._pngs.clear()
    e._render()  # drawn again from scratch, from code: the same picture
    assert e.png == last


def test_values_set_from_code_are_drawn_before_the_assignment_returns(
    lite0_explorer: Explorer,
) -> None:
    e = lite0_explorer
    frames = e._queue.frames
    e.layer_slider.value = 3
    assert e.layers[3].name in e.layer_label.value and e._queue.frames == frames


def test_a_rejected_upload_leaves_the_button_counting_nothing(lite0_explorer: Explorer) -> None:
    e = lite0_explorer
    e.image_picker.value = "water-bird"
    upload(e.upload, "notes.txt", b"these are not pixels")
    assert "cannot read 'notes.txt'" in e.message
    assert _explorer.uploaded_files(e.upload.value) == []
    if hasattr(e.upload, "_counter"):  # ipywidgets 7 shows this number on the button
        assert e.upload._counter == 0
    upload(e.upload, "cat.png", png_bytes(camkit.sample_image("chelsea")))
    assert e.image_picker.value == "upload:cat.png" and e.message == ""
    assert _explorer.uploaded_files(e.upload.value) == []
    e.image_picker.value = "water-bird"


def test_method_buttons_are_as_wide_as_their_names(lite0_explorer: Explorer) -> None:
    assert lite0_explorer.method_picker.style.button_width == "auto"
    assert ("Grad-CAM elementwise", "gradcam-elementwise") in [
        tuple(option)
        for option in zip(
            lite0_explorer.method_picker._options_labels,
            lite0_explorer.method_picker._options_values,
            strict=True,
        )
    ]


# --------------------------------------------------------------------------------------------
# Colours, and a picture where there is no kernel
# --------------------------------------------------------------------------------------------


def test_the_colour_map_is_a_control_with_a_colour_bar(lite0_explorer: Explorer) -> None:
    e = lite0_explorer
    e.show(layer="_blocks.10", method="gradcam", target="spoonbill", alpha=0.5)
    assert [value for _, value in e.colour_picker.options] == ["jet", "viridis"]
    assert e.colormap == "jet"
    jet_bar = np.asarray(Image.open(io.BytesIO(e.colour_bar.value)).convert("RGB"))
    assert jet_bar.shape[0] == 224  # as tall as the picture
    table = colour_table("jet")
    assert np.array_equal(jet_bar[0, 0], table[255]) and np.array_equal(jet_bar[-1, 0], table[0])
    e.colour_picker.value = "viridis"
    try:
        assert e.colormap == "viridis" and e.colour_bar.value != b""
        _, heat, _ = panels(e.png, GAP)
        drawn = np.asarray(heatmap_image(e.current_map, colormap="viridis")).astype(int)
        assert np.abs(heat.astype(int) - drawn).max() <= 1
        bar = np.asarray(Image.open(io.BytesIO(e.colour_bar.value)).convert("RGB"))
        assert np.array_equal(bar[0, 0], colour_table("viridis")[255])
    finally:
        e.colour_picker.value = "jet"
    with pytest.raises(ValueError):
        Explorer(models=[TinyNet()], tutorial_models=False, colormap="no-such-map")


def test_the_display_carries_a_still_picture_of_the_view(lite0_explorer: Explorer) -> None:
    import base64

    e = lite0_explorer
    e.show(layer="_swish", method="gradcam", target="spoonbill", alpha=0.5)
    bundle = e._repr_mimebundle_()
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == e.model_id and view["version_major"] == 2
    assert bundle["text/plain"] == repr(e)
    still = Image.open(io.BytesIO(base64.b64decode(bundle["image/jpeg"])))
    assert still.format == "JPEG" and still.width >= 1000
    pixels = np.asarray(still.convert("RGB")).astype(int)
    # The still shows the heatmap: jet's dark red peak and blue background are both in it.
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    blue = (pixels[..., 2] > 120) & (pixels[..., 0] < 40) & (pixels[..., 1] < 60)
    assert red.mean() > 0.005 and blue.mean() > 0.02


def test_ipython_shows_the_widget_with_the_still_beside_it(lite0_explorer: Explorer) -> None:
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(lite0_explorer)
    if widgets._IPYWIDGETS_MAJOR >= 8:
        assert "image/jpeg" in data and "application/vnd.jupyter.widget-view+json" in data
    else:  # ipywidgets 7 displays through _ipython_display_, which sends the same bundle
        assert hasattr(Explorer, "_ipython_display_")
        bundle = lite0_explorer._repr_mimebundle_()
        assert "image/jpeg" in bundle and "application/vnd.jupyter.widget-view+json" in bundle


def test_a_warned_map_is_drawn_flat_with_its_warning() -> None:
    dead = TinyNet()
    with torch.no_grad():
        dead.fc.weight.zero_()  # every gradient zero: camkit warns that the maps are blank
    e = small({"dead": dead})
    assert e.message.startswith("map drawn flat: layer 'body.1'")
    assert "every gradient of the score at this layer is exactly zero" in e.message
    _, heat, _ = panels(e.png, GAP)
    assert np.array_equal(np.unique(heat.reshape(-1, 3), axis=0), colour_table("jet")[:1])
    assert not e._failed and "&#9888;" not in e.status.value  # a note, not an error
