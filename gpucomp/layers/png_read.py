"""Trait PNGs the common way (8-bit RGB or RGBA, not interlaced, one still image) decoded by
ISA-L's inflate and a numba unfilter (png_unfilter.py): 1.35 s for the standard workload's 100
2048x2048 traits against 4.78 s for Pillow's decode and array copy (one thread, 2-core box).

Images under MIN_PIXELS (1 Mpx) go to Pillow too: their decode is quick, and the demo or a
pixel-art collection then never waits for the unfilter's first compile. Everything else, and
anything unexpected in the data (a stream that ends early or goes on,
an unknown filter type), returns None: Pillow then decodes the file exactly as before, with its
own errors. layers/layerset.py checks the chunks' CRCs and the declared size first and hands over what its
walk over the chunks found (`_PngHeader`), so the file is walked once.
Tests decode files of every filter type both ways and compare the pixels.
"""
from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
from isal import isal_zlib

from gpucomp._shared.jit import disabled, import_jit

_lock = threading.Lock()
_state: dict = {}


def _tools(wait: bool = True):
    """(isal_zlib, png_unfilter) once per process, or None where either is missing or GPUCOMP_NO_JIT is
    set. With wait=False, None also while another thread is still importing numba (~0.5-0.8 s): the
    decoding threads go on with Pillow meanwhile instead of queueing behind the import."""
    if "tools" in _state:
        return _state["tools"]
    if not _lock.acquire(blocking=wait):
        return None
    try:
        if "tools" not in _state:
            _state["tools"] = _load()
    finally:
        _lock.release()
    return _state["tools"]


def _load():
    if disabled():
        return None
    try:
        mod = import_jit("gpucomp.layers.png_unfilter")
        mod.warm_up()
        return isal_zlib, mod
    except Exception:  # no numba or no isal: Pillow decodes every file
        return None


MIN_PIXELS = 1 << 20  # smaller images: Pillow, so a small job never pays numba's first compile (~1.8 s)


class Decoded(NamedTuple):
    """A trait PNG as layers/layerset.py keeps it: the box of its pixels with alpha > 0 ((y0, x0, y1, x1),
    None when there is none), those pixels ((y1 - y0, x1 - x0, 4) straight RGBA, contiguous),
    whether the box is the whole canvas and every alpha 255, and the canvas (H, W)."""

    box: tuple[int, int, int, int] | None
    pixels: np.ndarray
    opaque_full: bool
    shape: tuple[int, int]


_scratch = threading.local()  # per decoding thread: the unfiltered canvas, reused from file to file


def _canvas(h: int, stride: int) -> np.ndarray:
    """The thread's unfilter buffer: only the crop is kept, so one canvas serves every file (fresh
    memory for each file was up to half the decode's time on the 2-core box's VM, benchmarks/NOTES.md)."""
    buf = getattr(_scratch, "canvas", None)
    if buf is None or buf.size < h * stride:
        buf = _scratch.canvas = np.empty(h * stride, np.uint8)
    return buf[:h * stride].reshape(h, stride)


def decode(header) -> Decoded | None:
    """A checked PNG (layers._PngHeader: its size, type, chunks found and IDAT bodies) decoded and
    cropped to its pixels with alpha > 0 (the box found while unfiltering), or None: let Pillow
    decode it. A colour key (tRNS) or an animation (acTL) is Pillow's too."""
    w, h, depth, ctype = header.width, header.height, header.bit_depth, header.colour_type
    if depth != 8 or ctype not in (2, 6) or header.interlace != 0 or w * h < MIN_PIXELS:
        return None
    if header.trns is not None or header.animated or not header.idat:
        return None
    tools = _tools(wait=False)
    if tools is None:
        return None
    isal_zlib, mod = tools
    channels = 4 if ctype == 6 else 3
    stride = w * channels
    want = h * (1 + stride)
    inflate = isal_zlib.decompressobj()
    try:
        raw = inflate.decompress(b"".join(header.idat), want + 1)
    except Exception:  # isal_zlib.error: a damaged stream; Pillow words the error
        return None
    if len(raw) != want or not inflate.eof:
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + stride)
    pixels = _canvas(h, stride)
    ok, y0, y1, x0, x1, opaque = mod.unfilter_box(rows, pixels, channels)
    if not ok:
        return None
    if channels == 3:
        out = np.empty((h, 4 * w), np.uint8)
        mod.rgb_to_rgba(pixels, out)
        return Decoded((0, 0, h, w), out.reshape(h, w, 4), True, (h, w))
    if y1 == 0:
        return Decoded(None, np.zeros((0, 0, 4), np.uint8), False, (h, w))
    crop = pixels.reshape(h, w, 4)[y0:y1, x0:x1].copy()
    return Decoded((y0, x0, y1, x1), crop, bool(opaque), (h, w))  # every alpha 255: the box is the canvas
