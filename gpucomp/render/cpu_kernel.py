"""The fused CPU compositing kernel (numba). Importing this module needs numba; the backend
imports it only through `load()` and keeps the NumPy path when that fails.

One pass over the output rows: each row is composited in a (W, 4) float32 buffer that stays in
cache across all of an item's layers, reading only the runs each trait covers on that row
(layout: cpu_spans.py), then rounded straight into the output. Bit for bit the float32 contract
of `compositing.py`: the same operations in the same order, scalar by scalar; fastmath off (no
fused multiply-add, no reassociation; tests check the machine code holds no FMA), IEEE division
without zero checks (error_model="numpy"; the contract's branches keep 0/0 out). The alpha lane
is always computed; over an opaque base it stays exactly 1.0, so the 3-channel results equal
the NumPy backend's 3-lane accumulator. nogil: the encode workers call it in parallel.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from gpucomp.compositing import INV, MODES, SA

_JIT = dict(nogil=True, cache=True, fastmath=False, error_model="numpy", boundscheck=False)
# inline="always" (numba IR inlining) on the small helpers: typed inside their caller, not compiled
# one by one: the first compile took 5.2-5.8 s without it, 4.2 s with it (quiet 2-core box).
F32 = np.float32
_SA, _INV = SA.copy(), INV.copy()  # frozen into the machine code as constants
_0, _HALF, _QUARTER, _1, _2, _4, _12, _16, _255 = (F32(v) for v in (0, 0.5, 0.25, 1, 2, 4, 12, 16, 255))
(NORMAL, MULTIPLY, SCREEN, OVERLAY, DARKEN, LIGHTEN, DODGE, BURN, HARD, SOFT, DIFFERENCE, EXCLUSION,
 ADDITIVE) = range(len(MODES))


@njit(**_JIT)
def _screen(b, s):
    return (b + s) - b * s


@njit(**_JIT)
def _hard(b, s):
    s2 = _2 * s
    if s <= _HALF:
        return b * s2
    return _screen(b, s2 - _1)


@njit(**_JIT)
def _soft(cb, cs):
    if cs <= _HALF:
        return cb - ((_1 - _2 * cs) * cb) * (_1 - cb)
    d = ((((_16 * cb) - _12) * cb + _4) * cb) if cb <= _QUARTER else np.sqrt(cb)
    return cb + ((_2 * cs) - _1) * (d - cb)


@njit(**_JIT)
def blend_fn(mode, cb, cs):
    """B(cb, cs) of the contract for one float32 pair (mode > NORMAL)."""
    if mode == MULTIPLY:
        return cb * cs
    if mode == SCREEN:
        return _screen(cb, cs)
    if mode == OVERLAY:
        return _hard(cs, cb)
    if mode == DARKEN:
        return min(cb, cs)
    if mode == LIGHTEN:
        return max(cb, cs)
    if mode == DODGE:
        return _0 if cb == _0 else (_1 if cs == _1 else min(_1, cb / (_1 - cs)))
    if mode == BURN:
        return _1 if cb == _1 else (_0 if cs == _0 else _1 - min(_1, (_1 - cb) / cs))
    if mode == HARD:
        return _hard(cb, cs)
    if mode == SOFT:
        return _soft(cb, cs)
    if mode == DIFFERENCE:
        return abs(cb - cs)
    if mode == EXCLUSION:
        return (cb + cs) - (_2 * cb) * cs
    return min(_1, cb + cs)  # ADDITIVE


# Loops run over 0-based views (slices) rather than offset indices: numba's negative-index
# handling otherwise stays in the loop and blocks vectorisation (measured: 2.2 vs 10.5 ms a 2048²
# copy).
@njit(inline="always", **_JIT)
def _copy(rgb, alpha, px, x0, x1, off, track):
    """Opaque run of a plain layer (3 bytes a pixel): acc = pm (acc * 0 + pm, bit for bit).
    `track` false: alpha is not kept (over an opaque base with only plain layers nothing reads it)."""
    n = 3 * (x1 - x0)
    src, dst = px[off:off + n], rgb[3 * x0:3 * x1]
    for j in range(n):
        dst[j] = F32(src[j])
    if track:
        al = alpha[x0:x1]
        for i in range(x1 - x0):
            al[i] = _1


@njit(inline="always", **_JIT)
def _over(rgb, alpha, px, x0, x1, off, track):
    """Semi-transparent run of a plain layer (4 bytes a pixel): acc = acc * INV[a8] + c8 * SA[a8].
    SA[a] is computed, a / 255 in float32 (correctly rounded: the same bits as the table for all
    256 values, tested), and INV[a] = 1 - SA[a], as the tables are defined: no gathers, so the
    loop vectorises (0.53 vs 1.32 ns a pixel with table lookups, 2-core box)."""
    n = x1 - x0
    src, dst, al = px[off:off + 4 * n], rgb[3 * x0:3 * x1], alpha[x0:x1]
    for i in range(n):
        sa = F32(src[4 * i + 3]) / _255
        inv = _1 - sa
        dst[3 * i] = dst[3 * i] * inv + F32(src[4 * i]) * sa
        dst[3 * i + 1] = dst[3 * i + 1] * inv + F32(src[4 * i + 1]) * sa
        dst[3 * i + 2] = dst[3 * i + 2] * inv + F32(src[4 * i + 2]) * sa
    if track:
        for i in range(n):
            sa = F32(src[4 * i + 3]) / _255
            al[i] = al[i] * (_1 - sa) + sa


@njit(**_JIT)
def _blend(rgb, alpha, px, x0, x1, off, mode, as_tab, ias_tab):
    """Run of a non-plain layer (blend mode and/or opacity; 4 bytes a pixel): the general formula."""
    n = x1 - x0
    src, dst, al = px[off:off + 4 * n], rgb[3 * x0:3 * x1], alpha[x0:x1]
    for i in range(n):
        a8 = src[4 * i + 3]
        as_, ias = as_tab[a8], ias_tab[a8]
        ab = al[i]
        for c in range(3):
            acc = dst[3 * i + c]
            if mode == NORMAL:
                add = F32(src[4 * i + c]) * as_
            else:
                cs = _SA[src[4 * i + c]]
                cb = min((acc / ab) / _255, _1) if ab > _0 else _0
                mix = ((_1 - ab) * cs) + (ab * blend_fn(mode, cb, cs))
                add = (as_ * mix) * _255
            dst[3 * i + c] = acc * ias + add
        al[i] = ab * ias + as_


@njit(inline="always", **_JIT)
def _finish(rgb, alpha, out, y):
    """General rounding (compositing.finalize) into a 4-channel row; True if all alpha is 255."""
    o = out[y]
    opaque = True
    for x in range(alpha.shape[0]):
        a = alpha[x]
        oa = np.int32(a * _255 + _HALF)
        o[4 * x + 3] = np.uint8(oa)
        opaque &= oa == 255
        for c in range(3):
            v = np.int32(0)
            if oa != 0:
                s = rgb[3 * x + c] if a == _1 else rgb[3 * x + c] / a
                v = np.int32(min(s, _255) + _HALF)
            o[4 * x + c] = np.uint8(v)
    return opaque


@njit(inline="always", **_JIT)
def _row_layer(rgb, alpha, y, t, pixels, spans, rowptr, tinfo, plain, mode, as_tab, ias_tab, track):
    """One trait's runs on canvas row y."""
    y0 = tinfo[t, 0]
    if y < y0 or y >= tinfo[t, 1]:
        return
    r = tinfo[t, 2] + y - y0
    for s in range(rowptr[r], rowptr[r + 1]):
        x0, x1, off = spans[s, 0], spans[s, 1], spans[s, 2]
        if not plain:
            _blend(rgb, alpha, pixels, x0, x1, off, mode, as_tab, ias_tab)
        elif spans[s, 3] == 1:
            _copy(rgb, alpha, pixels, x0, x1, off, track)
        else:
            _over(rgb, alpha, pixels, x0, x1, off, track)


@njit(inline="always", **_JIT)
def _extent(y, t, spans, rowptr, tinfo, lo, hi):
    """[lo, hi) widened to the runs of trait t on canvas row y."""
    y0 = tinfo[t, 0]
    if y < y0 or y >= tinfo[t, 1]:
        return lo, hi
    r = tinfo[t, 2] + y - y0
    for s in range(rowptr[r], rowptr[r + 1]):
        lo, hi = min(lo, spans[s, 0]), max(hi, spans[s, 1])
    return lo, hi


@njit(inline="always", **_JIT)
def _base_row(src, lo, hi, rgb, alpha, dst, track):
    """A row over a background whose bytes are `src`: only the span [lo, hi) that the layers
    above cover needs the float contract (loaded here); elsewhere the result is the background's
    bytes (float(u8) + 0.5 truncates back to the same byte), copied into dst. Explicit loops:
    numba's slice assignment measured 4.8 ms a 2048x2048 RGB canvas against 0.94 ms for a loop."""
    for j in range(3 * lo):
        dst[j] = src[j]
    d, s = dst[3 * hi:], src[3 * hi:]  # loops over 0-based slices vectorise (see below)
    for j in range(d.shape[0]):
        d[j] = s[j]
    f, s = rgb[3 * lo:3 * hi], src[3 * lo:3 * hi]
    for j in range(f.shape[0]):
        f[j] = F32(s[j])
    if track:
        a = alpha[lo:hi]
        for x in range(a.shape[0]):
            a[x] = _1


@njit(inline="always", **_JIT)
def _emit(line, cur, prev, o, channels, filt):
    """Row of the output from its RGB bytes (`line`): RGBA with alpha 255 when channels is 4
    (built in `cur`), then, with filt 1 (Sub) or 2 (Up), PNG-filtered (against `prev`, the row
    above's pixels, for Up) as encode.filter_rows does; uint8 arithmetic kept in uint8 so it
    vectorises. The caller alternates two buffers for the row's pixels (`line` or `cur`) so
    that this row's is the next one's `prev` without a copy."""
    px = line
    if channels == 4:
        for x in range(line.shape[0] // 3):
            for c in range(3):
                cur[4 * x + c] = line[3 * x + c]
            cur[4 * x + 3] = 255
        px = cur
    if filt == 0:
        for j in range(px.shape[0]):
            o[j] = px[j]
        return
    o[0] = filt
    body = o[1:]
    if filt == 2:
        for j in range(px.shape[0]):
            body[j] = np.uint8(px[j] - prev[j])
        return
    for j in range(channels):
        body[j] = px[j]
    left, rest, b = px[:px.shape[0] - channels], px[channels:], body[channels:]
    for j in range(b.shape[0]):
        b[j] = np.uint8(rest[j] - left[j])


@njit(**_JIT)
def composite_item(pixels, spans, rowptr, tinfo, tids, modes, plain, as_tab, ias_tab, out, channels, acc_out, filt):
    """One item: trait ids per layer (tids) -> out (H, W * channels) uint8, or, when acc_out has
    rows, the float32 accumulator (H*W, 3|4) instead. Returns True if every output alpha is 255.
    channels must be 4 unless a full-canvas opaque trait of a plain layer is in the stack.
    filt (1: Sub, 2: Up; only with such a trait): out is (H, 1 + W * channels) PNG scanlines.
    One row loop and one call site of _row_layer for every case: numba compiles the blend code
    once (a second call site doubled the first run's compile time)."""
    h, w = out.shape[0], (out.shape[1] - (filt > 0)) // channels
    n = tids.shape[0]
    start = -1  # the topmost full-canvas opaque trait: it hides every layer below it
    for li in range(n):
        if tinfo[tids[li], 3] == 1:
            start = li
    acc = acc_out.shape[0] > 0
    # A full-canvas opaque trait of a plain layer is one opaque run (0, w) a row (trait_runs):
    # its bytes can be copied where nothing above it draws.
    fast = not acc and start >= 0
    track = not fast  # alpha: over an opaque base only the blend modes read it
    for li in range(max(start, 0), n):
        track |= plain[li] == 0
    base = tids[max(start, 0)]
    rgb = np.zeros(3 * w, np.float32)  # premultiplied colour, 0..255, interleaved
    alpha = np.zeros(w, np.float32)
    rows = np.zeros((2, channels * w), np.uint8)  # this row's pixels and the row above's (Up filter)
    line4 = np.empty(3 * w, np.uint8)
    direct = channels == 3 and filt == 0  # compose straight into the output row
    opaque = True
    for y in range(h):
        cur, prev = rows[y & 1], rows[1 - (y & 1)]
        line = cur if channels == 3 else line4
        dst = out[y] if direct else line
        lo, hi, first = w - w, w, max(start, 0)  # lo: an int64 0 (a literal 0 would type apart)
        if fast:
            lo, hi, first = w, lo, start + 1
            for li in range(first, n):
                lo, hi = _extent(y, tids[li], spans, rowptr, tinfo, lo, hi)
            lo = min(lo, hi)
            off = spans[rowptr[tinfo[base, 2] + y], 2]
            _base_row(pixels[off:off + 3 * w], lo, hi, rgb, alpha, dst, track)
        elif start < 0:
            for j in range(3 * w):
                rgb[j] = _0
            for x in range(w):
                alpha[x] = _0
        for li in range(first, n if lo < hi else first):
            _row_layer(rgb, alpha, y, tids[li], pixels, spans, rowptr, tinfo, plain[li] == 1, modes[li],
                       as_tab[li], ias_tab[li], track)
        if acc:
            for x in range(w):
                for c in range(acc_out.shape[1]):
                    acc_out[y * w + x, c] = rgb[3 * x + c] if c < 3 else alpha[x]
        elif start < 0:
            opaque &= _finish(rgb, alpha, out, y)
        else:
            f, d = rgb[3 * lo:3 * hi], dst[3 * lo:3 * hi]  # alpha is exactly 1: finalize_opaque's rounding
            for j in range(f.shape[0]):
                d[j] = np.uint8(np.int32(f[j] + _HALF))
            if not direct:
                _emit(line, cur, prev, out[y], channels, filt)
    return opaque


def warm_up() -> None:
    """Compile (or load from numba's disk cache) for the exact argument types the backend passes."""
    tinfo = np.array([[0, 1, 0, 1]], np.int64)
    tabs = np.zeros((1, 256), np.float32)
    composite_item(np.zeros(3, np.uint8), np.array([[0, 1, 0, 1]], np.int64), np.array([0, 1], np.int64),
                   tinfo, np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones(1, np.uint8), tabs, tabs,
                   np.zeros((1, 3), np.uint8), 3, np.zeros((0, 4), np.float32), 0)
    run_counts(np.zeros((1, 1, 4), np.uint8), True)
    fill_runs(np.zeros((1, 1, 4), np.uint8), True, 0, np.zeros(0, np.uint8), np.zeros((0, 4), np.int64),
              np.zeros(2, np.int64), 0, 0)


@njit(inline="always", **_JIT)
def _classify(a, plain):
    """0 transparent, 1 semi-transparent (or any covered pixel of a non-plain layer), 2 opaque."""
    if a == 0:
        return 0
    return 2 if plain and a == 255 else 1


@njit(**_JIT)
def run_counts(pixels, plain):
    """(runs, bytes) of a trait's run form (cpu_spans.trait_runs): what fill_runs will write."""
    n_runs, n_bytes = 0, 0
    for y in range(pixels.shape[0]):
        prev = 0
        for x in range(pixels.shape[1]):
            k = _classify(pixels[y, x, 3], plain)
            if k != prev and k > 0:
                n_runs += 1
            n_bytes += 3 if k == 2 else (4 if k == 1 else 0)
            prev = k
    return n_runs, n_bytes


@njit(**_JIT)
def fill_runs(pixels, plain, x_off, pix_out, spans_out, rowptr_out, s0, p0):
    """Write a trait's runs straight into its slices of the pool (cpu_spans.PoolLayout): spans
    (x0, x1 shifted by the trait's box, absolute byte offset, opaque), the rowptr entries of its
    rows (absolute span indices) and its bytes. Equal to build_pool of trait_runs (tested);
    one pass, no per-trait arrays, no second copy of the pool."""
    w = pixels.shape[1]
    r, b = 0, 0
    rowptr_out[0] = s0
    for y in range(pixels.shape[0]):
        prev = 0
        for x in range(w):
            k = _classify(pixels[y, x, 3], plain)
            if k != prev:
                if prev > 0:
                    spans_out[r - 1, 1] = x + x_off
                if k > 0:
                    spans_out[r, 0], spans_out[r, 2], spans_out[r, 3] = x + x_off, p0 + b, 1 if k == 2 else 0
                    r += 1
            if k > 0:
                n = 3 if k == 2 else 4
                for c in range(n):
                    pix_out[b + c] = pixels[y, x, c]
                b += n
            prev = k
        if prev > 0:
            spans_out[r - 1, 1] = w + x_off
        rowptr_out[y + 1] = s0 + r
