"""A NumPy stand-in for the parts of CuPy the CUDA backend uses, and its kernels played by the
CPU code that defines their results (the NumPy backend, filter_rows, the deflate kernel's host
build). Lets the backend's orchestration (batches, double buffers, copies, packing) run in CI.

Work runs at once, but the stand-in keeps the books a device would enforce (`Device`, as
`cupy.fake`), so the orchestration's mistakes that only a GPU would show fail here too:
- stream order: each operation is numbered on its stream; a kernel or a copy that reads an array
  last written on another stream, with no event wait, host wait or implicit legacy-stream order in
  between, raises `Unordered` (a non-blocking stream is not ordered after the legacy stream);
- frees in flight: device memory is stream-ordered (reused in the order of the stream it was
  allocated on), pinned memory is not: returning either while another stream's (for pinned: any)
  operation on it is not known done is recorded in `faults`;
- the pinned pool reuses a freed block only for a request of the same size rounded up to 512
  bytes, as CuPy's PinnedMemoryPool does: `pinned_bytes` (all ever pinned) shows growth;
- host waits are logged with whether they sleep (an Event(block=True)) or spin (`waits`);
- a launch with a grid dimension over CUDA's limits raises `CUDADriverError`.
"""
import atexit
import ctypes
import shutil
import tempfile
import types
import weakref

import numpy as np

from gpucomp.encode import gpu_deflate as gd
from gpucomp.encode.png import filter_rows
from gpucomp.render.numpy_backend import NumpyBackend

# The host builds of deflate.cu, one folder per process (removed when it exits: a test run used to
# leave a gpucomp-fake-* folder in the temporary directory for every build).
_BUILDS = tempfile.mkdtemp(prefix="gpucomp-fake-")
atexit.register(shutil.rmtree, _BUILDS, True)


def build_dir() -> str:
    return tempfile.mkdtemp(dir=_BUILDS)

MAX_GRID_YZ = 65535
PINNED_UNIT = 512


class Unordered(AssertionError):
    """An operation read data that its stream is not ordered after: a race on a device."""


class CUDADriverError(RuntimeError):
    pass


class Device:
    """What the stand-in knows about the work it was given."""

    def __init__(self):
        self.issued: dict[int, int] = {}  # stream id -> operations issued
        self.done: dict[int, int] = {}  # stream id -> operations the host knows are finished
        self.streams: dict[int, "_Stream"] = {}
        self.allocs: dict[int, "_Alloc"] = {}  # id(root array) -> record
        self.faults: list[str] = []
        self.waits: list[tuple[str, bool]] = []  # (what, sleeps): every host wait
        self.pinned_free: dict[int, list] = {}  # rounded size -> free raw blocks
        self.pinned_bytes = 0  # page-locked bytes ever allocated (a pool never gives them back)
        self.pinned_allocs = 0
        self.pinned_live = weakref.WeakValueDictionary()  # address -> block handed out
        self.d2h_bytes = 0
        self.log: list[tuple] = []  # ("launch", name, grid) / ("copy", bytes)
        self.null = _Stream(self, null=True)
        self.current = [self.null]

    # ---- ordering ----
    def op(self, stream) -> int:
        self.issued[stream.sid] = self.issued.get(stream.sid, 0) + 1
        return self.issued[stream.sid]

    def finished(self, sid: int, seq: int) -> bool:
        return self.done.get(sid, 0) >= seq

    def ordered(self, reader, sid: int, seq: int) -> bool:
        """Is work `seq` of stream `sid` ordered before what `reader` does next?"""
        if sid == reader.sid or self.finished(sid, seq) or reader.seen.get(sid, 0) >= seq:
            return True
        other = self.streams[sid]
        # The legacy default stream and blocking streams wait for one another.
        return (other.null and not reader.non_blocking) or (reader.null and not other.non_blocking)

    def host_waited(self, sid: int, seq: int, seen: dict, what: str, sleeps: bool) -> None:
        self.waits.append((what, sleeps))
        self.done[sid] = max(self.done.get(sid, 0), seq)
        for s, q in seen.items():
            self.done[s] = max(self.done.get(s, 0), q)

    # ---- memory ----
    def track(self, root: np.ndarray, stream) -> "_Alloc":
        rec = _Alloc(self, stream.sid, root.ctypes.data, root.nbytes)
        self.allocs[id(root)] = rec
        weakref.finalize(root, rec.freed, id(root))
        return rec

    def record_of(self, a):
        root = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        return self.allocs.get(id(root))

    def record_at(self, ptr: int):
        for rec in self.allocs.values():
            if rec.ptr <= ptr < rec.ptr + max(rec.nbytes, 1):
                return rec
        return None

    def read(self, a, stream, what: str) -> None:
        rec = self.record_of(a) if isinstance(a, np.ndarray) else self.record_at(a)
        if rec is None or rec.writer is None:
            return
        sid, seq = rec.writer
        if not self.ordered(stream, sid, seq):
            raise Unordered(f"{what} on stream {stream.sid} reads data written by operation {seq} of stream {sid} "
                            f"with nothing ordering it after that write")

    def use(self, a, stream, write: bool) -> None:
        rec = self.record_of(a) if isinstance(a, np.ndarray) else self.record_at(a)
        if rec is not None:
            seq = self.issued.get(stream.sid, 0)
            rec.uses[stream.sid] = seq
            if write:
                rec.writer = (stream.sid, seq)

    def in_flight(self) -> dict[int, int]:
        """Streams with work the host has not waited for: {stream id: operations not known done}."""
        return {s: n - self.done.get(s, 0) for s, n in self.issued.items() if n > self.done.get(s, 0)}


DEV: Device | None = None


class _Alloc:
    def __init__(self, dev, sid, ptr, nbytes):
        self.dev, self.sid, self.ptr, self.nbytes = dev, sid, ptr, nbytes
        self.writer = None
        self.uses: dict[int, int] = {}

    def freed(self, key) -> None:
        """Back to the (stream-ordered) pool: safe once other streams' work on it is done."""
        dev = self.dev
        dev.allocs.pop(key, None)
        late = {s: q for s, q in self.uses.items() if s != self.sid and not dev.finished(s, q)}
        if late:
            dev.faults.append(f"device buffer of {self.nbytes} bytes (allocated on stream {self.sid}) returned to the "
                              f"pool while streams {sorted(late)} may still use it")


class ndarray(np.ndarray):
    """Device array: `.data.ptr` is the host address, `.get()`/`.set()` copy."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)

    def get(self):
        s = DEV.current[-1]
        DEV.read(self, s, ".get()")
        DEV.host_waited(s.sid, DEV.issued.get(s.sid, 0), dict(s.seen), ".get()", False)  # a synchronous copy
        return np.array(self)

    def set(self, a):
        s = DEV.current[-1]
        DEV.op(s)
        self[...] = np.asarray(a).reshape(self.shape)
        DEV.use(self, s, write=True)

    def fill(self, v):
        s = DEV.current[-1]
        DEV.op(s)
        super().fill(v)
        DEV.use(self, s, write=True)


def _dev(a, write=True):
    """A fresh device array holding `a`, allocated (and, with `write`, written) on the current stream."""
    root = np.ascontiguousarray(a)
    if root.base is not None:
        root = root.copy()
    s = DEV.current[-1]
    DEV.track(root, s)
    out = root.view(ndarray)
    if write:
        DEV.op(s)
        DEV.use(out, s, write=True)
    return out


class _Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.block = block
        self.sid, self.seq, self.seen = 0, 0, {}

    def record(self, stream=None):
        stream = stream or DEV.current[-1]
        self.sid, self.seq = stream.sid, DEV.issued.get(stream.sid, 0)
        self.seen = dict(stream.seen)

    def synchronize(self):
        DEV.host_waited(self.sid, self.seq, self.seen, "Event.synchronize", self.block)

    @property
    def done(self):
        return DEV.finished(self.sid, self.seq)


class _Stream:
    def __init__(self, dev=None, null=False, non_blocking=False, ptr=None):
        dev = dev or DEV
        self.null, self.non_blocking = null, non_blocking
        self.sid = 0 if null else len(dev.streams)
        self.ptr = 0 if null else 0x5000 + self.sid
        self.seen: dict[int, int] = {}  # stream id -> last operation of it this stream is ordered after
        dev.streams[self.sid] = self
        self.dev = dev

    def __enter__(self):
        self.dev.current.append(self)
        return self

    def __exit__(self, *exc):
        self.dev.current.pop()

    def use(self):
        self.dev.current[-1:] = [self]
        return self

    def record(self, event=None):
        event = event or _Event()
        event.record(self)
        return event

    def wait_event(self, event):
        self.seen[event.sid] = max(self.seen.get(event.sid, 0), event.seq)
        for s, q in event.seen.items():
            self.seen[s] = max(self.seen.get(s, 0), q)

    def synchronize(self):
        self.dev.host_waited(self.sid, self.dev.issued.get(self.sid, 0), dict(self.seen), "Stream.synchronize", False)


def _stream_at(ptr: int):
    for s in DEV.streams.values():
        if s.ptr == ptr:
            return s
    raise AssertionError(f"no stream at {ptr:#x}")


class _Device:
    id = 0

    def __init__(self, *args):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def synchronize(self):
        DEV.waits.append(("Device.synchronize", False))
        DEV.done.update(DEV.issued)


class _Pool:
    def total_bytes(self):
        return 0

    def free_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


class _PinnedBlock:
    """One handed-out pinned block: numpy arrays made from it keep it alive; when the last goes,
    the raw memory returns to the pool's free list for its rounded size."""

    def __init__(self, dev, raw):
        self.raw = raw
        self.__array_interface__ = raw.__array_interface__
        self.uses: dict[int, int] = {}
        dev.pinned_live[raw.ctypes.data] = self
        weakref.finalize(self, _pinned_freed, dev, raw, self.uses)


def _pinned_freed(dev, raw, uses) -> None:
    dev.pinned_live.pop(raw.ctypes.data, None)
    late = {s: q for s, q in uses.items() if not dev.finished(s, q)}
    if late:
        dev.faults.append(f"pinned buffer of {raw.nbytes} bytes returned to the pool while a copy on streams "
                          f"{sorted(late)} may still write into it")
    dev.pinned_free.setdefault(raw.nbytes, []).append(raw)


def alloc_pinned(nbytes: int) -> _PinnedBlock:
    size = max(-(-int(nbytes) // PINNED_UNIT) * PINNED_UNIT, PINNED_UNIT)
    free = DEV.pinned_free.get(size)
    if free:
        raw = free.pop()
    else:
        raw = np.empty(size, np.uint8)
        DEV.pinned_bytes += size
        DEV.pinned_allocs += 1
    return _PinnedBlock(DEV, raw)


def empty_pinned(shape, dtype=np.uint8):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.asarray(alloc_pinned(n))[:n].view(dtype).reshape(shape)


def _pinned_at(ptr: int):
    for addr, block in DEV.pinned_live.items():
        if addr <= ptr < addr + block.raw.nbytes:
            return block
    return None


def memcpy_async(dst, src, n, kind, stream_ptr):
    assert kind == 2, "the backend copies device to host only"
    stream = _stream_at(stream_ptr)
    DEV.read(src, stream, "memcpyAsync")
    seq = DEV.op(stream)
    block = _pinned_at(dst)
    assert block is not None, "an asynchronous copy into pageable memory is synchronous on a device"
    block.uses[stream.sid] = seq
    rec = DEV.record_at(src)
    if rec is not None:
        rec.uses[stream.sid] = seq
    DEV.d2h_bytes += n
    DEV.log.append(("copy", n))
    ctypes.memmove(dst, src, n)


def memcpy(dst, src, n, kind):
    DEV.read(src, DEV.null, "memcpy")
    DEV.waits.append(("memcpy", False))
    ctypes.memmove(dst, src, n)


def make_cupy():
    """(cupy, cupyx) module stand-ins; `cupy.fake` is the Device keeping the books."""
    global DEV
    DEV = Device()
    cp = types.ModuleType("cupy")
    cp.fake = DEV
    cp.ndarray = ndarray
    for name in ("uint8", "uint16", "uint32", "int32", "uint64", "float32"):
        setattr(cp, name, getattr(np, name))
    cp.asarray = lambda a: _dev(np.array(a))
    # Fresh device memory is garbage, not zeros: code that relies on zeros must clear it.
    cp.empty = lambda shape, dtype=np.float32: _dev(np.full(shape, 0xA5, dtype) if np.dtype(dtype).kind in "ui"
                                                    else np.full(shape, np.nan, dtype), write=False)
    cp.zeros = lambda shape, dtype=np.float32: _dev(np.zeros(shape, dtype))
    cp.where = lambda c, *a: _read_then(lambda: np.where(np.asarray(c), *a), c)
    cp.cumsum = lambda a, **k: _read_then(lambda: np.cumsum(np.asarray(a), **k), a)
    cp.concatenate = lambda arrays, **k: _dev(np.concatenate(arrays, **k))
    cp.empty_like = lambda a: cp.empty(a.shape, a.dtype)
    cp.get_default_memory_pool = _Pool
    runtime = types.SimpleNamespace(
        memcpyAsync=memcpy_async, memcpy=memcpy,
        memGetInfo=lambda: (8 << 30, 16 << 30), getDeviceCount=lambda: 1,
        getDeviceProperties=lambda i: {"name": b"stand-in (NumPy)", "major": 9, "minor": 0})
    memory = types.SimpleNamespace(OutOfMemoryError=type("OutOfMemoryError", (MemoryError,), {}))
    _Stream.null = DEV.null
    cp.cuda = types.SimpleNamespace(Stream=_Stream, Event=_Event, Device=_Device, runtime=runtime, memory=memory,
                                    get_current_stream=lambda: DEV.current[-1], alloc_pinned_memory=alloc_pinned,
                                    get_elapsed_time=lambda a, b: 1.0)
    cupyx = types.ModuleType("cupyx")
    cupyx.empty_pinned = empty_pinned
    return cp, cupyx


def _read_then(fn, *inputs):
    s = DEV.current[-1]
    for a in inputs:
        if isinstance(a, ndarray):
            DEV.read(a, s, "an array operation")
            DEV.use(a, s, write=False)
    return _dev(fn())


class FakeKernels:
    """get_kernel(name, source, defines) stand-in. composite_batch: the NumPy backend on the
    layer set of the backend last prepared (`watch`), every layer from the combos (so a cached
    prefix is not needed for the right pixels; prefix builds, mode 1, do nothing); filter_rows:
    encode.filter_rows; scale_nearest: the kernel's own index formula per output pixel (not
    resize.py's np.repeat, which the tests compare it with), over exactly the threads it launches;
    deflate_segments / gather_segments: the deflate kernel's host build (the variant the
    defines ask for), laid out as on the GPU."""

    OUTPUTS = {"composite_batch": (12, 13, 14), "composite_batch_blend": (12, 13, 14), "filter_rows": (6,),
               "scale_nearest": (7,),
               "deflate_segments": (6, 7, 8, 9), "gather_segments": (5,)}  # argument positions written

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
              "scale_nearest": self.scale,
              "deflate_segments": self.deflate, "gather_segments": self.gather}[name]
        threads, stage = gd.THREADS, "DEFLATE_STAGE=1" in defines
        for d in defines:
            if d.startswith("DEFLATE_THREADS="):
                threads = int(d.split("=", 1)[1])
        if (threads, stage) not in self.libs:
            self.libs[threads, stage] = gd.build_host_library(build_dir(), threads, stage)

        def kernel(grid, block, args):
            self.calls[name] = self.calls.get(name, 0) + 1
            if name == "deflate_segments":
                assert block == (threads,), "launched with another block size than the variant's"
                self.lib = self.libs[threads, stage]
            if max(grid[1:], default=1) > MAX_GRID_YZ:
                raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: grid {grid} of {name} over the y/z limit {MAX_GRID_YZ}")
            stream = DEV.current[-1]
            arrays = [a for a in args if isinstance(a, ndarray)]
            for a in arrays:
                DEV.read(a, stream, f"kernel {name}")
            DEV.op(stream)
            DEV.log.append(("launch", name, tuple(grid)))
            fn(grid, args) if name != "scale_nearest" else fn(grid, block, args)
            for i, a in enumerate(args):
                if isinstance(a, ndarray):
                    DEV.use(a, stream, write=i in self.OUTPUTS[name])

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

    def scale(self, grid, block, args):
        """scale_nearest as written in kernels/composite.cu: thread p of item b (p < out_npix)
        reads rgba[b * npix + (oy / k) * width + ox / k] and writes c bytes at out + b * stride + p * c.
        Out-of-bounds reads or writes (a wrong stride or grid) raise here as on a device they corrupt."""
        out8, flags, rgb_ok, width, height, k, stride, out = args
        w, h, k, stride = int(width), int(height), int(k), int(stride)
        threads = grid[0] * block[0]
        out_w, out_npix = w * k, w * h * k * k
        assert threads >= out_npix, f"scale_nearest launched {threads} threads for {out_npix} output pixels"
        p = np.arange(out_npix, dtype=np.int64)
        oy, ox = p // out_w, p % out_w
        src = (oy // k) * w + ox // k
        flat_out = np.asarray(out).reshape(-1)
        for b in range(grid[1]):
            c = 3 if (int(rgb_ok) and not flags[b]) else 4
            assert stride >= out_npix * c and (b + 1) * stride <= flat_out.size, "scale_nearest writes out of bounds"
            px = np.asarray(out8[b]).reshape(-1, 4)[src, :c]
            flat_out[b * stride: b * stride + out_npix * c] = px.reshape(-1)

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


def install_everywhere() -> None:
    """Make the stand-in the `cupy` of this whole process, kernels and all (see the plugin hook)."""
    import importlib.util
    import pathlib
    import sys

    from gpucomp.render import cuda_backend, kernels

    cp, cupyx = make_cupy()
    sys.modules["cupy"], sys.modules["cupyx"] = cp, cupyx
    fake = FakeKernels(gd.build_host_library(pathlib.Path(build_dir())))
    kernels.get_kernel = fake
    prepare = cuda_backend.CudaBackend.prepare

    def watched(self, ls):
        prepare(self, ls)
        fake.prepared(self, ls)

    cuda_backend.CudaBackend.prepare = watched
    find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a: object() if name == "cupy" else find_spec(name, *a)


def pytest_load_initial_conftests(early_config, parser, args):
    """As a plugin, before conftest.py decides whether there is a GPU: the GPU tests run on the
    stand-in, which catches their Python and orchestration errors before a device run (it says
    nothing of the kernels on a device):

        PYTHONPATH=tests python -m pytest -p fake_cupy tests/render/test_cuda.py
    """
    install_everywhere()
