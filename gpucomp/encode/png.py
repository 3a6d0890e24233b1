"""PNG encoding: pixels -> PNG bytes, with named presets.

We write PNG ourselves (signature, IHDR, one IDAT, IEND) because the costly part is
deflate, and the fastest deflate we measured (ISA-L, `isal` package) is 3-6x faster
than zlib at the same ratio while Pillow's encoder is tied to the system zlib.
Filtering is done in NumPy (Up/Sub ~3 ms for 2048x2048) or by the caller (the CUDA
backend can hand in rows it already filtered on the GPU).
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from gpucomp.encode.rendered import Deflated, Filtered
from gpucomp.errors import ConfigError

try:  # ISA-L deflate: optional but strongly recommended (docs/performance.md)
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - exercised only where isal is missing
    _isal = None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type


@dataclass(frozen=True)
class Preset:
    name: str
    filter: str  # "up", "sub", "paeth", "adaptive"
    level: int
    engine: str  # "isal" (falls back to zlib), "zlib", or "gpu" (CUDA backend; isal elsewhere)
    help: str
    also_pillow: bool = False  # also try Pillow's own recipe and keep the smaller result


PRESETS = {
    # Figures: one 2048x2048 RGB composite, 1 core (benchmarks/NOTES.md).
    "fast": Preset("fast", "up", 2, "isal", "Up filter + ISA-L level 2: ~32 ms, ~30% larger than 'small'"),
    "balanced": Preset("balanced", "sub", 6, "zlib", "Sub filter + zlib level 6: ~18x slower than fast, ~19% smaller"),
    "small": Preset("small", "adaptive", 9, "zlib", "adaptive filter + zlib 9: slowest; smaller than Pillow level 9",
                    also_pillow=True),
    "gpu": Preset("gpu", "up", 2, "gpu", "Up filter + deflate on the GPU (CUDA backend; 'fast' elsewhere): "
                  "~3-5% larger than fast on the standard workload, leaves the CPU cores free"),
}


def deflate_engine(preset: Preset, gpu: bool = False) -> str:
    """The deflate that `preset` really uses here ('gpu', 'isal' or 'zlib'); `gpu`: whether the
    backend can deflate on the device (the `gpu` preset is 'fast' without it)."""
    if preset.engine == "gpu" and gpu:
        return "gpu"
    return "isal" if preset.engine in ("isal", "gpu") and _isal is not None else "zlib"


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown PNG preset {name!r}; choose one of {', '.join(PRESETS)}") from None


# ISA-L's CRC-32 (carry-less multiply): 0.08 ms for a 4.2 MB IDAT against zlib's 1.2 ms (2-core box).
_crc32 = _isal.crc32 if _isal is not None else zlib.crc32


def _chunk(kind: bytes, *parts) -> tuple:
    """A PNG chunk as pieces for one final join, so the data is copied once. For a GPU-deflated
    4.3 MB IDAT (memoryview pieces) this took 1.2-2.2 ms against 13-14 ms with bytes() and `+`
    (2-core box)."""
    crc = _crc32(kind)
    for part in parts:
        crc = _crc32(part, crc)
    return (struct.pack(">I", sum(len(x) for x in parts)), kind, *parts, struct.pack(">I", crc & 0xFFFFFFFF))


def filter_rows(pixels: np.ndarray, kind: str) -> np.ndarray:
    """PNG-filter (H, W, C) uint8 pixels into (H, 1 + W*C) uint8 scanlines, filter byte first.
    `kind`: up, sub, paeth, adaptive (per row, all five filters) or pillow (per row, as Pillow picks)."""
    h, w, c = pixels.shape
    flat = pixels.reshape(h, w * c)
    out = np.empty((h, 1 + w * c), np.uint8)
    body = out[:, 1:]
    if kind == "up":
        out[:, 0] = 2
        body[...] = flat
        np.subtract(body[1:], flat[:-1], out=body[1:])
    elif kind == "sub":
        out[:, 0] = 1
        body[...] = flat
        np.subtract(body[:, c:], flat[:, :-c], out=body[:, c:])
    elif kind == "paeth":
        out[:, 0] = 4
        body[...] = _paeth(flat, c)
    elif kind == "adaptive":
        _adaptive(flat, c, out)
    elif kind == "pillow":
        _adaptive(flat, c, out, order=(0, 2, 1, 4))
    else:
        raise ValueError(f"unknown PNG filter {kind!r}")
    return out


def _paeth(flat: np.ndarray, c: int) -> np.ndarray:
    x = flat.astype(np.int16)
    a = np.zeros_like(x)
    a[:, c:] = x[:, :-c]
    b = np.zeros_like(x)
    b[1:] = x[:-1]
    cc = np.zeros_like(x)
    cc[1:, c:] = x[:-1, :-c]
    p = a + b - cc
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - cc)
    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, cc))
    return (x - pred).astype(np.uint8)


def _adaptive(flat: np.ndarray, c: int, out: np.ndarray, order=(0, 1, 2, 3, 4)) -> None:
    """libpng's heuristic: per row, the filter with the least sum of |signed residual|; ties go
    to the filter type listed first in `order` (Pillow: none, up, sub, paeth; no average)."""
    x = flat.astype(np.int16)
    a = np.zeros_like(x)
    a[:, c:] = x[:, :-c]
    b = np.zeros_like(x)
    b[1:] = x[:-1]
    make = {0: lambda: flat, 1: lambda: (x - a).astype(np.uint8), 2: lambda: (x - b).astype(np.uint8),
            3: lambda: (x - ((a + b) >> 1)).astype(np.uint8), 4: lambda: _paeth(flat, c)}
    cands = [make[f]() for f in order]
    scores = np.stack([np.abs(k.view(np.int8).astype(np.int32)).sum(axis=1) for k in cands])
    best = scores.argmin(axis=0)
    out[:, 0] = np.asarray(order, np.uint8)[best]
    for i, cand in enumerate(cands):
        rows = best == i
        out[rows, 1:] = cand[rows]


def compress(data, preset: Preset) -> bytes:
    if deflate_engine(preset) == "isal":  # also the `gpu` preset's items that reach the CPU
        return _isal.compress(data, min(preset.level, 3))
    return zlib.compress(data, preset.level)


def encode_filtered(scanlines: np.ndarray, width: int, height: int, channels: int, preset: Preset) -> bytes:
    """PNG bytes from already-filtered (H, 1 + W*C) scanlines."""
    return _png(width, height, channels, compress(memoryview(np.ascontiguousarray(scanlines)).cast("B"), preset))


def encode_deflated(item) -> bytes:
    """PNG bytes from an item deflated on the GPU (gpu_deflate.Deflated)."""
    return _png(item.width, item.height, item.channels, *item.idat_pieces())


def encode_rendered(item, preset: Preset) -> bytes:
    """PNG bytes from what a backend handed back for one item (rendered.Rendered), by its type."""
    if isinstance(item, Deflated):
        return encode_deflated(item)
    if isinstance(item, Filtered):
        return encode_filtered(item.rows, item.width, item.height, item.channels, preset)
    if isinstance(item, np.ndarray):
        return encode_png(item, preset)
    raise TypeError(f"a backend returned {type(item).__name__}; expected pixels, Filtered or Deflated")


def _png(width: int, height: int, channels: int, *idat) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE[channels], 0, 0, 0)
    return b"".join((PNG_SIGNATURE, *_chunk(b"IHDR", ihdr), *_chunk(b"IDAT", *idat), *_chunk(b"IEND")))


def _pillow_recipe(pixels: np.ndarray, level: int) -> bytes:
    """PNG bytes made the way Pillow's save(compress_level=level) makes them: its per-row filter
    choice, zlib with memLevel 9 and Z_FILTERED; one IDAT chunk where Pillow writes 64 KiB ones."""
    h, w, c = pixels.shape
    co = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_FILTERED)
    rows = memoryview(filter_rows(pixels, "pillow")).cast("B")
    return _png(w, h, c, co.compress(rows) + co.flush())


def encode_png(pixels: np.ndarray, preset: str | Preset = "fast", opaque_rgb: bool = False) -> bytes:
    """Encode (H, W, C) uint8 pixels (C = 1..4) as an 8-bit PNG.

    With `opaque_rgb`, an RGBA image whose alpha is 255 everywhere is written as RGB.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in _COLOR_TYPE:
        raise ValueError(f"expected (H, W, 1..4) uint8 pixels, got {pixels.dtype} {pixels.shape}")
    if opaque_rgb and pixels.shape[2] == 4 and bool((pixels[..., 3] == 255).all()):
        pixels = pixels[..., :3]
    h, w, c = pixels.shape
    png = encode_filtered(filter_rows(pixels, p.filter), w, h, c, p)
    if p.also_pillow:  # neither recipe always wins; with both, never larger than Pillow's output
        alt = _pillow_recipe(pixels, p.level)
        if len(alt) < len(png):
            png = alt
    return png
