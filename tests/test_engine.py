"""The engine's promises: one pass, the user's model untouched, batches, targets, outputs."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

import camkit
from tests.conftest import ONE_PASS_METHODS, SmallCNN

# Methods computed from the one shared forward and backward pass (no extra passes of their own).
ALL_METHODS = ONE_PASS_METHODS
TWO_LAYERS = ("stem", "block.0")


class CountingModel(nn.Module):
    """Counts calls of the wrapped model's forward."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": _hooks(model),
    }


def _assert_unchanged(model: nn.Module, before: dict[str, object]) -> None:
    after = _snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"] == 0
    for a, b in zip(after["grad"], before["grad"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key


def test_one_forward_pass_for_eight_methods_on_two_layers(small_cnn) -> None:
    counting = CountingModel(small_cnn)
    x = torch.randn(2, 3, 16, 16)
    explanation = camkit.explain(
        counting, x, methods=ALL_METHODS, layers=("inner.stem", "inner.block")
    )
    assert counting.calls == 1
    assert len(explanation.maps) == 16
    assert all(p.grad is None for p in counting.parameters())


def test_auto_costs_at_most_one_probe_and_is_cached(small_cnn) -> None:
    counting = CountingModel(small_cnn)
    x = torch.randn(1, 3, 16, 16)
    first = camkit.explain(counting, x, methods=ALL_METHODS)
    assert counting.calls == 2  # probe + the explained pass
    second = camkit.explain(counting, x, methods=ALL_METHODS)
    assert counting.calls == 3  # the auto choice is cached per model and input shape
    assert first.layers == second.layers == ["inner.block"]


def test_model_unchanged_after_success_in_train_mode_with_existing_grads(small_cnn) -> None:
    small_cnn.train()
    small_cnn.fc.weight.grad = torch.ones_like(small_cnn.fc.weight)
    small_cnn.stem[0].weight.requires_grad_(False)
    before = _snapshot(small_cnn)
    camkit.explain(small_cnn, torch.randn(2, 3, 16, 16), methods=ALL_METHODS, layers=TWO_LAYERS)
    _assert_unchanged(small_cnn, before)


class Exploding(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.explode = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner.block(self.inner.stem(x))
        if self.explode:
            raise RuntimeError("boom")
        return self.inner.fc(torch.flatten(self.inner.pool(out), 1))


def test_model_unchanged_and_no_hooks_after_an_exception_in_forward(small_cnn) -> None:
    model = Exploding(small_cnn).train()
    camkit.explain(model, torch.randn(1, 3, 16, 16))  # caches "auto", hooks gone
    model.explode = True
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        camkit.explain(
            model, torch.randn(1, 3, 16, 16), methods=ALL_METHODS, layers=("inner.stem", "auto")
        )
    _assert_unchanged(model, before)


def test_exception_in_custom_target_leaves_no_hooks(small_cnn) -> None:
    before = _snapshot(small_cnn)

    def bad_target(output: torch.Tensor) -> torch.Tensor:
        raise ValueError("bad target")

    with pytest.raises(ValueError, match="bad target"):
        camkit.explain(small_cnn, torch.randn(1, 3, 16, 16), target=bad_target, layers="block")
    _assert_unchanged(small_cnn, before)


def test_works_inside_no_grad_and_gives_the_same_maps(small_cnn) -> None:
    x = torch.randn(2, 3, 16, 16)
    outside = camkit.explain(small_cnn, x, methods=ALL_METHODS, layers="block")
    with torch.no_grad():
        inside = camkit.explain(small_cnn, x, methods=ALL_METHODS, layers="block")
    for key, value in outside.maps.items():
        torch.testing.assert_close(inside.maps[key], value)
        assert value.max() > 0


def _reference_gradcam(model: nn.Module, x: torch.Tensor, split: int, target: int) -> torch.Tensor:
    """Grad-CAM computed by splitting AlexNet's features by hand (no hooks)."""
    features = model.features
    activation = features[:split](x).detach().requires_grad_(True)
    rest = features[split:](activation.clone())
    logits = model.classifier(torch.flatten(model.avgpool(rest), 1))
    (grad,) = torch.autograd.grad(logits[0, target], activation)
    weights = grad.mean(dim=(2, 3))
    return torch.relu(torch.einsum("nc,nchw->nhw", weights, activation.detach()))


def test_in_place_relu_after_the_layer_gives_the_correct_map() -> None:
    torch.manual_seed(0)
    model = torchvision.models.alexnet(weights=None).eval()
    assert model.features[11].inplace  # the ReLU right after features.10 works in place
    x = torch.randn(1, 3, 96, 96)
    target = 7
    explanation = camkit.explain(model, x, layers="features.10", target=target)
    expected = _reference_gradcam(model, x, 11, target)
    torch.testing.assert_close(
        explanation.raw[("features.10", "gradcam")], expected, rtol=1e-4, atol=1e-5
    )
    assert expected.max() > 0


def test_batch_with_per_image_targets_equals_one_by_one(small_cnn) -> None:
    x = torch.randn(3, 3, 16, 16)
    targets = [4, 0, 2]
    batch = camkit.explain(small_cnn, x, methods=ALL_METHODS, layers=TWO_LAYERS, target=targets)
    assert batch.targets.tolist() == [[4], [0], [2]]
    for i, t in enumerate(targets):
        alone = camkit.explain(
            small_cnn, x[i : i + 1], methods=ALL_METHODS, layers=TWO_LAYERS, target=t
        )
        for key, value in alone.maps.items():
            torch.testing.assert_close(batch.maps[key][i], value[0], rtol=1e-4, atol=1e-5)


def test_top_k_equals_explaining_each_class_with_one_forward(small_cnn) -> None:
    counting = CountingModel(small_cnn)
    x = torch.randn(2, 3, 16, 16)
    top = camkit.explain(counting, x, methods=ALL_METHODS, layers="inner.block", top_k=3)
    assert counting.calls == 1
    ranked = small_cnn(x).topk(3, dim=1).indices
    assert torch.equal(top.targets, ranked)
    for rank in range(3):
        single = camkit.explain(
            small_cnn, x, methods=ALL_METHODS, layers="block", target=ranked[:, rank].tolist()
        )
        for method in ALL_METHODS:
            got = top.maps[("inner.block", method)][:, rank]
            torch.testing.assert_close(got, single.maps[("block", method)], rtol=1e-4, atol=1e-5)
    assert top.maps[("inner.block", "gradcam")].shape == (2, 3, 16, 16)


# A black picture: some classes have no positive evidence at the last layer (a MapWarning).
@pytest.mark.filterwarnings("ignore::camkit.MapWarning")
def test_target_by_name_with_suggestion(lite0) -> None:
    x = torch.zeros(1, 3, 64, 64)
    explanation = camkit.explain(lite0, x, target="Tiger Cat")
    assert explanation.targets.tolist() == [[282]]
    assert explanation.labels == [["tiger cat"]]
    with pytest.raises(ValueError, match="did you mean 'tiger cat'"):
        camkit.explain(lite0, x, target="tigre cat")
    # ImageNet has a dog "Cardigan" and a sweater "cardigan": exact spelling decides.
    assert camkit.explain(lite0, x, target="cardigan").targets.tolist() == [[474]]
    assert camkit.explain(lite0, x, target="Cardigan").targets.tolist() == [[264]]
    with pytest.raises(ValueError, match="matches several classes"):
        camkit.explain(lite0, x, target="CARDIGAN")


def test_target_errors(small_cnn) -> None:
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match="out of range"):
        camkit.explain(small_cnn, x, target=5)
    with pytest.raises(ValueError, match="3 classes for 2 images"):
        camkit.explain(small_cnn, x, target=[1, 2, 3])
    with pytest.raises(ValueError, match="class names are unknown"):
        camkit.explain(small_cnn, x, target="cat")
    with pytest.raises(TypeError, match="not supported"):
        camkit.explain(small_cnn, x, target=1.5)


def test_callable_target_explains_a_custom_score(small_cnn) -> None:
    x = torch.randn(2, 3, 16, 16)
    custom = camkit.explain(small_cnn, x, layers="block", target=lambda out: out[:, 1] - out[:, 2])
    assert custom.targets is None
    # Grad-CAM is linear in the gradient before the ReLU: compare with the raw weighted sums.
    one = camkit.explain(small_cnn, x, layers="block", target=1, methods="hirescam")
    assert custom.maps[("block", "gradcam")].shape == (2, 16, 16)
    assert not torch.equal(custom.maps[("block", "gradcam")], one.maps[("block", "hirescam")])


class TupleOutput(nn.Module):
    def __init__(self, inner: nn.Module, kind: str) -> None:
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x: torch.Tensor) -> object:
        logits = self.inner(x)
        if self.kind == "tuple":
            return logits, torch.zeros(1)
        if self.kind == "dict":
            return {"aux": torch.zeros(1), "logits": logits}
        return ModelOutputLike(logits=logits)


class ModelOutputLike(OrderedDict):
    """Mimics transformers' ModelOutput: a dict with attribute access."""

    def __getattr__(self, name: str) -> object:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@pytest.mark.parametrize("kind", ["tuple", "dict", "model-output"])
def test_model_output_types(small_cnn, kind) -> None:
    x = torch.randn(2, 3, 16, 16)
    expected = camkit.explain(small_cnn, x, layers="block")
    got = camkit.explain(TupleOutput(small_cnn, kind), x, layers="inner.block")
    torch.testing.assert_close(
        got.maps[("inner.block", "gradcam")], expected.maps[("block", "gradcam")]
    )
    torch.testing.assert_close(got.logits, expected.logits)


def test_frozen_model_still_explains(small_cnn) -> None:
    for parameter in small_cnn.parameters():
        parameter.requires_grad_(False)
    x = torch.randn(1, 3, 16, 16)
    frozen = camkit.explain(small_cnn, x, methods=ALL_METHODS, layers=TWO_LAYERS)
    for parameter in small_cnn.parameters():
        parameter.requires_grad_(True)
    free = camkit.explain(small_cnn, x, methods=ALL_METHODS, layers=TWO_LAYERS)
    for key, value in free.maps.items():
        torch.testing.assert_close(frozen.maps[key], value)
    assert all(not p.requires_grad for p in []) and all(
        p.grad is None for p in small_cnn.parameters()
    )


class SharedActivation(nn.Module):
    """One activation module called at the stem and at the head, as EfficientNet's ``_swish``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(6, 3)
        self.repeats = 1  # how many times the head runs: changes the act's number of calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem(x))
        for _ in range(self.repeats):
            x = self.act(self.head(x)) if x.shape[1] == 4 else self.act(x)
        return self.fc(x.mean(dim=(2, 3)))


def test_shared_module_is_explained_at_its_last_call() -> None:
    torch.manual_seed(0)
    model = SharedActivation().eval()
    x = torch.randn(1, 3, 8, 8)
    explanation = camkit.explain(model, x, layers="auto", methods="eigencam")
    assert explanation.layers == ["act"]
    # The head call's 4x4 map, not the stem's 8x8.
    assert explanation.raw[("act", "eigencam")].shape == (1, 4, 4)


def test_device_mismatch_is_a_clear_error(small_cnn) -> None:
    with pytest.raises(ValueError, match="not a device"):
        camkit.explain(small_cnn, torch.randn(1, 3, 8, 8), device="gpu0")


def test_non_spatial_layer_is_a_clear_error(small_cnn) -> None:
    with pytest.raises(ValueError, match=r"layer 'fc' output has shape \(1, 5\)"):
        camkit.explain(small_cnn, torch.randn(1, 3, 8, 8), layers="fc")


def test_a_model_copy_is_not_needed(small_cnn) -> None:
    twin = copy.deepcopy(small_cnn)
    x = torch.randn(1, 3, 16, 16)
    camkit.explain(small_cnn, x, methods=ALL_METHODS, layers=TWO_LAYERS)
    torch.testing.assert_close(small_cnn(x), twin(x))


def test_explanation_indexing(small_cnn) -> None:
    x = torch.randn(1, 3, 16, 16)
    one = camkit.explain(small_cnn, x, methods=["gradcam", "layercam"], layers="block")
    assert torch.equal(one["gradcam"], one.maps[("block", "gradcam")])
    two = camkit.explain(small_cnn, x, layers=TWO_LAYERS)
    with pytest.raises(KeyError, match="several layers"):
        two["gradcam"]
    assert torch.equal(two[("stem", "gradcam")], two.maps[("stem", "gradcam")])
    assert isinstance(SmallCNN, type)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "resnet50"}, TypeError, "`model` must be a torch.nn.Module"),
        ({"layers": []}, ValueError, "`layers` is empty"),
        ({"methods": []}, ValueError, "`methods` is empty"),
        ({"top_k": 0}, ValueError, "`top_k` must be a positive integer"),
        ({"top_k": 6}, ValueError, "exceeds the model's 5 classes"),
        ({"layers": "stem.9"}, ValueError, "not found in SmallCNN"),
    ],
)
def test_argument_errors_name_the_argument(small_cnn, kwargs, error, match) -> None:
    arguments = {"model": small_cnn, "inputs": torch.randn(1, 3, 8, 8), **kwargs}
    before = _snapshot(small_cnn)
    with pytest.raises(error, match=match):
        camkit.explain(**arguments)
    _assert_unchanged(small_cnn, before)


def test_top_k_falls_back_to_a_loop_when_batched_gradients_fail(small_cnn, monkeypatch) -> None:
    x = torch.randn(2, 3, 16, 16)
    batched = camkit.explain(small_cnn, x, methods=ALL_METHODS, layers=TWO_LAYERS, top_k=3)
    real_grad = torch.autograd.grad

    def no_batching(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("no batching rule")  # as for an operator vmap cannot batch
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_batching)
    looped = camkit.explain(small_cnn, x, methods=ALL_METHODS, layers=TWO_LAYERS, top_k=3)
    for key, value in batched.maps.items():
        torch.testing.assert_close(looped.maps[key], value, rtol=1e-4, atol=1e-5)


def test_no_autograd_graph_before_the_layer_and_the_same_gradients() -> None:
    """Only the network after the explained layers records a graph; gradients are unchanged."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    grad_mode: dict[str, bool] = {}
    watched = ["layer2", "layer3", "layer4", "fc"]
    handles = [
        getattr(model, name).register_forward_hook(
            lambda _m, _i, _o, name=name: grad_mode.__setitem__(name, torch.is_grad_enabled())
        )
        for name in watched
    ]
    try:
        exp = camkit.explain(model, x, methods="gradcam", layers=["layer4", "layer3"], top_k=2)
    finally:
        for handle in handles:
            handle.remove()
    # layer2 ran without autograd; layer3 (the first explained layer) turned it on.
    assert grad_mode == {"layer2": False, "layer3": False, "layer4": True, "fc": True}
    # The reference: a plain full-graph forward and one torch.autograd.grad per class.
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: outputs.__setitem__(name, out)
        )
        for name in ("layer3", "layer4")
    ]
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    classes = logits.topk(2, dim=1).indices
    for rank in range(2):
        score = logits.gather(1, classes[:, rank : rank + 1]).sum()
        for name in ("layer3", "layer4"):
            a = outputs[name]
            (g,) = torch.autograd.grad(score, a, retain_graph=True)
            weights = g.mean(dim=(2, 3), keepdim=True)
            expected = torch.relu((weights * a).sum(dim=1)).detach()
            got = exp.raw[(name, "gradcam")][:, rank]
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
            assert expected.amax() > 0
    assert torch.equal(exp.targets, classes)
    with torch.no_grad():
        camkit.explain(model, x, methods="gradcam", layers="layer4")
        assert not torch.is_grad_enabled()  # the caller's no_grad() holds after the call
    assert torch.is_grad_enabled()


def _reference_last_call_gradcam(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """Grad-CAM at the act's last call from a plain full-graph forward."""
    kept: list[torch.Tensor] = []
    # The hook keeps each output and hands on a copy: the kept tensor stays in the graph.
    handle = model.act.register_forward_hook(lambda _m, _i, out: kept.append(out) or out.clone())
    try:
        logits = model(x)
    finally:
        handle.remove()
    a = kept[-1]
    (g,) = torch.autograd.grad(logits[:, target].sum(), a)
    return torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1)).detach()


def test_shared_module_records_autograd_only_from_its_last_call() -> None:
    torch.manual_seed(0)
    model = SharedActivation().eval()
    x = torch.randn(2, 3, 8, 8)
    head_grad_mode: list[bool] = []
    handle = model.head.register_forward_hook(
        lambda _m, _i, _o: head_grad_mode.append(torch.is_grad_enabled())
    )
    try:
        first = camkit.explain(model, x, layers="act", target=1)
        second = camkit.explain(model, x, layers="act", target=1)
    finally:
        handle.remove()
    # First call: the number of calls is unknown, so autograd starts at the stem's call; the
    # second call knows the act runs twice and starts it at the head's call.
    assert head_grad_mode == [True, False]
    expected = _reference_last_call_gradcam(model, x, 1)
    assert expected.amax() > 0
    for explanation in (first, second):
        torch.testing.assert_close(explanation.raw[("act", "gradcam")], expected)


def test_a_layer_that_runs_fewer_times_than_last_call_is_run_again() -> None:
    torch.manual_seed(0)
    model = SharedActivation().eval()
    x = torch.randn(1, 3, 8, 8)
    calls = CountingModel(model)
    model.repeats = 3  # act runs 4 times
    camkit.explain(calls, x, layers="inner.act", target=2)
    model.repeats = 1  # now twice: autograd planned from call 4 would never come on
    calls.calls = 0
    explanation = camkit.explain(calls, x, layers="inner.act", target=2)
    assert calls.calls == 2  # the planned forward, then one with autograd from the first call
    expected = _reference_last_call_gradcam(model, x, 2)
    torch.testing.assert_close(explanation.raw[("inner.act", "gradcam")], expected)
