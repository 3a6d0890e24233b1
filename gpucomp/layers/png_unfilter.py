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
def _alpha_span(row, w):
    """[lo, hi) of the pixels with alpha > 0 in an RGBA row (lo == hi == 0: none), and whether
    every alpha of the row is 255."""
    low, top = 255, 0
    for x in range(w):  # reductions first: they vectorise, and settle most rows
        a = row[4 * x + 3]
        low, top = min(low, a), max(top, a)
    if top == 0:
        return 0, 0, False
    if low > 0:
        return 0, w, low == 255
    lo, hi = 0, w
    while row[4 * lo + 3] == 0:
        lo += 1
    while row[4 * (hi - 1) + 3] == 0:
        hi -= 1
    return lo, hi, False


@njit(**_JIT)
def unfilter_box(raw, out, bpp):
    """raw: (H, 1 + stride) filtered scanlines -> out: (H, stride) uint8, and in the same pass the
    box of the pixels with alpha > 0: (ok, y0, y1, x0, x1, opaque), y0 == y1 == 0 when there is
    none, opaque True when every alpha is 255 (RGB, bpp 3: the whole image, opaque). ok False
    (the rest undefined) if a row names a filter type other than 0..4."""
    h, w = out.shape[0], out.shape[1] // bpp
    prev = np.zeros(out.shape[1], np.uint8)
    y0, y1, x0, x1, opaque = h, 0, w, 0, True
    for y in range(h):
        f = raw[y, 0]
        if f > 4:
            return False, 0, 0, 0, 0, False
        _row(f, raw[y, 1:], prev, out[y], bpp)
        prev = out[y]
        if bpp == 4:
            lo, hi, full = _alpha_span(out[y], w)
            opaque &= full
            if lo < hi:
                y0, y1, x0, x1 = min(y0, y), y + 1, min(x0, lo), max(x1, hi)
    if bpp != 4:
        return True, 0, h, 0, w, True
    if y1 == 0:
        return True, 0, 0, 0, 0, False
    return True, y0, y1, x0, x1, opaque


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
    unfilter_box(raw, np.zeros((1, 4), np.uint8), 4)
    rgb_to_rgba(np.zeros((1, 3), np.uint8), np.zeros((1, 4), np.uint8))
