"""Driving ipywidgets controls from a test the way the browser does, on ipywidgets 7 and 8."""

from __future__ import annotations

import datetime
import io
import time

import ipywidgets
import numpy as np
from PIL import Image

IPYWIDGETS_MAJOR = int(ipywidgets.__version__.split(".")[0])


def upload(widget: ipywidgets.FileUpload, name: str, content: bytes) -> None:
    """Send one file to a FileUpload as its front end does.

    ipywidgets 8's front end sets ``value`` to a list of file dicts; ipywidgets 7.7.1's sets
    ``metadata`` and ``data`` and then bumps ``_counter``, from which the widget computes its
    read-only ``value`` dict.
    """
    metadata = {
        "name": name,
        "type": "image/png" if name.endswith(".png") else "application/octet-stream",
        "size": len(content),
        "lastModified": int(time.time() * 1000),
    }
    if IPYWIDGETS_MAJOR >= 8:
        widget.value = (
            {
                "name": name,
                "type": metadata["type"],
                "size": len(content),
                "content": memoryview(content),
                "last_modified": datetime.datetime.now(datetime.UTC),
            },
        )
    else:
        widget.metadata = [metadata]
        widget.data = [content]
        widget._counter += 1


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="png")
    return buffer.getvalue()


def panels(png: bytes, gap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo, heatmap and overlay panels of the explorer's picture, as uint8 arrays."""
    strip = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    width = (strip.shape[1] - 2 * gap) // 3
    assert 3 * width + 2 * gap == strip.shape[1], strip.shape
    return (
        strip[:, :width],
        strip[:, width + gap : 2 * width + gap],
        strip[:, 2 * width + 2 * gap :],
    )
