"""Memory layout and mixed precision of camkit's forward passes (``channels_last=``, ``amp=``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camkit
from camkit._forward import ForwardOptions, amp_dtype, forward_options


class FlattensByView(nn.Module):
    """A CNN whose head flattens a 4x4 map with ``.view``: it rejects channels-last input."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(6 * 16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.fc(x.view(x.shape[0], -1))


def _maps(model: nn.Module, x: torch.Tensor, method: str, **options: object) -> torch.Tensor:
    layer = "block" if hasattr(model, "block") else "features"
    explanation = camkit.explain(
        model, x, methods=method, layers=layer, target=1, progress=False, **options
    )
    return explanation.maps[(layer, method)]


def test_view_model_rejects_channels_last() -> None:
    # The premise of the fallback tests below.
    model = FlattensByView().eval()
    x = torch.randn(2, 3, 12, 12).contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError):
        model(x)


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam"])
def test_channels_last_gives_the_same_maps(small_cnn: nn.Module, method: str) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 16, 16)
    plain = _maps(small_cnn, x, method, channels_last=False)
    forced = _maps(small_cnn, x, method, channels_last=True)
    auto = _maps(small_cnn, x, method)
    assert plain.abs().sum() > 0
    torch.testing.assert_close(forced, plain, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(auto, plain, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam"])
def test_model_that_needs_nchw_falls_back(method: str) -> None:
    torch.manual_seed(2)
    model = FlattensByView().eval()
    x = torch.randn(2, 3, 12, 12)
    plain = _maps(model, x, method, channels_last=False)
    forced = _maps(model, x, method, channels_last=True)
    assert plain.abs().sum() > 0
    torch.testing.assert_close(forced, plain, atol=1e-5, rtol=1e-4)


def test_model_and_input_are_not_changed(small_cnn: nn.Module) -> None:
    x = torch.randn(1, 3, 16, 16)
    before = {name: value.clone() for name, value in small_cnn.state_dict().items()}
    _maps(small_cnn, x, "scorecam", channels_last=True)
    assert x.is_contiguous()
    for name, value in small_cnn.state_dict().items():
        assert value.is_contiguous(), name
        assert torch.equal(value, before[name]), name


def test_fallback_is_remembered() -> None:
    options = ForwardOptions(channels_last=True)
    model = FlattensByView().eval()
    formats = []

    def run(inputs: torch.Tensor) -> torch.Tensor:
        formats.append(inputs.is_contiguous())
        return model(inputs)

    x = torch.randn(3, 3, 12, 12)
    options.call(run, x)
    options.call(run, x)
    # Channels-last tried once (not contiguous), then NCHW for this call and the next.
    assert formats == [False, True, True]
    assert options.channels_last is False
    with pytest.raises(RuntimeError):
        ForwardOptions(channels_last=True).call(model, x, fallback=False)


def test_auto_layout_choice() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert forward_options(None, False, cpu, gradient=False).channels_last is True
    assert forward_options(None, False, cpu, gradient=True).channels_last is False
    assert forward_options(None, False, cpu, gradient=True, batch=2).channels_last is True
    assert forward_options(None, False, cuda, gradient=True, batch=8).channels_last is False
    assert forward_options(None, "fp16", cuda, gradient=True, batch=1).channels_last is True
    assert forward_options(False, False, cpu, gradient=True, batch=8).channels_last is False
    assert forward_options(None, False, cuda, gradient=False).channels_last is False
    assert forward_options(None, "bf16", cuda, gradient=False).channels_last is True
    assert forward_options(True, False, cpu, gradient=True).channels_last is True
    assert forward_options(False, False, cpu, gradient=False).channels_last is False


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "scorecam"])
def test_amp_bf16_on_cpu_stays_close_to_float32(small_cnn: nn.Module, method: str) -> None:
    torch.manual_seed(3)
    x = torch.randn(2, 3, 16, 16)
    full = _maps(small_cnn, x, method)
    mixed = _maps(small_cnn, x, method, amp=True)
    assert mixed.dtype == torch.float32
    assert torch.isfinite(mixed).all()
    # bfloat16 keeps 8 bits of mantissa: maps in [0, 1] agree to a few hundredths.
    assert float((mixed - full).abs().max()) < 0.1
    for a, b in zip(mixed, full, strict=True):
        r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
        assert r > 0.99


def test_amp_runs_the_forward_in_low_precision(small_cnn: nn.Module) -> None:
    seen: list[torch.dtype] = []
    handle = small_cnn.block[0].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    try:
        _maps(small_cnn, torch.randn(1, 3, 16, 16), "gradcam", amp="bf16")
    finally:
        handle.remove()
    assert seen == [torch.bfloat16]


def test_amp_choices() -> None:
    cpu = torch.device("cpu")
    assert amp_dtype(False, cpu) is None
    assert amp_dtype(True, cpu) is torch.bfloat16
    assert amp_dtype("BF16", cpu) is torch.bfloat16
    assert amp_dtype("fp16", torch.device("cuda")) is torch.float16


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"amp": "fp16"}, ValueError, "amp='bf16'"),
        ({"amp": "half"}, ValueError, "`amp` must be"),
        ({"amp": 2}, TypeError, "`amp` must be"),
        ({"channels_last": "yes"}, TypeError, "`channels_last` must be"),
    ],
)
def test_bad_options(small_cnn: nn.Module, options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        camkit.explain(small_cnn, torch.randn(1, 3, 16, 16), **options)


def test_gradient_free_call_builds_no_graph_and_reads_values_before_inplace_relu() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).eval()
    x = torch.randn(1, 3, 8, 8)
    tracked: list[bool] = []
    handle = model[4].register_forward_hook(lambda _m, _i, out: tracked.append(out.requires_grad))
    try:
        explanation = camkit.explain(model, x, methods="eigencam", layers="0")
    finally:
        handle.remove()
    assert tracked == [False]  # Eigen-CAM needs no gradient: no autograd graph was recorded
    eigencam = camkit.cam.get_method("eigencam").function
    with torch.no_grad():
        before_relu = model[0](x)
    expected = eigencam(camkit.cam.LayerTensors(before_relu, None))
    after_relu = eigencam(camkit.cam.LayerTensors(before_relu.clamp_min(0), None))
    raw = explanation.raw[("0", "eigencam")]
    torch.testing.assert_close(raw, expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(raw, after_relu, atol=1e-3)
