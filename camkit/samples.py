"""The sample pictures the lessons use, shipped inside the package (``images/`` in the repository).

``camkit.sample_image("water-bird")`` works wherever camkit is installed, also in a Colab
notebook opened without the repository. Sources and licences: ``images/README.md``.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from PIL import Image

from camkit._errors import ArgumentTypeError, InputError

#: Sample name -> file in ``images/``.
SAMPLES = {
    "water-bird": "water-bird.JPEG",
    "both": "both.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
}


def sample_image_path(name: str) -> Path:
    """The file of the sample picture ``name`` (one of :data:`SAMPLES`).

    Raises:
        ValueError: For an unknown name; the message lists the known ones.
    """
    if not isinstance(name, str):
        raise ArgumentTypeError(f"`name` must be a string, got {type(name).__name__}")
    key = name.strip().lower().removesuffix(".png").removesuffix(".jpeg").replace("_", "-")
    if key not in SAMPLES:
        close = difflib.get_close_matches(key, list(SAMPLES), n=2, cutoff=0.5)
        hint = f" closest: {', '.join(map(repr, close))};" if close else ""
        raise InputError(
            f"no sample image {name!r};{hint} known samples: {', '.join(map(repr, SAMPLES))}"
        )
    return _folder() / SAMPLES[key]


def _folder() -> Path:
    """``camkit/images`` in an installed wheel; the repository's ``images/`` in a checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "images"
    return installed if installed.is_dir() else package.parent / "images"


def sample_image(name: str) -> Image.Image:
    """The sample picture ``name`` as an RGB PIL image: ``"water-bird"``, ``"both"``, ...

    Raises:
        ValueError: For an unknown name.
    """
    with Image.open(sample_image_path(name)) as image:
        return image.convert("RGB")


def sample_boxes(name: str = "both") -> list[dict[str, Any]]:
    """Hand-drawn boxes of the objects in a sample picture (only ``"both"`` has them).

    Returns:
        One dict per box: ``label`` (an ImageNet class name), ``class_index`` and ``box``
        (x0, y0, x1, y1 in pixels of the 224x224 picture, inclusive).

    Raises:
        ValueError: For a sample without boxes.
    """
    path = sample_image_path(name).with_suffix(".json")
    if not path.is_file():
        raise InputError(f"sample {name!r} has no boxes; only 'both' has them")
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        {"label": label, "class_index": int(box["class_index"]), "box": list(box["box"])}
        for label, box in data["boxes_xyxy"].items()
    ]
