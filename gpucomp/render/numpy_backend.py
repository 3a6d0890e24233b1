"""The CPU backend: the compositing contract on the CPU, by a fused numba kernel or by NumPy.

NumPy path (the fallback): per trait we keep, once per run, the canvas indices of its opaque pixels and of its
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

With numba available (the default install), `composite` runs the fused kernel of
cpu_kernel.py on a run-length layout (cpu_spans.py) instead: same bytes, several times
faster. The sparse NumPy path stays as the fallback (numba missing, or GPUCOMP_NO_JIT=1)
and is tested byte-identical to the kernel.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from gpucomp._shared.jit import NO_JIT_ENV, import_jit
from gpucomp._shared.jit import disabled as jit_disabled
from gpucomp.compositing import F32, INV, SA, blend_rows, finalize, finalize_opaque, is_plain, layer_blend, opacity_tables
from gpucomp.encode.rendered import Filtered, Rendered
from gpucomp.render.cpu_spans import SpanPool, pool_layout

_kernel_lock = threading.Lock()
_kernel_state: dict = {}  # "fn": the compiled kernel, or "why": why there is none


def kernel_status() -> tuple[bool, str]:
    """(usable, reason) for the fused kernel; imports numba (~0.5 s) once; never raises."""
    if jit_disabled():
        return False, f"{NO_JIT_ENV} is set: NumPy compositing"
    with _kernel_lock:
        if not _kernel_state:
            try:
                _kernel_state["module"] = _import_kernel()
            except Exception as err:  # numba missing or broken: the NumPy path still works
                _kernel_state["why"] = f"numba unavailable ({type(err).__name__}: {err}): NumPy compositing"
    return "module" in _kernel_state, _kernel_state.get("why", "fused numba kernel")


def _import_kernel():
    return import_jit("gpucomp.render.cpu_kernel")


def compiled_kernel():
    """The kernel, compiled (or loaded from numba's disk cache) once per process, thread-safe."""
    ok, why = kernel_status()
    if not ok:
        raise RuntimeError(why)
    with _kernel_lock:
        if "fn" not in _kernel_state:
            _kernel_state["module"].warm_up()
            _kernel_state["fn"] = _kernel_state["module"].composite_item
    return _kernel_state["fn"]


_KERNEL_FILTERS = {"sub": 1, "up": 2}  # PNG filters the kernel applies as it writes rows
_NO_ACC = np.zeros((0, 4), np.float32)  # the kernel's "round into out" signal
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
    """Composites on the CPU; thread-safe (one accumulator per thread); the fused kernel and
    NumPy both release the GIL, so the encode workers composite in parallel."""

    name = "cpu"
    renders_in_workers = True  # composite inside the encode workers: no hand-off of pixels
    gpu_deflate = False  # composite() returns pixels; the encoder deflates them
    fallbacks: tuple = ()  # nothing to fall back from

    def __init__(self, opaque_rgb: bool = True, kernel: bool | None = None):
        """`kernel`: True forces the fused kernel (error if numba is unusable), False the NumPy
        path; None (default) uses the kernel when numba works and GPUCOMP_NO_JIT is unset."""
        self.opaque_rgb = opaque_rgb
        self._want_kernel = kernel
        self._local = threading.local()
        self.traits: list[list[SparseTrait]] = []
        self.pool: SpanPool | None = None
        self.blends: list[tuple | None] = []  # per layer: None (plain) or (mode, as table, ias table)

    @property
    def uses_kernel(self) -> bool:
        if self._want_kernel is None:
            self._want_kernel = kernel_status()[0]
        return self._want_kernel

    def warm(self, deflate: bool = False) -> None:
        """Compile the kernel (or load it from numba's cache) ahead of the first item."""
        if self.uses_kernel:
            compiled_kernel()

    def prepare(self, layerset, release_pixels: bool = False) -> None:
        """Index every trait (in threads: NumPy releases the GIL). With `release_pixels` each
        trait's dense pixels are dropped once indexed, so the two forms never coexist."""
        self.height, self.width = layerset.height, layerset.width
        self.blends = []
        for layer in layerset.layers:
            mode, op = layer_blend(layer)
            self.blends.append(None if is_plain(mode, op) else (mode, *opacity_tables(op)))
        plains = [[b is None] * len(layer.traits) for layer, b in zip(layerset.layers, self.blends, strict=True)]
        if self.uses_kernel:
            self._kernel = compiled_kernel()  # also compiles the run indexing below
            self.pool = self._index_runs(layerset, plains, release_pixels)
            self._layer_args = self._kernel_layer_args()
            return

        def one(t, plain):
            form = sparse_trait(t, self.width, plain)
            if release_pixels:
                t.pixels = None
            return form

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            self.traits = [list(pool.map(one, layer.traits, p)) for layer, p in zip(layerset.layers, plains, strict=True)]

    @staticmethod
    def _index_runs(layerset, plains, release_pixels: bool) -> SpanPool:
        """The kernel's run layout in two passes over the traits, in threads: count each trait's
        runs and bytes, allocate the pool once, then each trait fills its own slices."""
        k = _kernel_state["module"]
        traits = [(t, plain) for layer, p in zip(layerset.layers, plains, strict=True)
                  for t, plain in zip(layer.traits, p, strict=True)]

        def count(tp):
            t, plain = tp
            if t.box is None:
                return None, 0, 0, 0
            n_runs, n_bytes = k.run_counts(np.ascontiguousarray(t.pixels), plain)
            return t.box, n_runs, n_bytes, int(bool(t.opaque_full) and plain)

        def fill(tp, slot):
            t, plain = tp
            if slot is not None:
                s0, p0, r0, n_runs, n_bytes = slot
                px = np.ascontiguousarray(t.pixels)
                k.fill_runs(px, plain, t.box[1], pool.pixels[p0:p0 + n_bytes], pool.spans[s0:s0 + n_runs],
                            pool.rowptr[r0:r0 + px.shape[0] + 1], s0, p0)
            if release_pixels:
                t.pixels = None

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as ex:
            counts = iter(list(ex.map(count, traits)))
            layout = pool_layout([[next(counts) for _ in layer.traits] for layer in layerset.layers])
            pool = layout.pool
            list(ex.map(fill, traits, [slot for layer in layout.slots for slot in layer]))
        return pool

    def _kernel_layer_args(self) -> tuple[np.ndarray, ...]:
        """Per layer, for the kernel: mode, plain flag, and the opacity tables (as, ias)."""
        n = len(self.blends)
        modes, plain = np.zeros(n, np.int64), np.ones(n, np.uint8)
        as_tab, ias_tab = np.tile(SA, (n, 1)), np.tile(INV, (n, 1))
        for li, b in enumerate(self.blends):
            if b is not None:
                modes[li], plain[li] = b[0], 0
                as_tab[li], ias_tab[li] = b[1], b[2]
        return modes, plain, as_tab, ias_tab

    def _kernel_call(self, combo, out: np.ndarray, acc_out: np.ndarray, channels: int = 0, filt: int = 0) -> bool:
        tids = np.asarray(combo, np.int64) + np.asarray(self.pool.first, np.int64)
        p = self.pool
        return self._kernel(p.pixels, p.spans, p.rowptr, p.tinfo, tids, *self._layer_args,
                            out.reshape(out.shape[0], -1), channels or out.shape[2], acc_out, filt)

    def _has_base(self, combo) -> bool:
        """A full-canvas opaque trait of a plain layer is in the stack (alpha is exactly 1)."""
        return any(self.pool.tinfo[self.pool.first[li] + ti, 3] for li, ti in enumerate(combo))

    def _kernel_composite(self, combo) -> np.ndarray:
        h, w = self.height, self.width
        if self._has_base(combo):
            out = np.empty((h, w, 3 if self.opaque_rgb else 4), np.uint8)
            self._kernel_call(combo, out, _NO_ACC)
            return out
        out = np.empty((h, w, 4), np.uint8)
        if self._kernel_call(combo, out, _NO_ACC) and self.opaque_rgb:
            return np.ascontiguousarray(out[..., :3])
        return out

    def composite_filtered(self, combo, kind: str) -> Rendered:
        """One item for the PNG encoder: with the kernel, an item over a full-canvas opaque trait
        comes back as PNG scanlines filtered in the same pass (Filtered, `kind` 'up' or 'sub'), the
        bytes encode.filter_rows makes of its pixels; anything else as pixels (composite)."""
        filt = _KERNEL_FILTERS.get(kind, 0)
        if self.pool is None or not filt or not self._has_base(combo):
            return self.composite([combo])[0]
        h, w = self.height, self.width
        c = 3 if self.opaque_rgb else 4
        rows = np.empty((h, 1 + w * c), np.uint8)
        self._kernel_call(combo, rows, _NO_ACC, c, filt)
        return Filtered(rows, w, h, c)

    @property
    def resident_bytes(self) -> int:
        if self.pool is not None:
            return self.pool.nbytes
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
        if self.pool is not None:
            acc = self._acc(3 if self._has_base(combo) else 4)
            self._kernel_call(combo, np.empty((self.height, self.width, 4), np.uint8), acc)
            return acc
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
        if self.pool is not None:
            return [self._kernel_composite(combo) for combo in combos]
        out = []
        for combo in combos:
            acc = self.accumulate(combo)
            if acc.shape[1] == 3:
                out.append(finalize_opaque(acc.reshape(self.height, self.width, 3), self.opaque_rgb))
            else:
                out.append(finalize(acc.reshape(self.height, self.width, 4), self.opaque_rgb))
        return out

    def stats(self) -> dict:
        return {"backend": "cpu", "compositor": "numba kernel" if self.pool is not None else "numpy",
                "trait_bytes": self.resident_bytes}

    def close(self) -> None:
        self.traits = []
        self.pool = None
