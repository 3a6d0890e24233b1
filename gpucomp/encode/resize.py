"""Sized copies of an item (`[[output.sizes]]`): thumbnails, display sizes, pixel-art scaling.

Two kinds of resize, each defined here and nowhere else:
- `nearest`: integer scaling only (`scale = 32`); every source pixel becomes a scale x scale block,
  byte for byte: out[y, x] = in[y // k, x // k] (np.repeat here; the CUDA kernel `scale_nearest`
  in kernels/composite.cu computes the same formula, so both backends give the same bytes).
  Pixel art stays sharp; the result is exact by definition.
- `lanczos` / `area`: Pillow's Image.resize with Image.LANCZOS (a = 3) or Image.BOX (the mean of
  the source area each output pixel covers), which filters RGBA in premultiplied alpha (so no dark
  fringes where transparent pixels meet coloured ones) and rounds to 8 bits once.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from gpucomp._shared.tables import check_table
from gpucomp.errors import ConfigError

FILTERS = ("lanczos", "area", "nearest")
MAX_SIDE = 65535  # what every format written here can hold (WebP: 16383, checked by Pillow when saving)
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Size:
    """One sized copy: exactly one of `scale` or width/height (one of them keeps the aspect ratio)."""

    name: str  # folder under images/: images/<name>/<n>.<ext>
    width: int = 0  # 0: from height and the aspect ratio
    height: int = 0
    scale: float = 0.0  # 0: from width/height
    filter: str = "lanczos"
    formats: tuple[str, ...] = ()  # empty: every [output] format

    def target(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of this copy of a width x height image."""
        if self.scale:
            return max(1, round(width * self.scale)), max(1, round(height * self.scale))
        w = self.width or max(1, round(width * self.height / height))
        h = self.height or max(1, round(height * self.width / width))
        return w, h

    def to_dict(self) -> dict:
        d = {"name": self.name, "width": self.width, "height": self.height, "scale": self.scale, "filter": self.filter}
        return {**d, "formats": list(self.formats)} if self.formats else d

    @classmethod
    def from_dict(cls, d: dict) -> "Size":
        """Inverse of to_dict (a collection's manifest)."""
        return cls(d["name"], d["width"], d["height"], float(d["scale"]), d["filter"], tuple(d.get("formats", ())))


def parse_sizes(value: Any, formats: tuple[str, ...], where: str) -> tuple[Size, ...]:
    """The [[output.sizes]] array as Sizes; `formats` are the [output] format names."""
    if not isinstance(value, list):
        raise ConfigError(f"{where}.sizes: expected [[output.sizes]] tables, e.g. name = \"thumb\", width = 256")
    out: list[Size] = []
    for i, item in enumerate(value):
        size = _size(item, formats, f"{where}.sizes[{i}]")
        if any(s.name == size.name for s in out):
            raise ConfigError(f"{where}.sizes[{i}].name: {size.name!r} is used twice; each size needs its own name")
        out.append(size)
    return tuple(out)


def _size(item: Any, formats: tuple[str, ...], w: str) -> Size:
    keys = {"name": str, "width": int, "height": int, "scale": (int, float), "filter": str, "format": (str, list)}
    if not isinstance(item, dict) or "name" not in item:
        raise ConfigError(f"{w}: each size needs name = \"<folder name>\" and a width, height or scale")
    check_table(item, keys, w)
    name = item["name"]
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{w}.name: {name!r} must be lower-case letters, digits, '-' or '_' (it names the folder "
                          f"images/<name>/)")
    width, height, scale = item.get("width", 0), item.get("height", 0), item.get("scale", 0)
    if not math.isfinite(scale) or scale > MAX_SIDE:  # TOML has nan and inf; 1e308 x a side is inf too
        raise ConfigError(f"{w}.scale: {scale} is not a size; give a scale such as 32 or 0.25 (at most {MAX_SIDE}, "
                          f"which already makes every copy wider than any format holds)")
    if bool(scale) == bool(width or height) or scale < 0 or width < 0 or height < 0:
        raise ConfigError(f"{w}: give either scale (e.g. 32, or 0.25) or width and/or height (positive), not both")
    if max(width, height) > MAX_SIDE:
        raise ConfigError(f"{w}: at most {MAX_SIDE} pixels a side")
    default = "nearest" if isinstance(scale, int) and scale > 1 else "lanczos"
    flt = item.get("filter", default)
    if flt not in FILTERS:
        raise ConfigError(f"{w}.filter: unknown filter {flt!r}; choose one of {', '.join(FILTERS)}")
    if flt == "nearest" and not (isinstance(scale, int) and scale >= 1):
        raise ConfigError(f"{w}: nearest scaling is by a whole number (scale = 32): every pixel becomes a block; "
                          f"for other sizes use filter = \"lanczos\" or \"area\"")
    chosen = item.get("format", [])
    chosen = [chosen] if isinstance(chosen, str) else chosen
    for f in chosen:
        if f not in formats:
            raise ConfigError(f"{w}.format: {f!r} is not one of the [output] formats ({', '.join(formats)}); "
                              f"list it in [output] format first")
    return Size(name, width, height, float(scale), flt, tuple(chosen))


def nearest_factor(size: Size) -> int:
    """k for a nearest copy scaled by a whole number k >= 2 (what a backend may make beside the
    composite, e.g. on the GPU); 0 for any other size (filtered, or scale 1: a plain copy)."""
    return int(size.scale) if size.filter == "nearest" and size.scale >= 2 else 0


def resize(pixels: np.ndarray, size: Size) -> np.ndarray:
    """(H, W, C) uint8 -> this size's (h, w, C) uint8 copy (see the module docstring)."""
    if size.filter == "nearest":
        k = int(size.scale)
        return np.repeat(np.repeat(pixels, k, axis=0), k, axis=1)
    h, w, c = pixels.shape
    target = size.target(w, h)
    if target == (w, h):
        return pixels
    mode = {3: "RGB", 4: "RGBA"}[c]
    resample = Image.LANCZOS if size.filter == "lanczos" else Image.BOX
    im = Image.fromarray(np.ascontiguousarray(pixels), mode).resize(target, resample)  # RGBA: premultiplied inside
    return np.asarray(im)
