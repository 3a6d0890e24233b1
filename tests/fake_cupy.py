"""A NumPy stand-in for the parts of CuPy the CUDA backend uses, and its kernels played by the
CPU code that defines their results (the NumPy backend, filter_rows, the deflate kernel's host
build). Lets the backend's orchestration (batches, double buffers, copies, packing) run in CI.
Streams and events are no-ops and copies are immediate, so it says nothing about concurrency."""
import ctypes
import tempfile
import types

import numpy as np

from gpucomp import gpu_deflate as gd
from gpucomp.backends.numpy_backend import NumpyBackend
from gpucomp.encode import filter_rows


class ndarray(np.ndarray):
    """Device array: `.data.ptr` is the host address, `.get()`/`.set()` copy."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)

    def get(self):
        return np.array(self)

    def set(self, a):
        self[...] = np.asarray(a).reshape(self.shape)


def _dev(a):
    return np.ascontiguousarray(a).view(ndarray)


class _Event:
    def record(self, stream=None):
        pass

    def synchronize(self):
        pass


class _Context:
    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def synchronize(self):
        pass


class _Stream(_Context):
    ptr = 0

    def record(self):
        return _Event()

    def wait_event(self, event):
        pass


class _Device(_Context):
    id = 0


class _Pool:
    def total_bytes(self):
        return 0

    def free_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


def make_cupy():
    """(cupy, cupyx) module stand-ins."""
    cp = types.ModuleType("cupy")
    cp.ndarray = ndarray
    for name in ("uint8", "uint16", "uint32", "int32", "uint64", "float32"):
        setattr(cp, name, getattr(np, name))
    cp.asarray = lambda a: _dev(np.array(a))
    # Fresh device memory is garbage, not zeros: code that relies on zeros must clear it.
    cp.empty = lambda shape, dtype=np.float32: _dev(np.full(shape, 0xA5, dtype) if np.dtype(dtype).kind in "ui"
                                                    else np.full(shape, np.nan, dtype))
    cp.zeros = lambda shape, dtype=np.float32: _dev(np.zeros(shape, dtype))
    cp.where = lambda *a: _dev(np.where(*a))
    cp.cumsum = lambda *a, **k: _dev(np.cumsum(*a, **k))
    cp.concatenate = lambda *a, **k: _dev(np.concatenate(*a, **k))
    cp.empty_like = lambda a: cp.empty(a.shape, a.dtype)
    cp.get_default_memory_pool = _Pool
    runtime = types.SimpleNamespace(
        memcpyAsync=lambda dst, src, n, kind, stream: ctypes.memmove(dst, src, n),
        memcpy=lambda dst, src, n, kind: ctypes.memmove(dst, src, n),
        memGetInfo=lambda: (8 << 30, 16 << 30), getDeviceCount=lambda: 1,
        getDeviceProperties=lambda i: {"name": b"stand-in (NumPy)", "major": 9, "minor": 0})
    memory = types.SimpleNamespace(OutOfMemoryError=type("OutOfMemoryError", (MemoryError,), {}))
    cp.cuda = types.SimpleNamespace(Stream=_Stream, Event=_Event, Device=_Device, runtime=runtime, memory=memory,
                                    get_elapsed_time=lambda a, b: 1.0)
    cupyx = types.ModuleType("cupyx")
    cupyx.empty_pinned = lambda shape, dtype=np.uint8: np.empty(shape, dtype)
    return cp, cupyx


class FakeKernels:
    """get_kernel(name, source, defines) stand-in. composite_batch: the NumPy backend on the
    layer set of the backend last prepared (`watch`), every layer from the combos (so a cached
    prefix is not needed for the right pixels; prefix builds, mode 1, do nothing); filter_rows:
    encode.filter_rows;
    deflate_segments / gather_segments: the deflate kernel's host build (the variant the
    defines ask for), laid out as on the GPU."""

    def __init__(self, host_deflate):
        self.libs = {(gd.THREADS, False): host_deflate}
        self.backend = None
        self.cpu = None
        self.calls: dict[str, int] = {}

    def watch(self, backend) -> None:
        prepare = backend.prepare

        def wrapped(ls):
            prepare(ls)
            self.prepared(backend, ls)

        backend.prepare = wrapped

    def prepared(self, backend, ls) -> None:
        """Composite for `backend`, which has just prepared `ls`."""
        self.backend = backend
        self.cpu = NumpyBackend(opaque_rgb=False)
        self.cpu.prepare(ls)

    def __call__(self, name, source="composite.cu", defines=()):
        fn = {"composite_batch": self.composite, "composite_batch_blend": self.composite, "filter_rows": self.filter,
              "deflate_segments": self.deflate, "gather_segments": self.gather}[name]
        threads, stage = gd.THREADS, "DEFLATE_STAGE=1" in defines
        for d in defines:
            if d.startswith("DEFLATE_THREADS="):
                threads = int(d.split("=", 1)[1])
        if (threads, stage) not in self.libs:
            self.libs[threads, stage] = gd.build_host_library(tempfile.mkdtemp(prefix="gpucomp-fake-"), threads, stage)

        def kernel(grid, block, args):
            self.calls[name] = self.calls.get(name, 0) + 1
            if name == "deflate_segments":
                assert block == (threads,), "launched with another block size than the variant's"
                self.lib = self.libs[threads, stage]
            fn(grid, args)

        return kernel

    def composite(self, grid, args):
        combos, mode, out8, flags = args[2], int(args[11]), args[12], args[14]
        if mode == 1:
            return
        for b in range(grid[1]):
            px = self.cpu.composite([np.asarray(combos[b]) - self.backend.layer_offset])[0]
            out8[b] = px.reshape(-1)
            flags[b] = int(not (px[..., 3] == 255).all())

    def filter(self, grid, args):
        out8, flags, rgb_ok, width, height, kind, rows = args
        w, h = int(width), int(height)
        for b in range(grid[1]):
            c = 3 if (int(rgb_ok) and not flags[b]) else 4
            px = np.ascontiguousarray(np.asarray(out8[b]).reshape(h, w, 4)[..., :c])
            if int(kind) == 2:
                r = filter_rows(px, "up")
            else:
                r = np.concatenate([np.zeros((h, 1), np.uint8), px.reshape(h, -1)], axis=1)
            rows[b, :r.size] = r.reshape(-1)

    def deflate(self, grid, args):
        rows, stride, n, c, width, segs, slots, tokens, sizes, adler = args
        assert tokens.size >= grid[0] * grid[1] * gd.SEG and slots.size >= grid[0] * grid[1] * gd.SLOT
        for b in range(grid[1]):
            item = np.asarray(rows).reshape(-1)[b * int(stride): b * int(stride) + int(n[b])]
            sl, sz, ad = gd.host_segments(self.lib, item, int(width), int(c[b]))
            k = len(sz)
            np.asarray(slots).reshape(-1, int(segs), gd.SLOT)[b, :k] = sl
            sizes[b] = 0
            adler[b] = 0
            sizes[b, :k] = sz
            adler[b, :k] = ad

    def gather(self, grid, args):
        slots, sizes, offsets, segs, stride, out = args
        flat_slots, flat_out = np.asarray(slots).reshape(-1, gd.SLOT), np.asarray(out).reshape(-1)
        for b in range(grid[1]):
            for k in range(grid[0]):
                at, size = b * int(segs) + k, int(sizes[b, k])
                o = b * int(stride) + int(offsets[b, k])
                flat_out[o:o + size] = flat_slots[at, :size]
