"""Layer names: the tutorial's five architectures, dotted names, modules, auto, listing."""

from __future__ import annotations

import pytest
import torch
import torchvision

import camkit
from camkit.layers import resolve_layer

# The tutorial's deep and shallow layers, and the module each name must designate.
TUTORIAL = {
    "alexnet": [("features_11", lambda m: m.features[11]), ("features_0", lambda m: m.features[0])],
    "vgg16": [("features_29", lambda m: m.features[29]), ("features_0", lambda m: m.features[0])],
    "resnet101": [
        ("layer4", lambda m: m.layer4),
        ("layer1", lambda m: m.layer1),
        ("layer1_bottleneck0", lambda m: m.layer1[0]),
    ],
    "densenet161": [
        ("features_norm5", lambda m: m.features.norm5),
        ("features_norm0", lambda m: m.features.norm0),
    ],
    "squeezenet1_1": [
        ("features_12_expand3x3_activation", lambda m: m.features[12].expand3x3_activation),
        ("features_3_expand3x3_activation", lambda m: m.features[3].expand3x3_activation),
    ],
}


@pytest.fixture(scope="module")
def tutorial_models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {name: torchvision.models.get_model(name, weights=None).eval() for name in TUTORIAL}


@pytest.mark.parametrize("arch", sorted(TUTORIAL))
def test_tutorial_layer_names_resolve_to_the_right_modules(tutorial_models, arch) -> None:
    model = tutorial_models[arch]
    modules = dict(model.named_modules())
    for name, get in TUTORIAL[arch]:
        assert modules[resolve_layer(model, name)] is get(model), name


@pytest.mark.parametrize("arch", sorted(TUTORIAL))
def test_tutorial_deep_and_shallow_maps(tutorial_models, arch) -> None:
    model = tutorial_models[arch]
    x = torch.randn(1, 3, 160, 160)
    layers = [name for name, _ in TUTORIAL[arch]]
    explanation = camkit.explain(model, x, methods=["gradcam", "gradcam++"], layers=layers)
    assert len(explanation.layers) == len(layers)
    for key, value in explanation.maps.items():
        assert value.shape == (1, 160, 160), key
        assert torch.isfinite(value).all(), key
        assert value.min() >= 0.0 and value.max() <= 1.0
    # Shallow layers keep more spatial detail than deep ones.
    deep, shallow = explanation.layers[0], explanation.layers[1]
    assert (
        explanation.raw[(shallow, "gradcam")].shape[-1]
        > explanation.raw[(deep, "gradcam")].shape[-1]
    )


def test_module_objects_and_dotted_names(tutorial_models) -> None:
    model = tutorial_models["resnet101"]
    assert resolve_layer(model, model.layer3) == "layer3"
    assert resolve_layer(model, "layer3.1.conv2") == "layer3.1.conv2"
    with pytest.raises(ValueError, match="not a submodule"):
        resolve_layer(model, torch.nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError, match=r"module names or nn\.Module"):
        resolve_layer(model, 4)


def test_unknown_layer_lists_closest_names(tutorial_models) -> None:
    model = tutorial_models["resnet101"]
    with pytest.raises(
        ValueError, match=r"'layer5' not found in ResNet; closest: 'layer4'.*camkit layers"
    ):
        resolve_layer(model, "layer5")
    with pytest.raises(ValueError, match=r"closest: 'features\.11'"):
        resolve_layer(tutorial_models["alexnet"], "features_111")


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("resnet101", "layer4"),
        ("densenet161", "features"),
        ("alexnet", "features"),
        ("vgg16", "features"),
    ],
)
def test_auto_picks_the_last_spatial_layer_before_pooling(tutorial_models, arch, expected) -> None:
    explanation = camkit.explain(tutorial_models[arch], torch.randn(1, 3, 128, 128))
    assert explanation.layers == [expected]


def test_auto_on_the_offline_model_is_the_head_activation(lite0) -> None:
    layers = camkit.list_layers(lite0)
    auto = [info for info in layers if info.is_auto]
    assert [info.name for info in auto] == ["_swish"]
    assert auto[0].calls == 2 and auto[0].output_shape == (1, 1280, 7, 7)
    names = [info.name for info in layers]
    assert names.index("_conv_stem") < names.index("_blocks.0") < names.index("_conv_head")
    # Listed where it is explained: its last call, after the head's batch norm.
    assert names.index("_bn1") < names.index("_swish") < names.index("_avg_pooling")


def test_auto_without_spatial_layers_is_a_clear_error() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    with pytest.raises(ValueError, match="found no module with a spatial"):
        camkit.explain(model, torch.randn(1, 3, 2, 2))
