"""The CPU backend: a real NumPy implementation of the compositing contract.

Per trait we keep, once per run, the canvas indices of its opaque pixels and of its
semi-transparent ones, with their colours as uint8 (7-8 bytes a covered pixel);
transparent pixels are dropped. Compositing an item is a scatter of the opaque pixels
plus gather-blend-scatter of the others: bit-identical to the dense formula in
compositing.py, at a fraction of its memory traffic. When a full-canvas opaque trait
is in the stack, alpha is exactly 1.0 from there on (see compositing.py), so the
accumulator drops its alpha lane: 12 bytes a pixel instead of 16.

Layers with a blend mode or an opacity below 1 (non-plain, picked once per layer in
`prepare`) keep all their non-transparent pixels in one list and go through the general
formula (`compositing.blend_rows`): their opaque pixels are not a copy, and their
full-canvas traits hide nothing. Plain layers keep the paths above unchanged.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..compositing import F32, INV, SA, blend_rows, finalize, finalize_opaque, is_plain, layer_blend, opacity_tables

_VOID = {3: np.dtype("V12"), 4: np.dtype("V16")}  # a float32 pixel as one element: one 12/16-byte move


@dataclass
class SparseTrait:
    full_rgb: np.ndarray | None  # (H, W, 3) uint8 when the trait is an opaque full-canvas image
    op_idx: np.ndarray  # (N,) int32 canvas indices where alpha == 255
    op_rgb: np.ndarray  # (N, 3) uint8
    semi_idx: np.ndarray  # (M,) int32 canvas indices where 0 < alpha < 255
    semi_rgba: np.ndarray  # (M, 4) uint8

    @property
    def nbytes(self) -> int:
        arrays = (self.full_rgb, self.op_idx, self.op_rgb, self.semi_idx, self.semi_rgba)
        return sum(a.nbytes for a in arrays if a is not None)


def sparse_trait(trait, width: int, plain: bool = True) -> SparseTrait:
    """Sparse form of a trait. `plain`: split opaque (copied) from semi-transparent pixels;
    otherwise every non-transparent pixel goes to semi_idx/semi_rgba (a non-plain layer
    blends them all; a8 = 0 leaves the accumulator unchanged in every mode, so those are dropped)."""
    empty = np.empty(0, np.int32)
    if trait.opaque_full and plain:
        return SparseTrait(np.ascontiguousarray(trait.pixels[..., :3]), empty, np.empty((0, 3), np.uint8),
                           empty, np.empty((0, 4), np.uint8))
    if trait.box is None:
        return SparseTrait(None, empty, np.empty((0, 3), np.uint8), empty, np.empty((0, 4), np.uint8))
    y0, x0, _, _ = trait.box
    ys, xs = np.nonzero(trait.pixels[..., 3])
    px = trait.pixels[ys, xs]
    idx = ((ys + y0) * width + (xs + x0)).astype(np.int32)
    if not plain:
        return SparseTrait(None, empty, np.empty((0, 3), np.uint8), idx, np.ascontiguousarray(px))
    opaque = px[:, 3] == 255
    return SparseTrait(None, idx[opaque], np.ascontiguousarray(px[opaque, :3]), idx[~opaque], px[~opaque])


class NumpyBackend:
    """Composites on the CPU; thread-safe (one accumulator per thread); NumPy releases the GIL."""

    name = "cpu"
    renders_in_workers = True  # composite inside the encode workers: no hand-off of pixels

    def __init__(self, opaque_rgb: bool = True):
        self.opaque_rgb = opaque_rgb
        self._local = threading.local()
        self.traits: list[list[SparseTrait]] = []
        self.blends: list[tuple | None] = []  # per layer: None (plain) or (mode, as table, ias table)

    def prepare(self, layerset, release_pixels: bool = False) -> None:
        """Index every trait (in threads: NumPy releases the GIL). With `release_pixels` each
        trait's dense pixels are dropped once indexed, so the two forms never coexist."""
        import os
        from concurrent.futures import ThreadPoolExecutor

        self.height, self.width = layerset.height, layerset.width

        self.blends = []
        for layer in layerset.layers:
            mode, op = layer_blend(layer)
            self.blends.append(None if is_plain(mode, op) else (mode, *opacity_tables(op)))

        def index(t, plain):
            sp = sparse_trait(t, self.width, plain)
            if release_pixels:
                t.pixels = None
            return sp

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            self.traits = [list(pool.map(index, layer.traits, [b is None] * len(layer.traits)))
                           for layer, b in zip(layerset.layers, self.blends)]

    @property
    def resident_bytes(self) -> int:
        return sum(t.nbytes for layer in self.traits for t in layer)

    def _acc(self, channels: int) -> np.ndarray:
        key = f"acc{channels}"
        acc = getattr(self._local, key, None)
        if acc is None:
            acc = np.empty((self.height * self.width, channels), F32)
            setattr(self._local, key, acc)
        return acc

    def accumulate(self, combo) -> np.ndarray:
        """Float32 accumulator (H*W, C) for one combination (trait index per layer).
        C is 3 when a full-canvas opaque trait is in the stack (alpha is then exactly 1), else 4."""
        layers = [self.traits[li][ti] for li, ti in enumerate(combo)]
        start = max((i for i, t in enumerate(layers) if t.full_rgb is not None), default=-1)
        c = 3 if start >= 0 else 4
        acc = self._acc(c)
        flat = acc.view(_VOID[c]).reshape(-1)
        if start >= 0:  # the topmost full-canvas trait hides everything below it
            np.copyto(acc.reshape(self.height, self.width, 3), layers[start].full_rgb, casting="unsafe")
        else:
            acc.fill(0)
        for li in range(start + 1, len(layers)):
            t = layers[li]
            blend = self.blends[li]
            if blend is not None:  # blend mode or opacity: the general formula, all covered pixels
                if t.semi_idx.size == acc.shape[0]:  # covers the canvas (indices in order): in place
                    blend_rows(acc, t.semi_rgba, *blend)
                elif t.semi_idx.size:
                    g = np.take(acc, t.semi_idx, axis=0)
                    blend_rows(g, t.semi_rgba, *blend)
                    np.put(flat, t.semi_idx, g.view(_VOID[c]).reshape(-1))
                continue
            if t.full_rgb is not None:
                continue  # cannot happen: start is the topmost one
            if t.op_idx.size:
                vals = np.empty((t.op_idx.size, c), F32)
                vals[:, :3] = t.op_rgb
                if c == 4:
                    vals[:, 3] = 1
                np.put(flat, t.op_idx, vals.view(_VOID[c]).reshape(-1))
            if t.semi_idx.size:
                a8 = t.semi_rgba[:, 3]
                g = np.take(acc, t.semi_idx, axis=0)
                np.multiply(g, INV[a8][:, None], out=g)
                pm = t.semi_rgba[:, :c].astype(F32)
                sa = SA[a8]
                np.multiply(pm[:, :3], sa[:, None], out=pm[:, :3])
                if c == 4:
                    pm[:, 3] = sa
                np.add(g, pm, out=g)
                np.put(flat, t.semi_idx, g.view(_VOID[c]).reshape(-1))
        return acc

    def composite(self, combos) -> list[np.ndarray]:
        out = []
        for combo in combos:
            acc = self.accumulate(combo)
            if acc.shape[1] == 3:
                out.append(finalize_opaque(acc.reshape(self.height, self.width, 3), self.opaque_rgb))
            else:
                out.append(finalize(acc.reshape(self.height, self.width, 4), self.opaque_rgb))
        return out

    def stats(self) -> dict:
        return {"backend": "cpu", "trait_bytes": self.resident_bytes}

    def close(self) -> None:
        self.traits = []
