"""load_model: the offline default, torchvision names, weight files, refusing pickles."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision

import camkit


def test_default_model_is_pretrained_and_offline(lite0) -> None:
    assert lite0.name == "efficientnet_lite0"
    assert len(lite0.categories) == 1000 and lite0.categories[282] == "tiger cat"
    assert not lite0.model.training
    assert lite0.preprocessing.crop_size == 224


def test_torchvision_model_without_weights_knows_its_preprocessing_and_classes() -> None:
    loaded = camkit.load_model("resnet18", weights=None)
    assert isinstance(loaded.model, torchvision.models.ResNet)
    assert loaded.preprocessing.resize_size == 256 and loaded.preprocessing.crop_size == 224
    assert loaded.categories[0] == "tench"


def test_state_dict_file_is_loaded_weights_only(tmp_path) -> None:
    torch.manual_seed(0)
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    loaded = camkit.load_model("resnet18", weights=path)
    torch.testing.assert_close(loaded.model.fc.weight, source.fc.weight)
    with pytest.raises(ValueError, match="do not fit 'alexnet'"):
        camkit.load_model("alexnet", weights=path)
    with pytest.raises(ValueError, match="holds weights only; name the architecture"):
        camkit.load_model(path)


class Payload:
    def __reduce__(self):  # a pickle that would run code when unpickled
        return (print, ("unpickled!",))


def test_pickled_objects_are_refused(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"weight": Payload()}))
    with pytest.raises(ValueError, match="never pickled objects"):
        camkit.load_model("resnet18", weights=path)
    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), whole)
    with pytest.raises(ValueError, match="never pickled objects"):
        camkit.load_model(whole)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_file(tmp_path) -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(model), path)
    loaded = camkit.load_model(path)
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(loaded.model(x), model(x))
    with pytest.raises(TypeError, match="TorchScript module, whose layers cannot be hooked"):
        camkit.explain(loaded, x)


def test_unknown_model_suggests_names() -> None:
    with pytest.raises(ValueError, match="closest: 'resnet50'"):
        camkit.load_model("resnet5O")


def test_unknown_weights_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        camkit.load_model("resnet18", weights="IMAGENET_V9")


def test_public_names() -> None:
    assert sorted(camkit.__all__) == sorted(
        [
            "CamkitError",
            "Explanation",
            "Explorer",
            "LayerInfo",
            "LayerNotFoundError",
            "LayerTensors",
            "LoadedModel",
            "MapWarning",
            "MethodNotFoundError",
            "Preprocessing",
            "WeightsUnavailableError",
            "__version__",
            "explain",
            "export_explorer",
            "grid",
            "list_layers",
            "list_methods",
            "load_model",
            "overlay",
            "register_method",
            "sample_boxes",
            "sample_image",
            "sample_image_path",
        ]
    )
    for name in camkit.__all__:
        if name != "Explorer":  # needs ipywidgets; tests/test_widgets.py covers it
            assert hasattr(camkit, name)
