"""What a backend hands back for one item, as explicit types the encoder dispatches on
(`encode.encode_rendered`, `media.render_files`): composited pixels, pixels with sized copies
the backend made beside them (nearest scaling on the GPU), rows already PNG-filtered on the GPU,
or a stream already deflated on the GPU. No CuPy here: the pipeline and the tests import it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

import numpy as np

from gpucomp.encode.gpu_deflate import Deflated


@dataclass
class Filtered:
    """PNG scanlines already filtered on the GPU: (H, 1 + W*C) uint8, filter byte first."""

    rows: np.ndarray
    width: int
    height: int
    channels: int


@dataclass
class SizedPixels:
    """An item's composite and the sized copies the backend made of it, by size name
    (`[[output.sizes]]` name): (H, W, C) and (h, w, C) uint8, the same C. A size not in `copies`
    is made from `pixels` on the CPU (resize.py), exactly as a copy made here would be."""

    pixels: np.ndarray
    copies: Mapping[str, np.ndarray]


# (H, W, C) uint8 pixels | SizedPixels | Filtered rows | Deflated stream
Rendered = Union[np.ndarray, SizedPixels, Filtered, Deflated]

__all__ = ["Deflated", "Filtered", "Rendered", "SizedPixels"]
