"""The CUDA backend's host-side buffers: pinned copy-back buffers by size class, the double buffers
of batches in flight, deflate's output buffers, and the packing of a trait's box into 4-pixel groups."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gpucomp.encode import gpu_deflate as gd
from gpucomp.render import kernels

D2H = 2  # cudaMemcpyDeviceToHost


def item_channels(not_opaque, opaque_rgb: bool, xp):
    """Bytes per pixel of each item's rows (filter_rows kernel): 3 when it is opaque and
    `opaque_rgb`, else 4. `xp`: numpy or cupy."""
    return xp.where((not_opaque != 0) | (not opaque_rgb), 4, 3).astype(xp.uint32)


class DeflateBuffers:
    """Device buffers for deflate on the GPU: segment slots and tokens (one set: the deflate
    kernels of successive batches run in stream order) and, per buffer, the packed output,
    segment sizes and Adler-32 pieces. Rows come as the filter kernel lays them out:
    item b at b * H * (1 + 4W), 3 bytes a pixel when it is opaque and `opaque_rgb`, else 4."""

    def __init__(self, cp, batch: int, width: int, height: int, opaque_rgb: bool, threads: int = gd.THREADS,
                 stage: bool = False):
        self.cp = cp
        self.pinned = PinnedSizes()
        self.threads = threads
        defines = ((() if threads == gd.THREADS else (f"DEFLATE_THREADS={threads}",))
                   + (("DEFLATE_STAGE=1",) if stage else ()))
        self.k_deflate = kernels.get_kernel("deflate_segments", "deflate.cu", defines)
        self.k_gather = kernels.get_kernel("gather_segments", "deflate.cu", defines)
        self.width, self.height, self.opaque_rgb = width, height, opaque_rgb
        rows_bytes = self.rows_bytes = height * (1 + 4 * width)
        self.segs = gd.segments(rows_bytes)
        self.cap = gd.packed_capacity(rows_bytes)
        self.slots = cp.empty(batch * self.segs * gd.SLOT, cp.uint8)
        self.tokens = cp.empty(batch * self.segs * gd.SEG, cp.uint16)
        self.packed = [cp.empty((batch, self.cap), cp.uint8) for _ in range(2)]
        self.sizes = [cp.empty((batch, self.segs), cp.uint32) for _ in range(2)]
        self.adler = [cp.empty((batch, self.segs, 2), cp.uint32) for _ in range(2)]

    def lengths(self, channels):
        """Filtered bytes per item, from its bytes per pixel."""
        return (self.height * (1 + self.width * channels)).astype(channels.dtype)

    def launch(self, s: int, nb: int, rows, not_opaque) -> None:
        """Deflate one batch's filtered rows into packed[s] (on the current stream)."""
        cp = self.cp
        c = item_channels(not_opaque[:nb], self.opaque_rgb, cp)
        segs = self.segs
        self.k_deflate((segs, nb), (self.threads,), (
            rows, np.uint64(self.rows_bytes), self.lengths(c), c, np.uint32(self.width),
            np.uint32(segs), self.slots, self.tokens, self.sizes[s], self.adler[s]))
        sizes = self.sizes[s][:nb]
        offsets = cp.cumsum(sizes, axis=1, dtype=cp.uint32) - sizes  # where each segment starts in its item
        self.k_gather((segs, nb), (256,), (self.slots, sizes, offsets, np.uint32(segs), np.uint64(self.cap),
                                           self.packed[s]))

    def copy_exact(self, s: int, sizes: np.ndarray, stream) -> tuple:
        """Queue buffer s's packed bytes, exactly `sizes` (host (nb, segs), from the kernel) of each
        item (~4 MB at 2048x2048 RGB, against the 16.8 MB its slot holds), into one pinned buffer
        on `stream`. Returns (host bytes, starts): item k at host[starts[k]:]."""
        return copy_items(self.cp, self.packed[s], self.cap, sizes.sum(axis=1, dtype=np.int64), stream, self.pinned)

    def items(self, host, not_opaque, sizes, adler, starts) -> list:
        """Deflated items from a batch's packed bytes (item k at host[starts[k]:]), segment sizes
        and Adler pieces (host arrays)."""
        c = item_channels(np.asarray(not_opaque), self.opaque_rgb, np)
        totals = sizes.sum(axis=1, dtype=np.int64)
        adl = gd.adler32(adler, self.lengths(c))
        return [gd.Deflated(memoryview(host[starts[k]:starts[k] + totals[k]]), int(adl[k]), self.width, self.height,
                            int(c[k])) for k in range(len(c))]


def pad_box(pixels: np.ndarray, box, width: int):
    """Widen a trait's box to x multiples of 4 (clipped to the canvas) with transparent
    pixels, so the kernel can move 4 pixels per 16-byte access. Transparent pixels leave
    the accumulator bit-for-bit unchanged, so padding never changes an output byte."""
    if box is None:
        return np.ascontiguousarray(pixels), None
    y0, x0, y1, x1 = box
    nx0, nx1 = x0 - x0 % 4, min(-(-x1 // 4) * 4, width)
    if (nx0, nx1) == (x0, x1):
        return np.ascontiguousarray(pixels), box
    out = np.zeros((y1 - y0, nx1 - nx0, 4), np.uint8)
    out[:, x0 - nx0:x0 - nx0 + (x1 - x0)] = pixels
    return out, (y0, nx0, y1, nx1)


def copy_items(cp, src, stride: int, lengths: np.ndarray, stream, pinned: PinnedSizes | None = None) -> tuple:
    """Queue on `stream` the first lengths[k] bytes of item k (at src + k * stride on the device)
    back to back into one pinned buffer (from `pinned`, default a fresh PinnedSizes). Returns (host
    uint8 array, starts). Asynchronous: the bytes are there once an event recorded on `stream`
    after this is done."""
    lengths = np.asarray(lengths, np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    host = (pinned or PinnedSizes()).take(max(int(lengths.sum()), 1))
    base, dst = src.data.ptr, host.ctypes.data
    for k, (at, n) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
        cp.cuda.runtime.memcpyAsync(dst + at, base + k * stride, n, D2H, stream.ptr)
    return host, starts


def size_class(n: int) -> int:
    """`n` rounded up to its 4 leading bits (at least 64 KiB): at most 1/8 more."""
    n = max(int(n), 1 << 16)
    q = 1 << (n.bit_length() - 4)
    return -(-n // q) * q


class PinnedSizes:
    """Page-locked buffers for batches' bytes, all of one size that only grows. CuPy's pinned pool
    reuses a freed block only for a request of the same rounded size and keeps every block it
    ever pinned: asked for each batch's exact size, it pinned fresh memory every batch (~4 MB an
    item at 2048x2048) and kept all of it. Asked for a quarter more than the largest batch so far
    (in size classes), it pins a new size only a few times a run, and batches of about one size
    stream through the same few blocks (as many as are in flight or still being encoded)."""

    def __init__(self):
        self.size = 0

    def take(self, n: int) -> np.ndarray:
        """`n` bytes (uint8); the block returns to the pool when the array and its views are gone."""
        if n > self.size:  # headroom: the next batches are about as large, some a little larger
            self.size = size_class(n + n // 4)
        return pinned_array((self.size,))[:n]


def pinned_array(shape, dtype=np.uint8) -> np.ndarray:
    """A NumPy array in page-locked memory from CuPy's pinned pool (returned when freed)."""
    import cupyx  # deferred: optional (the [cuda12]/[cuda13] extras)

    return cupyx.empty_pinned(shape, dtype)


@dataclass
class InFlight:
    """A launched batch on its way to the encoders: slot, then what comes back in two steps."""

    idx: np.ndarray  # plan indices
    slot: int
    nb: int
    meta_ready: object  # event: its flags (and deflate sizes, Adler pieces) are in the slot's pinned meta
    flags: np.ndarray | None = None
    channels: np.ndarray | None = None  # rows: bytes per pixel of each item
    sizes: np.ndarray | None = None  # deflate: (nb, segs) segment sizes
    adler: np.ndarray | None = None
    host: np.ndarray | None = None  # pinned: every item's bytes back to back
    starts: np.ndarray | None = None
    lengths: np.ndarray | None = None
    copied: object = None  # event: host holds its bytes
    copies: dict = field(default_factory=dict)  # size name -> (k, pinned host, starts, lengths): nearest copies
