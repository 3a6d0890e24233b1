"""PNG scanline unfiltering (numba): the five filter types of the PNG spec, section 9. Importing
this module needs numba; png_read.py imports it through jit.import_jit and falls back to Pillow."""
from __future__ import annotations

import numpy as np
from numba import njit

_JIT = dict(nogil=True, cache=True, boundscheck=False)


@njit(**_JIT)
def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


@njit(**_JIT)
def _row(f, src, prev, o, bpp):
    """One row: o = reconstruction of filtered `src` given the row above (`prev`, zeros for the first)."""
    n = o.shape[0]
    if f == 0:  # explicit loops: numba's slice assignment is ~5x slower than this
        for j in range(n):
            o[j] = src[j]
    elif f == 1:
        for j in range(bpp):
            o[j] = src[j]
        for j in range(bpp, n):
            o[j] = src[j] + o[j - bpp]
    elif f == 2:
        for j in range(n):
            o[j] = src[j] + prev[j]
    elif f == 3:
        for j in range(bpp):
            o[j] = src[j] + (prev[j] >> 1)
        for j in range(bpp, n):
            o[j] = src[j] + ((np.int32(o[j - bpp]) + np.int32(prev[j])) >> 1)
    else:
        for j in range(bpp):
            o[j] = src[j] + prev[j]
        for j in range(bpp, n):
            o[j] = src[j] + _paeth(np.int32(o[j - bpp]), np.int32(prev[j]), np.int32(prev[j - bpp]))


@njit(**_JIT)
def unfilter(raw, out, bpp):
    """raw: (H, 1 + stride) filtered scanlines; out: (H, stride) uint8. False (out undefined) if a
    row names a filter type other than 0..4."""
    prev = np.zeros(out.shape[1], np.uint8)
    for y in range(out.shape[0]):
        f = raw[y, 0]
        if f > 4:
            return False
        _row(f, raw[y, 1:], prev, out[y], bpp)
        prev = out[y]
    return True


@njit(**_JIT)
def rgb_to_rgba(rgb, out):
    """(H, 3W) -> (H, 4W) with alpha 255."""
    for y in range(rgb.shape[0]):
        for x in range(rgb.shape[1] // 3):
            for c in range(3):
                out[y, 4 * x + c] = rgb[y, 3 * x + c]
            out[y, 4 * x + 3] = 255


def warm_up() -> None:
    """Compile (or load from numba's disk cache) for the argument types png_read passes."""
    raw = np.zeros((1, 5), np.uint8)
    unfilter(raw, np.zeros((1, 4), np.uint8), 4)
    rgb_to_rgba(np.zeros((1, 3), np.uint8), np.zeros((1, 4), np.uint8))
