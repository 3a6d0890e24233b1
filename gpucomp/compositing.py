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

Blend modes and opacity (per layer: `blend` in MODES, `opacity` in [0, 1]). A layer whose
blend is "normal" and whose float32(opacity) == 1 is *plain*: exactly the formula above.
Any other layer uses, with op = float32(opacity) and ⊗ ⊕ ⊖ ⊘ the float32 operations:

    as  = SA[a8] ⊗ op                         (op == 1 gives SA[a8], bit for bit)
    ias = 1 ⊖ as                              (op == 1 gives INV[a8], bit for bit)
    normal:  acc_c = (acc_c ⊗ ias) ⊕ (c8 ⊗ as)          per colour channel
    other modes, per colour channel, with backdrop ab = acc_a (the alpha before this layer):
        cb  = ab > 0 ? min((acc_c ⊘ ab) ⊘ 255, 1) : 0   straight backdrop colour, 0..1
        cs  = SA[c8]                                     straight source colour, 0..1
        B   = blend(cb, cs)                              below
        mix = ((1 ⊖ ab) ⊗ cs) ⊕ (ab ⊗ B)
        acc_c = (acc_c ⊗ ias) ⊕ ((as ⊗ mix) ⊗ 255)
    every mode:  acc_a = (acc_a ⊗ ias) ⊕ as

    blend(cb, cs), W3C Compositing and Blending Level 1 separable modes (+ additive):
        screen(b, s)   = (b ⊕ s) ⊖ (b ⊗ s)
        hard(b, s)     = s <= 0.5 ? b ⊗ (2 ⊗ s) : screen(b, (2 ⊗ s) ⊖ 1)
        multiply       = cb ⊗ cs
        screen         = screen(cb, cs)
        overlay        = hard(cs, cb)        i.e. cb <= 0.5 ? cs ⊗ (2 ⊗ cb) : screen(cs, (2 ⊗ cb) ⊖ 1)
        darken         = min(cb, cs)
        lighten        = max(cb, cs)
        color-dodge    = cb == 0 ? 0 : cs == 1 ? 1 : min(1, cb ⊘ (1 ⊖ cs))
        color-burn     = cb == 1 ? 1 : cs == 0 ? 0 : 1 ⊖ min(1, (1 ⊖ cb) ⊘ cs)
        hard-light     = hard(cb, cs)
        soft-light     = cs <= 0.5 ? cb ⊖ (((1 ⊖ (2 ⊗ cs)) ⊗ cb) ⊗ (1 ⊖ cb))
                                   : cb ⊕ (((2 ⊗ cs) ⊖ 1) ⊗ (D ⊖ cb)),
                         D = cb <= 0.25 ? ((((16 ⊗ cb) ⊖ 12) ⊗ cb) ⊕ 4) ⊗ cb : sqrt(cb)
                         (sqrt correctly rounded: np.sqrt on float32, __fsqrt_rn)
        difference     = |cb ⊖ cs|
        exclusion      = (cb ⊕ cs) ⊖ ((2 ⊗ cb) ⊗ cs)
        additive       = min(1, cb ⊕ cs)

All of min, max, |x|, comparisons and the int->float conversions are exact. Every B and
mix lies in [0, 1 + a few ulp] and is never NaN (the branches keep 0/0 and x/0 out), so:
- as == 0 (a8 == 0 or op == 0) leaves acc bit for bit unchanged in every mode: transparent
  pixels may still be skipped (CPU) or evaluated (CUDA, padding included);
- alpha stays exactly 1.0 over an opaque base in every mode and opacity: (1 ⊗ ias) ⊕ as
  == (1 ⊖ as) ⊕ as == 1 for every float32 as in [0, 1] (checked exhaustively, and by the
  tests over all 256 a8 and a dense sweep of opacities); with ab == 1, cb = min(acc_c ⊘ 255, 1)
  and mix == B exactly, so the CPU backend's 3-channel accumulator stays valid above an
  opaque full-canvas trait of a plain layer. A full-canvas trait of a non-plain layer hides
  nothing (and is not copied): it goes through the formula like any other pixel.
The float64 `reference` evaluates the same W3C definitions exactly (to within 1 per 8-bit
channel of the float32 results on the tests' random inputs).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

SA = (np.arange(256, dtype=np.float64) / 255).astype(np.float32)
INV = (np.float32(1) - SA).astype(np.float32)
F32 = np.float32

# Blend modes; the index is the mode's number in the CUDA kernel (keep in step with
# config.BLEND_MODES and kernels/composite.cu).
MODES = ("normal", "multiply", "screen", "overlay", "darken", "lighten", "color-dodge", "color-burn",
         "hard-light", "soft-light", "difference", "exclusion", "additive")
NORMAL = 0


def layer_blend(layer) -> tuple[int, np.float32]:
    """(mode number, float32 opacity) of a layer (objects without the fields are plain)."""
    name = getattr(layer, "blend", "normal")
    try:
        mode = MODES.index(name)
    except ValueError:
        raise ValueError(f"unknown blend mode {name!r}; choose one of {', '.join(MODES)}") from None
    return mode, F32(getattr(layer, "opacity", 1.0))


def is_plain(mode: int, opacity: np.float32) -> bool:
    """Plain source-over: the fast paths (INV table, opaque copies) apply."""
    return mode == NORMAL and opacity == F32(1)


def opacity_tables(opacity: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(as, ias) per a8 for a layer's opacity: as = SA[a8] * op, ias = 1 - as (float32)."""
    a = np.multiply(SA, F32(opacity), dtype=F32)
    return a, np.subtract(F32(1), a, dtype=F32)


_0, _HALF, _QUARTER, _1, _2, _4, _12, _16, _255 = (F32(v) for v in (0, 0.5, 0.25, 1, 2, 4, 12, 16, 255))


def _screen(b: np.ndarray, s: np.ndarray) -> np.ndarray:
    return (b + s) - b * s


def _hard(b: np.ndarray, s: np.ndarray) -> np.ndarray:
    s2 = _2 * s
    return np.where(s <= _HALF, b * s2, _screen(b, s2 - _1))


def blend_f32(mode: int, cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    """B(cb, cs) per the contract: float32 arrays in, float32 out (never NaN, in [0, 1+])."""
    name = MODES[mode]
    if name == "multiply":
        return cb * cs
    if name == "screen":
        return _screen(cb, cs)
    if name == "overlay":
        return _hard(cs, cb)
    if name == "darken":
        return np.minimum(cb, cs)
    if name == "lighten":
        return np.maximum(cb, cs)
    if name == "color-dodge":
        one = cs == _1
        q = np.minimum(_1, cb / np.where(one, _1, _1 - cs))  # the substituted denominator is never selected
        return np.where(cb == _0, _0, np.where(one, _1, q))
    if name == "color-burn":
        zero = cs == _0
        q = _1 - np.minimum(_1, (_1 - cb) / np.where(zero, _1, cs))
        return np.where(cb == _1, _1, np.where(zero, _0, q))
    if name == "hard-light":
        return _hard(cb, cs)
    if name == "soft-light":
        d = np.where(cb <= _QUARTER, (((_16 * cb) - _12) * cb + _4) * cb, np.sqrt(cb))
        lo = cb - ((_1 - _2 * cs) * cb) * (_1 - cb)
        hi = cb + ((_2 * cs) - _1) * (d - cb)
        return np.where(cs <= _HALF, lo, hi)
    if name == "difference":
        return np.abs(cb - cs)
    if name == "exclusion":
        return (cb + cs) - (_2 * cb) * cs
    if name == "additive":
        return np.minimum(_1, cb + cs)
    raise ValueError(f"blend_f32: no blend function for {name!r}")


def blend_rows(g: np.ndarray, rgba: np.ndarray, mode: int, as_tab: np.ndarray, ias_tab: np.ndarray) -> None:
    """One non-plain layer over accumulator rows, in place: g (N, C) float32 with C = 4, or
    C = 3 when alpha is exactly 1 (above an opaque base: cb = min(acc_c / 255, 1), mix = B,
    bit for bit the C = 4 result); rgba (N, 4) uint8 source pixels; tables from opacity_tables."""
    c = g.shape[1]
    a8 = rgba[:, 3]
    as_ = as_tab[a8][:, None]
    ias = ias_tab[a8][:, None]
    col = g[:, :3]
    if mode == NORMAL:
        add = rgba[:, :3].astype(F32)
        np.multiply(add, as_, out=add)
    else:
        cs = SA[rgba[:, :3]]
        if c == 4:
            ab = g[:, 3:4].copy()
            cb = np.zeros_like(col)
            np.divide(col, ab, out=cb, where=ab > _0)
            np.divide(cb, _255, out=cb)
            np.minimum(cb, _1, out=cb)
            mix = (_1 - ab) * cs + ab * blend_f32(mode, cb, cs)
        else:
            cb = np.minimum(col / _255, _1)
            mix = blend_f32(mode, cb, cs)
        add = (as_ * mix) * _255
    np.multiply(col, ias, out=col)
    np.add(col, add, out=col)
    if c == 4:
        alpha = g[:, 3:4]
        np.multiply(alpha, ias, out=alpha)
        np.add(alpha, as_, out=alpha)


def premultiply(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 4) uint8 straight -> (pm (..., 4) float32, inv (...) float32) per the contract."""
    a = SA[rgba[..., 3]]
    pm = rgba.astype(F32)
    np.multiply(pm[..., :3], a[..., None], out=pm[..., :3])
    pm[..., 3] = a
    return pm, INV[rgba[..., 3]]


def composite_dense(shape: tuple[int, int], layers: Iterable, blends: Sequence | None = None) -> np.ndarray:
    """Readable dense form of the contract: (H, W, 4) float32 accumulator from traits
    (objects with `.box` and `.pixels`), bottom first; `blends` gives each trait's layer's
    (blend, opacity), default all plain. Every pixel of a box goes through the formula,
    transparent ones included. Used by tests as the spec."""
    acc = np.zeros(shape + (4,), F32)
    layers = list(layers)
    for t, (name, opacity) in zip(layers, blends or [("normal", 1.0)] * len(layers), strict=True):
        if t.box is None:
            continue
        y0, x0, y1, x1 = t.box
        region = acc[y0:y1, x0:x1]
        mode, op = layer_blend(_Blend(name, opacity))
        if is_plain(mode, op):
            pm, inv = premultiply(t.pixels)
            np.multiply(region, inv[..., None], out=region)
            np.add(region, pm, out=region)
        else:
            rows = region.reshape(-1, 4).copy()
            blend_rows(rows, t.pixels.reshape(-1, 4), mode, *opacity_tables(op))
            region[...] = rows.reshape(region.shape)
    return acc


class _Blend:
    def __init__(self, blend: str, opacity: float):
        self.blend, self.opacity = blend, opacity


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


def _w3c_blend64(name: str, cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    """W3C Compositing and Blending Level 1 separable blend functions, float64, as written there."""
    def multiply(b, s):
        return b * s

    def screen(b, s):
        return b + s - b * s

    def hard_light(b, s):
        return np.where(s <= 0.5, multiply(b, 2 * s), screen(b, 2 * s - 1))

    if name == "normal":
        return cs
    if name == "multiply":
        return multiply(cb, cs)
    if name == "screen":
        return screen(cb, cs)
    if name == "overlay":
        return hard_light(cs, cb)
    if name == "darken":
        return np.minimum(cb, cs)
    if name == "lighten":
        return np.maximum(cb, cs)
    if name == "color-dodge":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.select([cb == 0, cs == 1], [0.0, 1.0], np.minimum(1, cb / (1 - cs)))
    if name == "color-burn":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.select([cb == 1, cs == 0], [1.0, 0.0], 1 - np.minimum(1, (1 - cb) / cs))
    if name == "hard-light":
        return hard_light(cb, cs)
    if name == "soft-light":
        d = np.where(cb <= 0.25, ((16 * cb - 12) * cb + 4) * cb, np.sqrt(cb))
        return np.where(cs <= 0.5, cb - (1 - 2 * cs) * cb * (1 - cb), cb + (2 * cs - 1) * (d - cb))
    if name == "difference":
        return np.abs(cb - cs)
    if name == "exclusion":
        return cb + cs - 2 * cb * cs
    if name == "additive":
        return np.minimum(1, cb + cs)
    raise ValueError(f"unknown blend mode {name!r}")


def reference(shape: tuple[int, int], layers: Sequence, blends: Sequence | None = None) -> np.ndarray:
    """Exact float64 W3C compositing of straight RGBA traits: (H, W, 4) straight RGBA on 0..255.
    `blends`: each trait's layer's (blend, opacity), default all ("normal", 1). Source-over with
    blending: Cs' = (1 - ab) * Cs + ab * B(Cb, Cs); co = cs' * as + cb * ab * (1 - as)."""
    color = np.zeros(shape + (3,), np.float64)  # premultiplied, 0..1
    alpha = np.zeros(shape, np.float64)
    for i, t in enumerate(layers):
        if t.box is None:
            continue
        name, opacity = blends[i] if blends is not None else ("normal", 1.0)
        y0, x0, y1, x1 = t.box
        sa = t.pixels[..., 3].astype(np.float64) / 255 * float(opacity)
        sc = t.pixels[..., :3].astype(np.float64) / 255
        c, a = color[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
        if name == "normal":
            src = sc
        else:
            ab = a[..., None]
            cb = np.divide(c, ab, out=np.zeros_like(c), where=ab > 0)
            src = (1 - ab) * sc + ab * _w3c_blend64(name, np.clip(cb, 0, 1), sc)
        c *= (1 - sa)[..., None]
        c += src * sa[..., None]
        a *= 1 - sa
        a += sa
    out = np.zeros(shape + (4,), np.float64)
    nz = alpha > 0
    out[nz, :3] = color[nz] / alpha[nz, None] * 255
    out[..., 3] = alpha * 255
    return out


BLEND_MODES = ("normal", "multiply", "screen", "overlay", "darken", "lighten", "color-dodge", "color-burn",
               "hard-light", "soft-light", "difference", "exclusion", "additive")
