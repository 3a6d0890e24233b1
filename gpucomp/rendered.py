"""What a backend hands back for one item, as explicit types the encoder dispatches on
(`encode.encode_rendered`): composited pixels, rows already PNG-filtered on the GPU, or a
stream already deflated on the GPU. No CuPy here: the pipeline and the tests import it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from .gpu_deflate import Deflated


@dataclass
class Filtered:
    """PNG scanlines already filtered on the GPU: (H, 1 + W*C) uint8, filter byte first."""

    rows: np.ndarray
    width: int
    height: int
    channels: int


# (H, W, C) uint8 pixels | Filtered rows | Deflated stream
Rendered = Union[np.ndarray, Filtered, Deflated]

__all__ = ["Deflated", "Filtered", "Rendered"]
