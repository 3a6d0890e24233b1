"""The fused CPU kernel's trait layout (the kernel itself: cpu_kernel.py).

Layout (`SpanPool`, built once per run): per trait, its non-transparent pixels as runs along
each row. A run is (x0, x1, byte offset into one shared uint8 pool, opaque). Runs of a plain
layer are split into alpha 255 (RGB bytes, converted to float as a block) and alpha 1..254
(RGBA bytes, premultiplied on the fly: one multiply per channel, cheaper than reading 4x the
bytes of a precomputed float form); a non-plain layer's runs hold every non-transparent pixel
as RGBA (all go through the formula). 3-4 bytes a covered pixel plus 32 bytes a run, against
7-8 a pixel in the NumPy backend's index form.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SpanPool:
    """Every trait of a layer set as row runs. Trait t covers canvas rows tinfo[t, 0] ..
    tinfo[t, 1]; its runs on row y are spans[rowptr[tinfo[t, 2] + y - y0] .. +1]; tinfo[t, 3] is
    1 for a full-canvas opaque trait of a plain layer (it hides everything below it)."""
    pixels: np.ndarray  # (P,) uint8: each run's pixels, RGB (opaque run) or straight RGBA
    spans: np.ndarray  # (S, 4) int64: x0, x1, byte offset in pixels, opaque (1: copy, 0: formula)
    rowptr: np.ndarray  # (sum of trait heights + 1 each,) int64 into spans
    tinfo: np.ndarray  # (T, 4) int64: y0, y1, rowptr offset, full
    first: list[int]  # per layer: index of its first trait in tinfo

    @property
    def nbytes(self) -> int:
        return self.pixels.nbytes + self.spans.nbytes + self.rowptr.nbytes + self.tinfo.nbytes


def trait_runs(pixels: np.ndarray, plain: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row of each run, runs (R, 3): x0, x1, opaque, the runs' bytes: RGB for an opaque run,
    RGBA for the others, in run order). The readable definition: the backend writes the same runs
    straight into its pool (cpu_kernel.run_counts + fill_runs), tested equal to this one."""
    a = pixels[..., 3]
    h, w = a.shape
    if plain and bool((a == 255).all()):  # an opaque box (a background): one run a row, RGB bytes
        runs = np.empty((h, 3), np.int64)
        runs[:] = (0, w, 1)
        return np.arange(h), runs, pixels[..., :3].reshape(-1)
    cls = (a > 0).view(np.int8)
    if plain:
        cls = cls + (a == 255).view(np.int8)  # 0 transparent, 1 semi, 2 opaque
    change = np.empty(cls.shape, bool)
    change[:, 0] = True
    np.not_equal(cls[:, 1:], cls[:, :-1], out=change[:, 1:])
    ys, xs = np.nonzero(change)
    ends = np.empty_like(xs)
    ends[:-1] = np.where(ys[1:] == ys[:-1], xs[1:], w)
    ends[-1:] = w
    kind = cls[ys, xs]
    keep = kind > 0
    runs = np.stack([xs[keep], ends[keep], (kind[keep] == 2).astype(xs.dtype)], axis=1)
    covered = cls > 0
    px = pixels[covered]
    lanes = np.ones(px.shape, bool)
    lanes[:, 3] = cls[covered] != 2  # an opaque pixel keeps RGB only (its alpha is 255)
    return ys[keep], runs, px[lanes]


def build_pool(per_trait: list[list[tuple]]) -> SpanPool:
    """Pool per-trait (box or None, ys, runs, bytes, full) into one SpanPool: the readable definition
    of the layout. The backend builds the same pool in place (pool_layout + cpu_kernel.fill_runs),
    tested equal to this. Each trait's arrays are dropped from the lists as they are copied."""
    n_bytes = sum(len(t[3]) for layer in per_trait for t in layer)
    n_runs = sum(len(t[2]) for layer in per_trait for t in layer)
    n_rows = sum((t[0][2] - t[0][0] + 1) if t[0] else 1 for layer in per_trait for t in layer)
    pixels = np.empty(n_bytes, np.uint8)
    spans = np.empty((n_runs, 4), np.int64)
    rowptr = np.empty(n_rows, np.int64)
    tinfo = np.zeros((sum(len(la) for la in per_trait), 4), np.int64)
    first, ti, p, s, r = [], 0, 0, 0, 0
    for layer in per_trait:
        first.append(ti)
        for j, (box, ys, runs, px, full) in enumerate(layer):
            layer[j] = None
            h = (box[2] - box[0]) if box else 0
            y0 = box[0] if box else 0
            tinfo[ti] = (y0, y0 + h, r, full)
            rowptr[r] = s
            np.cumsum(np.bincount(ys, minlength=h), out=rowptr[r + 1:r + 1 + h])
            rowptr[r + 1:r + 1 + h] += s
            if len(runs):
                sl = slice(s, s + len(runs))
                spans[sl, 0] = runs[:, 0] + box[1]
                spans[sl, 1] = runs[:, 1] + box[1]
                size = (runs[:, 1] - runs[:, 0]) * (4 - runs[:, 2])  # bytes: 3 a pixel if opaque, else 4
                spans[sl, 2] = p + np.cumsum(size) - size
                spans[sl, 3] = runs[:, 2]
            pixels[p:p + len(px)] = px
            p, s, r, ti = p + len(px), s + len(runs), r + h + 1, ti + 1
    return SpanPool(pixels, spans, rowptr, tinfo, first)


@dataclass
class PoolLayout:
    """Where each trait's runs go in a SpanPool, from its counts alone: the pool's arrays are
    allocated once and every trait fills its own slices (cpu_kernel.fill_runs, in threads)."""
    pool: SpanPool  # spans, pixels and the rowptr of non-empty traits still to be filled
    slots: list[list[tuple | None]]  # per layer, per trait: (s0, p0, r0, n_runs, n_bytes), None if empty


def pool_layout(per_trait: list[list[tuple]]) -> PoolLayout:
    """Allocate a SpanPool for per-trait (box or None, n_runs, n_bytes, full); tinfo is filled here."""
    n_runs = sum(t[1] for layer in per_trait for t in layer)
    n_bytes = sum(t[2] for layer in per_trait for t in layer)
    n_rows = sum((t[0][2] - t[0][0] + 1) if t[0] else 1 for layer in per_trait for t in layer)
    pool = SpanPool(np.empty(n_bytes, np.uint8), np.empty((n_runs, 4), np.int64), np.empty(n_rows, np.int64),
                    np.zeros((sum(len(la) for la in per_trait), 4), np.int64), [])
    slots: list[list[tuple | None]] = []
    ti, p, s, r = 0, 0, 0, 0
    for layer in per_trait:
        pool.first.append(ti)
        slots.append([])
        for box, runs, size, full in layer:
            h = (box[2] - box[0]) if box else 0
            pool.tinfo[ti] = (box[0] if box else 0, (box[0] if box else 0) + h, r, full)
            pool.rowptr[r] = s
            slots[-1].append((s, p, r, runs, size) if box else None)
            p, s, r, ti = p + size, s + runs, r + h + 1, ti + 1
    return PoolLayout(pool, slots)
