"""The compositing contract: the one definition of the pixel math, shared by every backend.

Traits are straight RGBA uint8 (c8, a8). All arithmetic is IEEE float32, each
operation rounded to nearest-even, in exactly this order (no fused multiply-add):

    SA[a8]  = float32(a8 / 255)               (table of 256, correctly rounded)
    INV[a8] = 1.0f - SA[a8]                   (table of 256)
    pm      = (c8 * SA[a8]  per colour channel, SA[a8] for alpha)
    acc     = acc * INV[a8] + pm              per channel, layers bottom to top, acc starts at 0

Colours accumulate premultiplied on a 0..255 scale, alpha on 0..1. Over an opaque
base, alpha stays exactly 1.0 (1 * INV + SA rounds back to 1), so an opaque result
needs no division. The single final rounding is `trunc(x + 0.5f)`:

    out_a = trunc(a * 255 + 0.5)
    out_c = 0 if out_a == 0 else trunc(min(c / a, 255) + 0.5)     (c / 1.0 == c exactly)

Results that are opaque everywhere may be written as RGB (switch: `opaque_rgb`).
A source pixel with a8 = 255 gives acc * 0 + pm == pm and a8 = 0 gives acc * 1 + 0 == acc,
bit for bit, so a backend may skip transparent pixels and copy opaque ones: the CPU
backend does; the CUDA kernel evaluates the formula everywhere and matches it.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

SA = (np.arange(256, dtype=np.float64) / 255).astype(np.float32)
INV = (np.float32(1) - SA).astype(np.float32)
F32 = np.float32


def premultiply(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 4) uint8 straight -> (pm (..., 4) float32, inv (...) float32) per the contract."""
    a = SA[rgba[..., 3]]
    pm = rgba.astype(F32)
    np.multiply(pm[..., :3], a[..., None], out=pm[..., :3])
    pm[..., 3] = a
    return pm, INV[rgba[..., 3]]


def composite_dense(shape: tuple[int, int], layers: Iterable) -> np.ndarray:
    """Readable dense form of the contract: (H, W, 4) float32 accumulator from traits
    (objects with `.box` and `.pixels`), bottom first. Used by tests as the spec."""
    acc = np.zeros(shape + (4,), F32)
    for t in layers:
        if t.box is None:
            continue
        y0, x0, y1, x1 = t.box
        pm, inv = premultiply(t.pixels)
        region = acc[y0:y1, x0:x1]
        np.multiply(region, inv[..., None], out=region)
        np.add(region, pm, out=region)
    return acc


def _round(x: np.ndarray, out: np.ndarray) -> None:
    """out = trunc(x + 0.5) for 0 <= x <= 255, in place on x."""
    np.add(x, F32(0.5), out=x)
    np.copyto(out, x, casting="unsafe")  # float -> uint8 truncates


def finalize_opaque(rgb: np.ndarray, opaque_rgb: bool = True, strip: int = 64) -> np.ndarray:
    """(H, W, 3) float32 colours whose alpha is exactly 1.0 -> (H, W, 3 or 4) uint8.
    Works in row strips so temporaries stay in cache. min(c, 255) is a no-op here:
    c <= 255 * (1 + 1e-5) for any stack of layers."""
    h, w, _ = rgb.shape
    out = np.empty((h, w, 3 if opaque_rgb else 4), np.uint8)
    if not opaque_rgb:
        out[..., 3] = 255
    tmp = np.empty((strip, w, 3), F32)
    for y in range(0, h, strip):
        n = min(strip, h - y)
        t = tmp[:n]
        np.add(rgb[y:y + n], F32(0.5), out=t)
        np.copyto(out[y:y + n, :, :3], t, casting="unsafe")  # float -> uint8 truncates
    return out


def finalize(acc: np.ndarray, opaque_rgb: bool = True) -> np.ndarray:
    """(H, W, 4) float32 accumulator -> (H, W, 3 or 4) uint8 per the contract."""
    h, w, _ = acc.shape
    alpha = acc[..., 3]
    if bool((alpha == F32(1)).all()):
        return finalize_opaque(np.ascontiguousarray(acc[..., :3]), opaque_rgb)
    out = np.empty((h, w, 4), np.uint8)
    a255 = alpha * F32(255)
    _round(a255, out[..., 3])
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where((alpha == F32(1))[..., None], acc[..., :3], acc[..., :3] / alpha[..., None])
    s = np.minimum(s, F32(255))
    s[out[..., 3] == 0] = 0
    _round(s, out[..., :3])
    if opaque_rgb and bool((out[..., 3] == 255).all()):
        return np.ascontiguousarray(out[..., :3])
    return out


def reference(shape: tuple[int, int], layers: Sequence) -> np.ndarray:
    """Exact float64 source-over of straight RGBA traits: (H, W, 4) straight RGBA on 0..255."""
    color = np.zeros(shape + (3,), np.float64)  # premultiplied, 0..1
    alpha = np.zeros(shape, np.float64)
    for t in layers:
        if t.box is None:
            continue
        y0, x0, y1, x1 = t.box
        sa = t.pixels[..., 3].astype(np.float64) / 255
        sc = t.pixels[..., :3].astype(np.float64) / 255
        c, a = color[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
        c *= (1 - sa)[..., None]
        c += sc * sa[..., None]
        a *= 1 - sa
        a += sa
    out = np.zeros(shape + (4,), np.float64)
    nz = alpha > 0
    out[nz, :3] = color[nz] / alpha[nz, None] * 255
    out[..., 3] = alpha * 255
    return out
