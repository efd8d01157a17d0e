"""Every bad input gives one clear error naming the fix: the library raises, the CLI exits 2.

The cases not repeated here are covered elsewhere: a non-spatial layer and an out-of-range class
(tests/test_engine.py), a pickle of arbitrary objects for the library (tests/test_models.py),
a text file named .png, a missing image and an output folder that cannot be made
(tests/test_cli.py).
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

import camkit
from camkit import cli
from camkit._errors import ArgumentTypeError, CamkitError, InputError
from camkit._inputs import MIN_IMAGE_SIDE, Preprocessing, all_finite, prepare_batch
from tests.conftest import SmallCNN
from tests.test_cli import SAMPLE, assert_one_line_error, reuse_loaded_models  # noqa: F401

PRE = Preprocessing(resize_size=32, crop_size=32)


def _model() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN().eval()


MODEL = _model()  # module-level: hypothesis refuses function-scoped fixtures


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels but that holds no pixel data.

    Opening it reads the size; decoding it would fail as truncated. So an error that names the
    size proves the file was refused before decoding.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 64)  # a few bytes of a first row, then nothing
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Bad image files, each with a phrase its error must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    text = folder / "notes.jpg"
    text.write_text("this is not a picture\n")
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    bomb = folder / "bomb.png"  # 100 M pixels: over PIL's limit, under its own hard stop
    bomb.write_bytes(_png_header_only(10_000, 10_000))
    huge_bomb = folder / "huge-bomb.png"  # 10 G pixels: PIL itself stops at the header
    huge_bomb.write_bytes(_png_header_only(100_000, 100_000))
    tiny = folder / "tiny.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tiny)
    return {
        "zero-byte file": (empty, "the file is empty (0 bytes)"),
        "text file named .jpg": (text, "not an image file PIL can identify"),
        "truncated JPEG": (truncated, "truncated or corrupt"),
        "decompression bomb": (bomb, "10000x10000 = 100,000,000 pixels, over the limit"),
        "decompression bomb past PIL's stop": (huge_bomb, "possible decompression bomb"),
        "1x1 pixel image": (
            tiny,
            f"too small to explain; pass a picture at least {MIN_IMAGE_SIDE}",
        ),
    }


BAD_FILES = [
    "zero-byte file",
    "text file named .jpg",
    "truncated JPEG",
    "decompression bomb",
    "decompression bomb past PIL's stop",
    "1x1 pixel image",
]


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_image_files_are_clear_value_errors(tmp_path: Path, case: str) -> None:
    files = _bad_files(tmp_path)
    assert set(files) == set(BAD_FILES)
    path, phrase = files[case]
    with pytest.raises(InputError, match=r"; ") as raised:
        prepare_batch(path, PRE)
    message = str(raised.value)
    assert phrase in message and repr(str(path)) in message
    assert "\n" not in message


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(10_000, 10_000))
    # Decoding this file would fail as truncated; the size error shows nothing was decoded.
    with (
        pytest.warns(Image.DecompressionBombWarning),
        Image.open(path) as image,
        pytest.raises(OSError, match="truncated"),
    ):
        image.load()
    with pytest.raises(ValueError, match="decompression bomb"):
        camkit.explain(MODEL, path)


def test_the_size_limit_is_pils_and_can_be_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (1, 2, 3)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match="40x30 = 1,200 pixels, over the limit of 1,000"):
        prepare_batch(path, PRE)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1200)
    assert prepare_batch(path, PRE).tensor.shape == (1, 3, 32, 32)


@pytest.mark.parametrize(
    "item",
    [Image.new("RGB", (1, 1)), np.zeros((1, 1, 3), np.uint8), np.zeros((64, 7), np.float32)],
    ids=["pil", "array", "thin-array"],
)
def test_tiny_pictures_in_memory_are_refused(item: object) -> None:
    with pytest.raises(ValueError, match="too small to explain"):
        prepare_batch([item], PRE)
    side = np.zeros((MIN_IMAGE_SIDE, MIN_IMAGE_SIDE, 3), np.uint8)
    assert prepare_batch([side], PRE).tensor.shape == (1, 3, 32, 32)


@pytest.mark.parametrize(
    ("channels", "fix"),
    [(4, r"drop the alpha channel with x\[:, :3\]"), (1, r".*x.expand\(-1, 3, -1, -1\)"), (2, "")],
)
def test_wrong_channel_count_names_the_fix(channels: int, fix: str) -> None:
    x = torch.randn(1, channels, 16, 16)
    with pytest.raises(ValueError, match=f"has {channels} channels but .* takes 3; {fix}"):
        camkit.explain(MODEL, x)


def test_non_finite_inputs_are_refused() -> None:
    x = torch.randn(1, 3, 16, 16)
    x[0, 1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="`inputs` contains NaN or Inf"):
        camkit.explain(MODEL, x)
    big = torch.full((1, 3, 16, 16), 1e300, dtype=torch.float64)  # finite, but not in float32
    with pytest.raises(ValueError, match=r"too large for the model's torch\.float32"):
        camkit.explain(MODEL, big)


def test_the_finiteness_check_is_exact() -> None:
    assert all_finite(torch.full((4, 4), 3e38))  # the sum overflows, the values are finite
    assert all_finite(torch.full((300,), 600.0, dtype=torch.float16))  # likewise in float16
    for poison in (float("nan"), float("inf"), -float("inf")):
        values = torch.zeros(5)
        values[3] = poison
        assert not all_finite(values)
    assert not all_finite(torch.tensor([float("inf"), -float("inf")]))


def test_integer_tensors_are_a_type_error_naming_the_conversion() -> None:
    for dtype in (torch.uint8, torch.int64, torch.bool):
        with pytest.raises(TypeError, match=r"normalize\(x.float\(\) / 255\)"):
            camkit.explain(MODEL, torch.zeros(1, 3, 16, 16, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.bfloat16])
def test_other_float_dtypes_are_converted_exactly(dtype: torch.dtype) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 16, 16).to(dtype)
    got = camkit.explain(MODEL, x, layers="block")
    expected = camkit.explain(MODEL, x.float(), layers="block")  # the same values in float32
    assert torch.equal(got.maps[("block", "gradcam")], expected.maps[("block", "gradcam")])
    assert got.maps[("block", "gradcam")].dtype == torch.float32


class TupleLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x.mean()


class WithTupleLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = _model()
        self.split = TupleLayer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, _ = self.split(self.inner.stem(x))
        return self.inner.fc(torch.flatten(self.inner.pool(self.inner.block(features)), 1))


def test_layer_with_a_tuple_output_or_unused_is_named() -> None:
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"layer 'split' returned a tuple of \(tensor"):
        camkit.explain(WithTupleLayer(), x, layers="split")
    with pytest.raises(ValueError, match=r"layer 'inner\.dropout' did not run"):
        camkit.explain(WithTupleLayer(), x, layers="inner.dropout")


def test_target_mistakes() -> None:
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"class index -1 is out of range .* use 0 to 4"):
        camkit.explain(MODEL, x, target=-1)
    named = camkit.LoadedModel(MODEL, PRE, ["cat", "dog", "tiger cat", "car", "tree"], "small")
    with pytest.raises(ValueError, match="'zebra' not found among the model's 5 classes"):
        camkit.explain(named, x, target="zebra")
    with pytest.raises(ValueError, match="did you mean 'tiger cat'"):
        camkit.explain(named, x, target="tigr cat")
    # A numpy integer (an argmax result) is a class index like any int.
    by_numpy = camkit.explain(MODEL, x, target=np.int64(3))
    assert by_numpy.targets.tolist() == [[3], [3]]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layers": "pool"}, ValueError, r"layer 'pool' output has shape \(1, 16, 1, 1\), a 1x1"),
        ({"methods": None}, TypeError, "`methods` must be a method name or a list"),
        ({"inputs": None}, TypeError, "`inputs` is None; pass a file path"),
        ({"inputs": ""}, ValueError, "image path is an empty string"),
        ({"inputs": torch.zeros(1, 3, 16, 0)}, ValueError, "with no channels or pixels"),
        ({"target": torch.tensor([1.0])}, TypeError, "pass integer class indices"),
        ({"target": torch.tensor([[1, 2]])}, TypeError, r"shape \(1, 2\)"),
        ({"target": np.array([True])}, TypeError, "dtype torch.bool"),
    ],
)
def test_argument_mistakes_name_the_argument(kwargs: dict[str, object], error, match) -> None:  # type: ignore[no-untyped-def]
    arguments = {"model": MODEL, "inputs": torch.randn(1, 3, 16, 16), **kwargs}
    with pytest.raises(error, match=match):
        camkit.explain(**arguments)  # type: ignore[arg-type]


def test_a_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a folder, not an image file"):
        prepare_batch(tmp_path, PRE)


def test_numpy_targets_are_indices_or_names() -> None:
    x = torch.randn(2, 3, 16, 16)
    named = camkit.LoadedModel(MODEL, PRE, ["cat", "dog", "tiger cat", "car", "tree"], "small")
    assert camkit.explain(MODEL, x, target=np.array([4, 1])).targets.tolist() == [[4], [1]]
    by_name = camkit.explain(named, x, target=np.array(["dog", "tree"]))
    assert by_name.targets.tolist() == [[1], [4]]


def test_output_folder_that_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root every folder is writable, so the permission check is made to say no.
    monkeypatch.setattr("camkit._evaluate.os.access", lambda _path, mode: not mode & os.W_OK)
    result = CliRunner().invoke(cli.main, ["explain", str(SAMPLE), "--out", str(tmp_path)])
    assert_one_line_error(result, "is not writable; pass a writable folder with --out")


# --------------------------------------------------------------------------------------------
# The same files through the CLI: one line, exit code 2, no traceback
# --------------------------------------------------------------------------------------------


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli.main, [str(arg) for arg in args])


@pytest.mark.parametrize("case", BAD_FILES)
def test_cli_bad_image_files(tmp_path: Path, case: str) -> None:
    path, phrase = _bad_files(tmp_path / "in")[case]
    result = _run("explain", path, "--out", tmp_path / "out")
    assert_one_line_error(result, phrase)
    assert not (tmp_path / "out").exists(), "a failed run leaves no empty --out folder"


class Payload:
    def __reduce__(self):  # type: ignore[no-untyped-def]  # unpickling would call print
        return (print, ("unpickled!",))


@pytest.mark.parametrize("option", ["--model", "--weights"])
def test_cli_refuses_pickled_objects(tmp_path: Path, option: str) -> None:
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"weight": Payload()}))
    extra = ["--model", "resnet18"] if option == "--weights" else []
    result = _run("explain", SAMPLE, option, evil, *extra, "--out", tmp_path)
    assert_one_line_error(result, "never pickled objects")
    assert "unpickled!" not in result.output


# --------------------------------------------------------------------------------------------
# Fuzzing: any tensor either explains into finite maps in [0, 1] or raises a camkit error
# --------------------------------------------------------------------------------------------

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.int64]


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 4),
    height=st.integers(1, 20),
    width=st.integers(1, 20),
    dtype=st.sampled_from(DTYPES),
    poison=st.sampled_from([None, float("nan"), float("inf"), -float("inf")]),
    method=st.sampled_from(["gradcam", "gradcam++", "layercam", "eigencam", "hirescam"]),
    seed=st.integers(0, 2**16),
)
def test_fuzz_tensor_shapes_and_dtypes(
    batch: int,
    channels: int,
    height: int,
    width: int,
    dtype: torch.dtype,
    poison: float | None,
    method: str,
    seed: int,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=generator)
    if poison is not None:
        x[-1, 0, height - 1, 0] = poison
    x = (x * 50).clamp(0, 255).to(dtype) if not dtype.is_floating_point else x.to(dtype)
    try:
        explanation = camkit.explain(MODEL, x, methods=method)
    except CamkitError as error:
        message = str(error)
        assert "\n" not in message and "; " in message
        if not dtype.is_floating_point:
            assert isinstance(error, ArgumentTypeError) and "dtype" in message
        elif poison is not None:
            assert isinstance(error, InputError) and "NaN or Inf" in message
        elif channels != 3:
            assert isinstance(error, InputError) and "channels" in message
        else:  # the only other refusal: an input too small for any spatial layer
            assert isinstance(error, InputError) and "found no module with a spatial" in message
            assert height * width <= 1
        return
    assert dtype.is_floating_point and channels == 3 and poison is None
    maps = explanation.maps[(explanation.layers[0], method)]
    assert maps.shape == (batch, height, width) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    shape=st.sampled_from(
        [(12, 10), (12, 10, 1), (12, 10, 2), (12, 10, 3), (12, 10, 4), (12, 10, 5), (3, 12, 10)]
    ),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32, np.bool_]),
)
def test_fuzz_numpy_images(shape: tuple[int, ...], dtype: type) -> None:
    array = (np.arange(int(np.prod(shape))).reshape(shape) % 7).astype(dtype)
    loaded = camkit.LoadedModel(MODEL, PRE, None, "small")
    try:
        explanation = camkit.explain(loaded, array, layers="block")
    except CamkitError as error:
        assert "\n" not in str(error) and "; " in str(error)
        # Float pixels are taken as [0, 1]: these (0 to 6) are refused, not clipped to white.
        outside = np.issubdtype(dtype, np.floating) and "pass pixels in [0, 1]" in str(error)
        assert (
            shape in ((12, 10, 2), (12, 10, 5), (3, 12, 10))
            or dtype in (np.int32, np.bool_)
            or outside
        )
        return
    assert not np.issubdtype(dtype, np.floating) or array.max() <= 1
    assert explanation.maps[("block", "gradcam")].shape == (1, 32, 32)
