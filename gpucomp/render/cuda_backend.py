"""The CUDA backend: traits resident on the device, one kernel launch per batch,
prefix cache, Up filtering (and, for the `gpu` preset, deflate) on the GPU, nearest-neighbour
sized copies ([[output.sizes]] scale = k) beside the composite, double-buffered copy-back to
pinned memory.

Only this module imports cupy, and only when a CudaBackend is made.
"""
from __future__ import annotations

import warnings
from collections import deque
from contextlib import closing

import numpy as np

from gpucomp.compositing import INV, SA, is_plain, layer_blend
from gpucomp.encode import gpu_deflate as gd
from gpucomp.encode.rendered import Filtered, SizedPixels
from gpucomp.encode.resize import nearest_factor
from gpucomp.render import kernels  # kernels.get_kernel looked up per call: the tests' CuPy stand-in replaces it
from gpucomp.render.budget import (
    MAX_BATCH,  # CUDA grid limit: one item per grid row
    resolve_budget,
)
from gpucomp.render.cache import PrefixCache
from gpucomp.render.cuda_buffers import (
    D2H,
    DeflateBuffers,
    InFlight,
    PinnedSizes,
    copy_items,
    item_channels,
    pad_box,
    pinned_array,
)
from gpucomp.render.numpy_backend import NumpyBackend
from gpucomp.render.schedule import Lookahead, Residency, grouped_order, prefix_depth

THREADS = 256
SCALED_BATCH_BYTES = 1 << 30  # pinned host bytes of one batch's nearest copies: batches shrink to stay under


def device_report() -> list[str]:
    """Lines for `gpucomp info`: device, memory (NVML when present) and the default budget."""
    import cupy  # deferred: optional (the [cuda12]/[cuda13] extras)

    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    free, total = cupy.cuda.runtime.memGetInfo()
    lines = [f"device {dev.id}: {name}, compute capability {props['major']}.{props['minor']}"]
    try:
        import pynvml  # deferred: optional (nvidia-ml-py, with the CUDA extras)

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(dev.id)
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        lines.append(f"memory (NVML): {mem.used / 2**30:.1f} GiB used of {mem.total / 2**30:.1f} GiB, "
                     f"driver {pynvml.nvmlSystemGetDriverVersion()}")
        free = mem.free
    except Exception as err:  # nvidia-ml-py missing or NVML unusable: CUDA's own figure
        lines.append(f"memory (CUDA): {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB (NVML: {err})")
    lines.append(f"default budget (0.8 of free): {resolve_budget('0.8', free) / 2**30:.1f} GiB")
    return lines


def free_device_memory() -> int:
    """Free bytes on the current device, counting memory CuPy's pool holds but does not use."""
    import cupy  # deferred: optional (the [cuda12]/[cuda13] extras)

    free, _ = cupy.cuda.runtime.memGetInfo()
    pool = cupy.get_default_memory_pool()
    return free + pool.free_bytes()


class CudaBackend:
    name = "cuda"
    renders_in_workers = False  # the main thread launches batches; workers only encode
    gpu_deflate = True  # render(..., deflate=True) yields gpu_deflate.Deflated items
    feeder_threads = 1  # the thread that launches batches and waits (asleep) for their bytes

    def __init__(self, opaque_rgb: bool = True, batch_size: int = 0, vram_budget: str = "0.8",
                 cache: str = "auto", trait_budget: int | None = None, scale_on_device: bool = True):
        import cupy  # deferred: optional (the [cuda12]/[cuda13] extras)

        if not 0 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 0 (auto) to {MAX_BATCH} (CUDA's grid limit), got {batch_size}")
        self.cp = cupy
        # Every upload, launch and copy runs on these two streams, never on the legacy default
        # stream, which a non-blocking stream does not wait for.
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.copy_stream = cupy.cuda.Stream(non_blocking=True)
        self.opaque_rgb = opaque_rgb
        self.batch_size = batch_size
        self.auto_batch = not batch_size
        self.vram_budget = vram_budget
        self.cache_mode = cache  # auto | on | off
        self.trait_budget_override = trait_budget
        self.fallbacks: list[str] = []
        self.cache: PrefixCache | None = None
        self.residency: Residency | None = None
        self.peak_vram = 0
        self.pinned = PinnedSizes()  # for batches' bytes: one size for the whole run
        self.scale_on_device = scale_on_device  # False: nearest copies on the CPU (benchmarks compare)
        self.scales: tuple[tuple[str, int], ...] = ()  # this render's nearest copies: (size name, k)
        self.pinned_scaled: dict[str, PinnedSizes] = {}  # per size name: its copies' bytes

    def encode_workers(self, cores: int) -> int:
        """Encode threads to run beside this backend on `cores` cores: one core stays with the
        thread that feeds the GPU. (Whether cores - 1 beats cores is for benchmarks/bench_gpu.py's
        worker sweep on a device to say; the pipeline does not call this yet.)"""
        return max(1, cores - self.feeder_threads)

    # ---- setup -------------------------------------------------------------------------
    def warm(self, deflate: bool = False) -> None:
        """Compile (or load from CuPy's cache) the kernels now, e.g. while layers load. If the
        deflate kernel cannot be built here, the `gpu` preset deflates on the CPU instead."""
        kernels.get_kernel("filter_rows")
        if deflate:
            try:
                kernels.get_kernel("deflate_segments", "deflate.cu")
            except Exception as err:  # NVRTC/driver trouble: keep the run, lose only the speed-up
                self.gpu_deflate = False
                self.fallbacks.append(f"GPU deflate unavailable ({type(err).__name__}: {err}); "
                                      f"the gpu preset deflates with ISA-L on the CPU")

    def prepare(self, layerset) -> None:
        """Upload one stack's traits. Called again for each stack of a collection: the previous
        stack's buffers, residency and cache go first, so the budget sees the memory they held."""
        cp = self.cp
        if getattr(self, "layerset", None) is not None:
            self._wait(self.stream)  # the previous stack's buffers go back to the pool next
            self.close()
            self.residency = None
            cp.get_default_memory_pool().free_all_blocks()
        with self.stream:  # uploads ordered before every launch on this stream
            self.k_filter = kernels.get_kernel("filter_rows")
            self.k_scale = kernels.get_kernel("scale_nearest")
            self.layerset = layerset
            # Per layer blend mode and float32 opacity (compositing.py); the blend-capable kernel only
            # when some layer is not plain, so plain stacks run the plain kernel unchanged.
            blends = [layer_blend(layer) for layer in layerset.layers]
            self.blending = not all(is_plain(m, op) for m, op in blends)
            self.k_composite = kernels.get_kernel("composite_batch_blend" if self.blending else "composite_batch")
            self.d_layer_blend = cp.asarray(np.array([m for m, _ in blends], np.int32).reshape(-1))
            self.d_layer_opacity = cp.asarray(np.array([op for _, op in blends], np.float32).reshape(-1))
            self.height, self.width = layerset.height, layerset.width
            self.npix = self.height * self.width
            traits = [t for layer in layerset.layers for t in layer.traits]
            self.layer_offset = np.cumsum([0] + [len(layer.traits) for layer in layerset.layers[:-1]]).astype(np.int32)
            self.host_traits, boxes = [], np.zeros((len(traits), 4), np.int32)
            for i, t in enumerate(traits):
                px, box = pad_box(t.pixels, t.box, self.width)
                self.host_traits.append(px)
                if box is not None:
                    y0, x0, y1, x1 = box
                    boxes[i] = (y0, x0, y1 - y0, x1 - x0)
            self.boxes = boxes
            self.box_areas = boxes[:, 2].astype(np.int64) * boxes[:, 3]  # pixels read per trait
            self.trait_sizes = [a.nbytes for a in self.host_traits]
            self.budget = resolve_budget(self.vram_budget, free_device_memory())
            self.d_boxes = cp.asarray(boxes)
            self.d_tables = cp.asarray(np.concatenate([SA, INV]))
            self.ptrs = np.zeros(len(traits), np.uint64)
            self.d_ptrs = cp.zeros(len(traits), cp.uint64)
            total = sum(self.trait_sizes)
            if self.auto_batch:
                self.batch_size = self._auto_batch(self.item_bytes())
            trait_budget = self.trait_budget_override or int(self.budget * 0.5)
            self.resident_pool = None
            self.dev_traits: dict[int, object] = {}
            if total <= trait_budget:  # everything resident: one packed buffer + offset table
                padded = [-(-n // 16) * 16 for n in self.trait_sizes]  # 16-byte aligned starts (uint4 loads)
                offs = np.cumsum([0] + padded[:-1])
                pool = cp.empty(max(sum(padded), 1), cp.uint8)
                for i, a in enumerate(self.host_traits):
                    if a.nbytes:
                        pool[offs[i]:offs[i] + a.nbytes].set(a.reshape(-1).view(np.uint8))
                self.resident_pool = pool
                self.ptrs[:] = pool.data.ptr + offs.astype(np.uint64)
                self.d_ptrs.set(self.ptrs)
                self.trait_bytes_uploaded = total
            self.trait_budget = trait_budget
        self._note_vram()

    def _launch(self, combos, nb: int, mode: int, out8=None, flags=None, prefix=None, first=None, out_acc=None):
        """One composite_batch launch over `nb` items on the current stream. `combos` is a
        device (nb, L) int32 array of global trait ids; unset pointer arrays mean none."""
        cp = self.cp
        zeros64 = cp.zeros(nb, cp.uint64)
        self.k_composite((self._grid(), nb), (THREADS,), (
            self.d_ptrs, self.d_boxes, combos, zeros64 if prefix is None else prefix,
            cp.zeros(nb, cp.int32) if first is None else first, self.d_tables, self.d_layer_blend,
            self.d_layer_opacity, np.int32(combos.shape[1]),
            np.int32(self.width), np.int32(self.height), np.int32(mode),
            cp.empty(4, cp.uint8) if out8 is None else out8, zeros64 if out_acc is None else out_acc,
            cp.zeros(nb, cp.int32) if flags is None else flags))

    def _grid(self) -> int:
        """Blocks along x for composite_batch: one thread per 4-pixel group of a row."""
        return (((self.width + 3) // 4) * self.height + THREADS - 1) // THREADS

    def item_bytes(self, deflate: bool = False, scales: tuple[tuple[str, int], ...] = ()) -> int:
        """Device bytes per item in flight: RGBA finals + filtered rows; with deflate, the packed
        output and half the segment slots and tokens (one set serves both buffers); with `scales`,
        each nearest copy at RGBA capacity (k * k times the canvas)."""
        rows = self.height * (1 + 4 * self.width)
        n = self.npix * 4 + rows + sum(k * k * self.npix * 4 for _, k in scales)
        if deflate:
            n += gd.packed_capacity(rows) + gd.segments(rows) * (gd.SLOT + 2 * gd.SEG) // 2
        return n

    def _auto_batch(self, per_item: int) -> int:
        """Two batches in flight must fit a quarter of the budget."""
        return int(max(1, min(64, self.budget // (8 * per_item))))

    def _device_scales(self, sizes, png_filter: str, deflate: bool) -> tuple[tuple[str, int], ...]:
        """The nearest copies among `sizes` (whole-number scales >= 2, resize.nearest_factor) this
        render makes on the device beside each composite; lowers the batch size to what they allow.
        Empty when two batches of one item with its copies do not fit a quarter of the VRAM budget
        (the rule of _auto_batch): the CPU makes them then, and `fallbacks` says why."""
        scales = tuple((s.name, k) for s in sizes if (k := nearest_factor(s)))
        if not scales or not self.scale_on_device:
            return ()
        if png_filter != "none" or deflate:
            raise ValueError("sized copies come back beside pixels: render them with png_filter='none'")
        per_item = self.item_bytes(scales=scales)
        names = ", ".join(f"{n!r} (x{k})" for n, k in scales)
        if 8 * per_item > self.budget:
            self.fallbacks.append(
                f"nearest copies {names} of {self.width}x{self.height} items need {per_item / 2**30:.2f} GiB of GPU "
                f"memory per item in flight; the VRAM budget of {self.budget / 2**30:.2f} GiB holds two batches of "
                f"items up to {self.budget / 8 / 2**30:.2f} GiB (a quarter of it): they are made on the CPU instead "
                f"(raise [run] vram_budget to make them on the GPU)")
            return ()
        host = sum(k * k * self.npix * 4 for _, k in scales)
        cap = int(max(1, min(self.budget // (8 * per_item), SCALED_BATCH_BYTES // host)))
        if cap < self.batch_size:
            if not self.auto_batch:
                self.fallbacks.append(f"batch size {self.batch_size} lowered to {cap}: nearest copies {names} take "
                                      f"{host / 2**20:.0f} MiB an item on the GPU and in pinned host memory")
            self.batch_size = cap
        return scales

    def _note_vram(self) -> None:
        pool = self.cp.get_default_memory_pool()
        self.peak_vram = max(self.peak_vram, pool.total_bytes())

    # ---- trait streaming -----------------------------------------------------------------
    def _upload(self, t: int) -> None:
        a = self.host_traits[t]
        d = self.cp.asarray(a) if a.nbytes else self.cp.empty(4, self.cp.uint8)
        self.dev_traits[t] = d
        self.ptrs[t] = d.data.ptr

    def _drop(self, t: int) -> None:
        self.dev_traits.pop(t, None)
        self.ptrs[t] = 0

    # ---- rendering ------------------------------------------------------------------------
    def _use_cache(self, combos: np.ndarray) -> int:  # combos: global trait ids
        """Prefix depth to cache, 0 for none. `auto` caches only when reading a cached
        float32 prefix moves fewer bytes than recompositing the prefix's layers."""
        if self.cache_mode == "off":
            return 0
        depth = prefix_depth(combos)
        if depth == 0:
            return 0
        if self.cache_mode == "auto":
            saved = float(self.box_areas[combos[:, :depth]].sum(axis=1).mean()) * 4  # uint8 RGBA reads skipped
            if saved <= self.npix * 16:
                return 0
        return depth

    def render(self, combos: np.ndarray, stats, png_filter: str = "up", deflate: bool = False, sizes=()):
        """Yield (plan indices, outputs) batch by batch; outputs are `Deflated` items with
        `deflate` (Up filter), `Filtered` rows when png_filter == 'up', else (H, W, C) uint8
        pixel arrays, or `SizedPixels` when `sizes` (resize.Size) has nearest copies made on the
        device (see _device_scales). Items finished on the CPU after an out-of-memory are pixel arrays."""
        cp = self.cp
        if deflate and png_filter != "up":
            raise ValueError("GPU deflate works on Up-filtered rows")
        if deflate and self.auto_batch:
            self.batch_size = min(self.batch_size, self._auto_batch(self.item_bytes(deflate=True)))
        self.scales = self._device_scales(sizes, png_filter, deflate)
        n, layers = combos.shape
        gids = (combos + self.layer_offset[None, :]).astype(np.int32)
        depth = self._use_cache(gids)
        order = grouped_order(gids, depth)
        if depth:
            in_flight = 4 * self.batch_size * self.item_bytes(deflate, self.scales)
            budget = max(self.budget - self.trait_budget - in_flight, 0)
            self.cache = PrefixCache(budget, self.npix * 16, lambda nb: cp.empty(nb // 4, cp.float32))
        self.depth = depth
        pos = 0
        while pos < n:
            b = min(self.batch_size, n - pos)
            try:
                batches = [order[i:i + self.batch_size] for i in range(pos, n, self.batch_size)]
                if self.resident_pool is None and self.residency is None:
                    look = Lookahead([gids[idx].ravel() for idx in batches])
                    self.residency = Residency(self.trait_sizes, self.trait_budget, look, self._upload, self._drop)
                with closing(self._render_batches(batches, gids, layers, png_filter, stats, deflate)) as run:
                    for idx, outs in run:
                        pos += len(idx)
                        yield idx, outs
            except MemoryError as err:  # CuPy's OutOfMemoryError, or a batch over the trait budget
                if self.cache is not None:
                    self.cache.clear()
                cp.get_default_memory_pool().free_all_blocks()
                if b > 1:
                    self.batch_size = max(1, b // 2)
                    self.fallbacks.append(f"GPU memory exceeded at batch size {b}: retrying with {self.batch_size}")
                    self.residency = None
                    self.dev_traits.clear()
                    continue
                msg = f"out of GPU memory even at batch size 1 ({err}); finishing on the CPU backend"
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                self.fallbacks.append(msg)
                yield from self._cpu_fallback(order[pos:], combos, png_filter)
                return

    def _cpu_fallback(self, rest, combos, png_filter):
        cpu = NumpyBackend(opaque_rgb=self.opaque_rgb)
        cpu.prepare(self.layerset)
        for i in rest:
            yield np.array([i]), cpu.composite([combos[i]])

    def _render_batches(self, batches, gids, layers, png_filter, stats, deflate=False):
        """Three batches in flight: launch batch i, queue the exact copy of batch i-1's bytes once
        its sizes and flags are on the host, hand batch i-2 to the encoders. So the GPU computes
        while earlier batches come back and are encoded; host waits sleep on blocking-sync events,
        and nothing waits per item. On close or error both streams are waited for before the
        buffers go back to the pools (a kernel or a copy may still use them)."""
        with self.stream:  # allocated on the stream that writes them: the pool reuses them in its order
            bufs = _Buffers(self, self.batch_size, deflate)
        flight: deque[InFlight] = deque()
        try:
            for bi, idx in enumerate(batches):
                flight.append(self._launch_batch(bufs, bi, idx, gids, layers, png_filter, stats))
                if len(flight) >= 2:
                    self._copy_back(bufs, flight[-2], stats)
                if len(flight) == 3:
                    yield self._collect(bufs, flight.popleft(), png_filter, stats)
            if flight:
                self._copy_back(bufs, flight[-1], stats)
            while flight:
                yield self._collect(bufs, flight.popleft(), png_filter, stats)
        finally:
            with stats.timer("gpu_wait"):
                self._wait(self.stream)
                self._wait(self.copy_stream)

    def _launch_batch(self, bufs: _Buffers, bi: int, idx, gids, layers, png_filter, stats) -> InFlight:
        """Queue batch `bi` on the compute stream into slot bi % 2, then its flags (and deflate
        sizes) to pinned memory on the copy stream. Nothing here waits for the device, except
        before evicting streamed traits a running launch may still read."""
        cp, stream, s, nb = self.cp, self.stream, bi % 2, len(idx)
        if bufs.copied[s] is not None:
            stream.wait_event(bufs.copied[s])  # slot s's previous batch is on the host (device-side wait)
        with stream:
            if self.residency is not None:
                with stats.timer("upload"):
                    self._wait(stream)
                    self.residency.ensure(bi)
                    self.d_ptrs.set(self.ptrs)
            pre_ptrs, first = self._prefixes(idx, gids, layers)
            flags = bufs.flags[s]
            flags[:nb].fill(0)
            self._launch(cp.asarray(gids[idx]), nb, 0, out8=bufs.out8, flags=flags,
                         prefix=cp.asarray(pre_ptrs), first=cp.asarray(first))
            self._filter(bufs.out8, flags, bufs.rows[s], nb, 2 if png_filter == "up" else 0)
            for name, k in self.scales:
                self._scale(bufs.out8, flags, bufs.scaled[name][s], nb, k)
            if bufs.dfl is not None:
                bufs.dfl.launch(s, nb, bufs.rows[s], flags)
        self._note_vram()
        self.copy_stream.wait_event(self._event(stream))
        bufs.queue_meta(s, nb, self.copy_stream)
        return InFlight(idx, s, nb, self._event(self.copy_stream))

    def _copy_back(self, bufs: _Buffers, b: InFlight, stats) -> None:
        """Once batch b's flags (and sizes) are on the host: queue exactly its bytes into one
        pinned buffer on the copy stream: deflate streams, or rows at each item's own length
        (RGB items are a quarter shorter than the RGBA-capacity slot)."""
        with stats.timer("gpu_wait"):
            b.meta_ready.synchronize()
        s, nb = b.slot, b.nb
        b.flags = bufs.h_flags[s][:nb].copy()
        if bufs.dfl is not None:
            b.sizes, b.adler = bufs.h_sizes[s][:nb].copy(), bufs.h_adler[s][:nb].copy()
            lengths, src, stride = b.sizes.sum(axis=1, dtype=np.int64), bufs.dfl.packed[s], bufs.dfl.cap
        else:
            b.channels = item_channels(b.flags, self.opaque_rgb, np)
            lengths = self.height * (1 + self.width * b.channels.astype(np.int64))
            src, stride = bufs.rows[s], bufs.rows[s].shape[1]
        b.host, b.starts = copy_items(self.cp, src, stride, lengths, self.copy_stream, self.pinned)
        b.lengths = lengths
        for name, k in self.scales:  # each nearest copy at its own length, into pinned memory of its own
            dev, n = bufs.scaled[name][s], k * k * self.npix * b.channels.astype(np.int64)
            pinned = self.pinned_scaled.setdefault(name, PinnedSizes())
            host, starts = copy_items(self.cp, dev, dev.shape[1], n, self.copy_stream, pinned)
            b.copies[name] = (k, host, starts, n)
        b.copied = bufs.copied[s] = self._event(self.copy_stream)

    def _collect(self, bufs: _Buffers, b: InFlight, png_filter: str, stats):
        """(plan indices, outputs) of batch b once its bytes are on the host: views of its pinned
        buffer, which lives as long as any of them."""
        with stats.timer("gpu_wait"):
            b.copied.synchronize()
        if bufs.dfl is not None:
            return b.idx, bufs.dfl.items(b.host, b.flags, b.sizes, b.adler, b.starts)
        outs = []
        h, w = self.height, self.width
        for j, (c, at, n) in enumerate(zip(b.channels.tolist(), b.starts.tolist(), b.lengths.tolist(), strict=True)):
            r = b.host[at:at + n].reshape(h, 1 + w * c)
            if png_filter == "up":
                outs.append(Filtered(r, w, h, c))
                continue
            px = r[:, 1:].reshape(h, w, c)
            if b.copies:
                px = SizedPixels(px, {name: host[starts[j]:starts[j] + lens[j]].reshape(k * h, k * w, c)
                                      for name, (k, host, starts, lens) in b.copies.items()})
            outs.append(px)
        return b.idx, outs

    def _event(self, stream):
        """An event recorded on `stream` that a host thread waits for asleep (blocking sync), not
        spinning on a core the encoders need."""
        ev = self.cp.cuda.Event(block=True, disable_timing=True)
        ev.record(stream)
        return ev

    def _wait(self, stream) -> None:
        """Block (asleep) until everything queued on `stream` so far is done."""
        self._event(stream).synchronize()

    def _filter(self, out8, flags, rows, nb: int, filt: int) -> None:
        """PNG rows from a batch's RGBA finals: filter 2 = Up, 0 = None (filter_rows kernel)."""
        self.k_filter(((self.npix + THREADS - 1) // THREADS, nb), (THREADS,), (
            out8, flags, np.int32(1 if self.opaque_rgb else 0), np.int32(self.width), np.int32(self.height),
            np.int32(filt), rows))

    def _scale(self, out8, flags, dst, nb: int, k: int) -> None:
        """Nearest copies (x k) of a batch's RGBA finals, each item at dst[b] with its rows'
        channels (scale_nearest kernel, the formula of resize.py)."""
        n = k * k * self.npix
        self.k_scale(((n + THREADS - 1) // THREADS, nb), (THREADS,), (
            out8, flags, np.int32(1 if self.opaque_rgb else 0), np.int32(self.width), np.int32(self.height),
            np.int32(k), np.int64(dst.shape[1]), dst))

    def _prefixes(self, idx, gids, layers):
        """Per item: pointer to a cached prefix accumulator (0 = none) and the first layer
        to apply. Misses build their prefix first (mode 1 launch) when the cache has room."""
        cp = self.cp
        nb = len(idx)
        pre = np.zeros(nb, np.uint64)
        first = np.zeros(nb, np.int32)
        if not self.depth:
            return pre, first
        d = self.depth
        keys = [tuple(r) for r in gids[idx, :d].tolist()]
        batch_keys = frozenset(keys)
        build = {}
        for k, key in enumerate(keys):
            if key in build:  # built for an earlier item of this batch: a hit
                self.cache.stats.hits += 1
                buf = build[key]
            else:
                buf = self.cache.get(key)
            if buf is None:
                buf = self.cache.put(key, pinned=batch_keys)
                if buf is not None:
                    build[key] = buf
            if buf is not None:
                pre[k] = buf.data.ptr
                first[k] = d
        if build:
            nbld = len(build)
            combos = np.full((nbld, layers), -1, np.int32)
            combos[:, :d] = np.array(list(build.keys()), np.int32)
            dst = np.array([b.data.ptr for b in build.values()], np.uint64)
            self._launch(cp.asarray(combos), nbld, 1, out_acc=cp.asarray(dst))
        return pre, first

    # ---- measurement helpers (benchmarks, tests) -----------------------------------------------
    def composite_only(self, combos: np.ndarray, reps: int = 5) -> dict:
        """Time the compositing kernel alone on one batch (device events): items/s and GB/s
        of trait reads + RGBA writes."""
        cp = self.cp
        gids = (combos + self.layer_offset[None, :]).astype(np.int32)[: self.batch_size]
        nb = len(gids)
        with self.stream:
            out8 = cp.empty((nb, self.npix * 4), cp.uint8)
            d_combos = cp.asarray(gids)
            self._launch(d_combos, nb, 0, out8=out8)  # warm-up
            t = self._timed(reps, lambda: self._launch(d_combos, nb, 0, out8=out8))
        moved = int(self.box_areas[gids].sum()) * 4 + nb * self.npix * 4
        return {"items": nb, "seconds": t, "items_per_s": nb / t, "gb_per_s": moved / t / 1e9, "bytes": moved}

    def deflate_only(self, combos: np.ndarray, reps: int = 3, threads: int = gd.THREADS, stage: bool = False) -> dict:
        """Time deflate on the GPU alone (kernel + gather, device events) on one batch of
        composited, filtered items: items/s, GB/s of filtered input, output/input ratio.
        `threads`, `stage`: the kernel variant (threads per segment, input staged in shared memory)."""
        cp = self.cp
        gids = (combos + self.layer_offset[None, :]).astype(np.int32)[: self.batch_size]
        nb = len(gids)
        with self.stream:
            out8 = cp.empty((nb, self.npix * 4), cp.uint8)
            rows = cp.empty((nb, self.height * (1 + 4 * self.width)), cp.uint8)
            flags = cp.zeros(nb, cp.int32)
            self._launch(cp.asarray(gids), nb, 0, out8=out8, flags=flags)
            self._filter(out8, flags, rows, nb, 2)
            dfl = DeflateBuffers(cp, nb, self.width, self.height, self.opaque_rgb, threads, stage)
            dfl.launch(0, nb, rows, flags)  # warm-up (compiles)
            t = self._timed(reps, lambda: dfl.launch(0, nb, rows, flags))
            n_in = int(dfl.lengths(item_channels(flags.get(), self.opaque_rgb, np)).sum(dtype=np.int64))
            n_out = int(dfl.sizes[0][:nb].get().sum())
        return {"threads": threads, "stage": stage, "items": nb, "seconds": t, "items_per_s": nb / t,
                "gb_per_s_in": n_in / t / 1e9,
                "out_over_in": n_out / n_in, "avg_mb_out": n_out / nb / 1e6}

    def _timed(self, reps: int, launch) -> float:
        """Median seconds of `launch` on this backend's stream, between device events."""
        cp, times = self.cp, []
        for _ in range(reps):
            start, end = cp.cuda.Event(block=True), cp.cuda.Event(block=True)
            start.record(self.stream)
            launch()
            end.record(self.stream)
            end.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
        return float(np.median(times))

    def stats(self) -> dict:
        d = {"backend": "cuda", "batch_size": self.batch_size, "budget_bytes": getattr(self, "budget", 0),
             "peak_vram_bytes": self.peak_vram, "fallbacks": list(self.fallbacks),
             "traits_resident": self.resident_pool is not None, "device_sizes": [n for n, _ in self.scales]}
        if self.cache is not None:
            d["cache"] = {**self.cache.stats.as_dict(), "prefix_depth": self.depth}
        else:
            d["cache"] = {"hits": 0, "misses": 0, "evictions": 0, "hit_rate": 0.0, "bytes": 0,
                          "prefix_depth": 0, "mode": self.cache_mode}
        if self.residency is not None:
            r = self.residency
            d["prefetch"] = {"hits": r.hits, "misses": r.misses, "bytes_moved": r.bytes_moved}
        else:
            d["prefetch"] = {"hits": 0, "misses": 0, "bytes_moved": getattr(self, "trait_bytes_uploaded", 0)}
        return d

    def close(self) -> None:
        self.resident_pool = None
        getattr(self, "dev_traits", {}).clear()
        if self.cache is not None:
            self.cache.clear()
            self.cache = None


class _Buffers:
    """One render's device buffers: the RGBA finals (one: only the compute stream touches them),
    per slot (two batches in flight) the filtered rows, opacity flags and deflate outputs, and
    their pinned metadata copies (fixed sizes, so the pinned pool reuses them)."""

    def __init__(self, backend: CudaBackend, batch: int, deflate: bool):
        cp, b = backend.cp, backend
        self.out8 = cp.empty((batch, b.npix * 4), cp.uint8)
        self.rows = [cp.empty((batch, b.height * (1 + 4 * b.width)), cp.uint8) for _ in range(2)]
        self.flags = [cp.zeros(batch, cp.int32) for _ in range(2)]
        # per nearest copy, per slot: (batch, k * k * H * W * 4) bytes, each item's copy tight at its start
        self.scaled = {name: [cp.empty((batch, k * k * b.npix * 4), cp.uint8) for _ in range(2)]
                       for name, k in b.scales}
        self.dfl = DeflateBuffers(cp, batch, b.width, b.height, b.opaque_rgb) if deflate else None
        self.h_flags = [pinned_array((batch,), np.int32) for _ in range(2)]
        if self.dfl is not None:
            self.h_sizes = [pinned_array(a.shape, a.dtype) for a in self.dfl.sizes]
            self.h_adler = [pinned_array(a.shape, a.dtype) for a in self.dfl.adler]
        self.copied: list = [None, None]  # per slot: event after its last batch's bytes were copied
        self.cp = cp

    def queue_meta(self, s: int, nb: int, stream) -> None:
        """Slot s's flags (and deflate sizes and Adler pieces) of its first nb items to pinned memory."""
        pairs = [(self.h_flags[s], self.flags[s])]
        if self.dfl is not None:
            pairs += [(self.h_sizes[s], self.dfl.sizes[s]), (self.h_adler[s], self.dfl.adler[s])]
        for host, dev in pairs:
            n = host.nbytes // host.shape[0] * nb
            self.cp.cuda.runtime.memcpyAsync(host.ctypes.data, dev.data.ptr, n, D2H, stream.ptr)
