"""camkit.MapWarning: each warning fires on a tiny model built here, and a sound map gives none.

Every warning has a model whose numbers can be worked out on paper; a normal explanation (the
sample pictures with the offline Lite0, every method) gives no warning. The architecture tests
(tests/test_architectures.py) explain every torchvision, timm and Hugging Face model with 8
methods under pytest's ``error::UserWarning:camkit`` filter, so a MapWarning there fails them:
``test_the_test_configuration_turns_map_warnings_into_errors`` checks that filter holds.
"""

from __future__ import annotations

import copy
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import camkit
from camkit import MapWarning
from camkit._map_warnings import NOISE_RATIO, _channel_weights, term_sizes
from camkit.cam import LayerTensors, get_method
from camkit.figures import explanation_figure, grid, is_warned, map_warning
from tests.conftest import ONE_PASS_METHODS

ROOT = Path(__file__).resolve().parents[1]


def _head(features: nn.Module, channels: int, classes: int) -> nn.Sequential:
    return nn.Sequential(
        features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)
    ).eval()


def _explain_recording(*args: object, **kwargs: object) -> tuple[camkit.Explanation, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explanation = camkit.explain(*args, **kwargs)  # type: ignore[arg-type]
    return explanation, [str(w.message) for w in caught if issubclass(w.category, MapWarning)]


def _zero_head_model() -> nn.Sequential:
    """A classifier whose head is zero-initialised, as torchvision's ViT is with weights=None."""
    torch.manual_seed(0)
    model = _head(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()), 4, 3)
    nn.init.zeros_(model[3].weight)
    nn.init.zeros_(model[3].bias)
    return model


def _negative_evidence_model() -> nn.Sequential:
    """Activations >= 0 (ReLU after a positive bias), class 0's weights all negative.

    Grad-CAM's channel weights are then -1/hw: sum_k w_k A_k <= 0 everywhere, zero after ReLU.
    """
    torch.manual_seed(0)
    model = _head(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()), 4, 2)
    with torch.no_grad():
        model[0][0].bias.fill_(1.0)
        model[3].weight.copy_(torch.tensor([[-1.0] * 4, [1.0] * 4]))
        model[3].bias.zero_()
    return model


def _cancelling_model(signal: float) -> nn.Sequential:
    """Two channels of 1000 plus ``signal`` x (red pixel) in the first; class 0 = A_0 - A_1.

    Grad-CAM's map is ReLU(signal x red / hw): the terms summed are 1000/hw each, so the map's
    range over the terms' size is about ``signal`` x 4 / 2000.
    """
    conv = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = signal
        conv.bias.fill_(1000.0)
    model = _head(conv, 2, 2)
    with torch.no_grad():
        model[3].weight.copy_(torch.tensor([[1.0, -1.0], [1.0, 1.0]]))
        model[3].bias.zero_()
    return model


X = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------------------------
# Each warning, triggered
# --------------------------------------------------------------------------------------------


def test_every_gradient_zero_warns_once_per_layer_and_class() -> None:
    with pytest.warns(MapWarning, match=r"layer '0', class 0: every gradient .* exactly zero"):
        explanation = camkit.explain(
            _zero_head_model(), X, methods=["gradcam", "layercam"], layers="0", target=0
        )
    assert len(explanation.warnings) == 1
    message = explanation.warnings[0]
    assert "gradcam, layercam have nothing to weigh" in message and "check the model" in message
    assert "\n" not in message
    assert explanation.warning_for("gradcam") == message == explanation.warning_for("layercam")
    assert not explanation.raw[("0", "gradcam")].any()  # blank, as the warning says


def test_a_map_zero_after_the_relu_warns_no_positive_evidence() -> None:
    model = _negative_evidence_model()
    with pytest.warns(MapWarning, match=r"gradcam at layer '0', class 0: the map is zero"):
        explanation = camkit.explain(model, X, layers="0", target=0)
    assert "no position gives positive evidence" in explanation.warnings[0]
    assert explanation.warning_for() is not None
    # Class 1 (weights +1) has evidence everywhere: no warning.
    sound, caught = _explain_recording(model, X, layers="0", target=1)
    assert caught == [] and sound.warnings == () and sound.warning_for() is None


def test_a_range_at_rounding_noise_level_warns() -> None:
    # signal 1e-4: range / terms' size ~ 2e-7, well under NOISE_RATIO = 1e-5.
    with pytest.warns(MapWarning, match=r"gradcam at layer '0', class 0: the map's range"):
        explanation = camkit.explain(_cancelling_model(1e-4), X, layers="0", target=0)
    message = explanation.warnings[0]
    assert "rounding-noise level" in message and "paint float noise" in message
    raw = explanation.raw[("0", "gradcam")]
    assert 0 < float(raw.max() - raw.min()) < 1e-5  # noise indeed, yet min-max makes it 0..1
    assert float(explanation.maps[("0", "gradcam")].max()) == pytest.approx(1.0)
    # The same model with a signal 10,000 times stronger (ratio ~ 2e-3) is a sound map.
    sound, caught = _explain_recording(_cancelling_model(1.0), X, layers="0", target=0)
    assert caught == [] and sound.warnings == ()


def test_a_constant_map_warns() -> None:
    # One channel, constant over positions: Grad-CAM's map is constant and positive.
    model = _head(nn.Conv2d(3, 1, 1), 1, 2)
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.fill_(2.0)
        model[3].weight.fill_(1.0)
    with pytest.warns(MapWarning, match="the map is constant"):
        camkit.explain(model, X, layers="0", target=0)


def test_a_softmax_output_warns_that_a_probability_is_explained() -> None:
    model = nn.Sequential(*_negative_evidence_model(), nn.Softmax(dim=1)).eval()
    with pytest.warns(MapWarning, match=r"class 1, p = .*ends in a softmax") as record:
        explanation = camkit.explain(model, X, layers="0", target=1)
    assert "explain the logits" in explanation.warnings[0]
    assert "model[:-1]" in str(record[0].message)
    # Without the softmax: no warning (and the check looks at the outputs, not the module list).
    logits, caught = _explain_recording(model[:-1], X, layers="0", target=1)
    assert caught == [] and logits.warnings == ()


def test_training_mode_warns_and_is_explained_in_eval_mode_without_changing_the_model() -> None:
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    model = nn.Sequential(*_head(features, 4, 3), nn.Dropout(0.5))
    with torch.no_grad():
        model[0][1].running_mean.fill_(0.3)
    evaluated = camkit.explain(copy.deepcopy(model).eval(), X, layers="0.2")
    model.train()
    with pytest.warns(MapWarning, match=r"is in training mode \('0.1' is a BatchNorm2d"):
        explanation = camkit.explain(model, X, layers="0.2")
    assert "evaluation mode" in explanation.warnings[0]
    assert all(module.training for module in model.modules()), "the model's flags changed"
    torch.testing.assert_close(explanation.maps, evaluated.maps)


def test_training_mode_of_modules_that_ignore_it_does_not_warn() -> None:
    model = _negative_evidence_model().train()  # Conv, ReLU, pooling, Linear: same output
    _, caught = _explain_recording(model, X, layers="0", target=1)
    assert caught == []


@pytest.mark.parametrize("peak", [255.0, 1.5])
def test_float_pixels_over_one_are_refused(peak: float) -> None:
    picture = np.linspace(0, peak, 32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3)
    with pytest.raises(ValueError, match=rf"values up to {peak:g}: pass pixels in \[0, 1\]"):
        camkit.explain(_negative_evidence_model(), picture, layers="0")


def test_float_pixels_below_zero_are_refused_as_already_normalised() -> None:
    picture = np.linspace(-2, 2, 32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3)
    with pytest.raises(ValueError, match="looks normalised already"):
        camkit.explain(_negative_evidence_model(), picture, layers="0")


def test_pixels_in_zero_one_are_accepted() -> None:
    picture = np.linspace(0, 1, 32 * 32 * 3, dtype=np.float64).reshape(32, 32, 3)
    _, caught = _explain_recording(_negative_evidence_model(), picture, layers="0", target=1)
    assert caught == []


def test_normalize_warns_about_0_255_pixels() -> None:
    pixels = torch.full((3, 4, 4), 200.0)
    with pytest.warns(MapWarning, match=r"values up to 200: pass pixels in \[0, 1\]"):
        camkit.Preprocessing().normalize(pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        camkit.Preprocessing().normalize(pixels / 255)


# --------------------------------------------------------------------------------------------
# Kept, and drawn flat
# --------------------------------------------------------------------------------------------


def test_warnings_are_kept_when_the_caller_ignores_them() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MapWarning)
        explanation = camkit.explain(_zero_head_model(), X, layers="0", target=0)
    assert len(explanation.warnings) == 1 and "every gradient" in explanation.warnings[0]
    assert "warnings=1" in repr(explanation)


def test_smoothed_and_guided_maps_are_checked_too() -> None:
    # These maps come from passes of their own (noisy copies, guided backpropagation): they are
    # checked on their raw maps, and only the maps returned carry warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MapWarning)
        explanation = camkit.explain(
            _zero_head_model(),
            X,
            methods=["layercam", "guided-backprop"],
            layers="0",
            target=0,
            smooth="noise",
            smooth_samples=2,
        )
    assert set(explanation.flagged) == {("0", "layercam"), ("0", "guided-backprop")}
    assert "the map is zero everywhere" in explanation.warning_for("layercam")
    assert "gradient image is zero" in explanation.warning_for("guided-backprop")
    assert len(explanation.warnings) == 2
    sound, caught = _explain_recording(
        _cancelling_model(1.0),
        X,
        methods=["gradcam", "guided-gradcam"],
        layers="0",
        target=0,
        smooth="noise",
        smooth_samples=2,
    )
    assert caught == [] and sound.warnings == ()


def test_each_call_warns_again() -> None:
    # A notebook cell run twice shows the warning twice (no "already shown" registry).
    model = _zero_head_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(2):
            camkit.explain(model, X, layers="0", target=0)
    assert len([w for w in caught if issubclass(w.category, MapWarning)]) == 2
    assert all(w.filename == __file__ for w in caught), "the warning points at the caller"


def test_warnings_name_the_image_and_class_with_a_batch_and_top_k() -> None:
    model = _negative_evidence_model()
    batch = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MapWarning)
        explanation = camkit.explain(model, batch, layers="0", top_k=2)
    # Class 1 is each image's top class (evidence everywhere); class 0 has none.
    assert explanation.targets.tolist() == [[1, 0], [1, 0]]
    assert len(explanation.warnings) == 2
    assert "class 0 of 'image 1'" in explanation.warnings[1]
    assert [explanation.warning_for(index=i, rank=r) is None for i in (0, 1) for r in (0, 1)] == [
        True,
        False,
        True,
        False,
    ]


def test_figures_draw_a_warned_map_flat_with_its_message() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MapWarning)
        noisy = camkit.explain(_cancelling_model(1e-4), X, layers="0", target=0)
    assert float(noisy.maps[("0", "gradcam")].std()) > 0.1  # min-max painted the noise
    for figure in (noisy.figure(), explanation_figure(noisy), grid([noisy, noisy])):
        warned = [ax for ax in figure.axes if "gradcam: MapWarning" in ax.get_title()]
        assert warned, [ax.get_title() for ax in figure.axes]
        for ax in warned:
            pixels = np.asarray(ax.images[0].get_array())
            assert np.ptp(pixels.reshape(-1, pixels.shape[-1]), axis=0).max() == 0, "not flat"
            texts = " ".join(t.get_text() for t in ax.texts).replace("\n", " ")
            assert "rounding-noise level" in texts
    flat = noisy.overlay()
    expected = camkit.overlay(noisy.images[0], torch.zeros(8, 8))
    assert np.array_equal(np.asarray(flat), np.asarray(expected))
    assert is_warned(noisy, "0", "gradcam") and map_warning(noisy, "0", "gradcam") is not None


def test_figures_draw_a_sound_map_in_colour() -> None:
    sound = camkit.explain(_cancelling_model(1.0), X, layers="0", target=0)
    figure = sound.figure()
    assert not [ax for ax in figure.axes if "MapWarning" in ax.get_title()]
    heat = next(ax for ax in figure.axes if "gradcam heatmap" in ax.get_title())
    pixels = np.asarray(heat.images[0].get_array())
    assert np.ptp(pixels.reshape(-1, pixels.shape[-1]), axis=0).max() > 100


# --------------------------------------------------------------------------------------------
# No warning on sound maps; the threshold measured
# --------------------------------------------------------------------------------------------

#: The methods of explain's one shared pass (the registry's, as the other tests use them).
ONE_PASS = ONE_PASS_METHODS


def test_the_test_configuration_turns_map_warnings_into_errors() -> None:
    # The architecture tests rely on it to show that no sound map warns.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    filters = config["tool"]["pytest"]["ini_options"]["filterwarnings"]
    assert "error::UserWarning:camkit" in filters
    with pytest.raises(MapWarning):
        camkit.explain(_zero_head_model(), X, layers="0", target=0)


@pytest.mark.parametrize("picture", ["chelsea", "both", "coffee", "water-bird"])
def test_sample_pictures_give_no_warning_with_any_method(lite0, picture: str) -> None:
    image = camkit.sample_image(picture)
    explanation, caught = _explain_recording(
        lite0, image, methods=ONE_PASS, layers=["auto", "_blocks.15", "_blocks.8"], top_k=2
    )
    assert caught == [] and explanation.warnings == ()


def test_the_methods_with_passes_of_their_own_give_no_warning(lite0) -> None:
    # One picture: the perturbation methods run the model once per channel (16 of them here).
    image = camkit.sample_image("chelsea")
    slow = ["scorecam", "ablationcam", "sscam", "iscam"]
    explanation, caught = _explain_recording(
        lite0, image, methods=slow, max_channels=16, batch_size=16, progress=False
    )
    assert caught == [] and explanation.warnings == ()
    explanation, caught = _explain_recording(
        lite0,
        image,
        methods=["guided-backprop", "guided-gradcam", "smoothgradcam++", "gradcam"],
        smooth="noise",
        smooth_samples=2,
    )
    assert caught == [] and explanation.warnings == ()


def test_the_channel_weights_of_the_noise_check_are_the_methods_own() -> None:
    # term_sizes restates three formulas of camkit.cam: ReLU(sum_k w_k A_k) with them must give
    # the methods' own maps, so the two cannot drift apart.
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(2, 6, 5, 5, generator=generator)  # signed, as after a BatchNorm
    g = torch.randn(2, 6, 5, 5, generator=generator)
    for name in ("gradcam", "xgradcam", "gradcam++"):
        weights = _channel_weights(name, a, g)
        assert weights is not None
        rebuilt = torch.relu(torch.einsum("nc,nchw->nhw", weights, a))
        expected = get_method(name).function(LayerTensors(a, g))
        torch.testing.assert_close(rebuilt, expected)
        sizes = term_sizes(name, a, g)
        assert sizes is not None and (sizes >= expected - 1e-6).all()


def test_noise_ratio_sits_between_float_noise_and_the_smallest_sound_range(lite0) -> None:
    # The threshold's justification, measured on Lite0's last layer (chelsea, top 2 classes,
    # 8 methods): the model in float32 against the model in float64 moves the maps by at most
    # 1.7e-6 of the terms' size (Eigen-Grad-CAM; the others under 1e-6), so at the threshold
    # rounding noise is at most a sixth of the range; every sound map's range is over
    # 100 x NOISE_RATIO of the terms' size (0.03 at the smallest, over 576 maps of 9 layers).
    import camkit._map_warnings as checks
    import camkit.engine as engine

    seen: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    original = engine.layer_flags

    def spy(layer, raws, a, g, gradient_methods, rows):  # type: ignore[no-untyped-def]
        for method, raw in raws.items():
            flat = raw.flatten(1).double()
            size = flat.abs().amax(dim=1)
            sizes = checks.term_sizes(method, a, g)
            if sizes is not None:
                size = torch.maximum(size, sizes.flatten(1).double().amax(dim=1))
            seen.setdefault((layer, method), {}).setdefault("size", size)  # the first call's
        return original(layer, raws, a, g, gradient_methods, rows)

    image = camkit.sample_image("chelsea")
    double = camkit.LoadedModel(
        copy.deepcopy(lite0.model).double(), lite0.preprocessing, lite0.categories, "lite0-64"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "layer_flags", spy)
        single = camkit.explain(lite0, image, methods=ONE_PASS, top_k=2)
        exact = camkit.explain(double, image, methods=ONE_PASS, top_k=2)
    for key, raw in single.raw.items():
        size = seen[key]["size"][:, None]
        flat, reference = raw.flatten(1).double(), exact.raw[key].flatten(1).double()
        noise = ((flat - reference).abs().amax(dim=1, keepdim=True) / size).max()
        spread = ((flat.amax(dim=1, keepdim=True) - flat.amin(dim=1, keepdim=True)) / size).min()
        assert noise < NOISE_RATIO / 4, (key, float(noise))
        assert spread > 100 * NOISE_RATIO, (key, float(spread))
