"""Deflate on the GPU (kernels/deflate.cu), its coding logic tested without a GPU: the kernel's
phases built as host C++ (one thread at a time) and assembled by gpucomp.encode.gpu_deflate exactly
as the CUDA backend assembles them. Every stream must inflate with zlib to the input."""
import ctypes
import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpucomp.encode import gpu_deflate as gd
from gpucomp.encode.png import encode_deflated, filter_rows
from gpucomp.layers.layerset import load_layers
from gpucomp.plan.sampler import make_plan
from gpucomp.render.numpy_backend import NumpyBackend

host_stream, segment_outputs = gd.host_stream, gd.host_segments


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    built = gd.build_host_library(tmp_path_factory.mktemp("hostdeflate"))
    if built is None:
        pytest.skip("no C++ compiler")
    return built


def test_constants_match_the_kernel(lib):
    out = (ctypes.c_uint32 * 3)()
    assert lib.deflate_constants(out) == 3
    assert list(out) == [gd.SEG, gd.SLOT, gd.THREADS]


def pattern(kind: str, n: int, rng) -> np.ndarray:
    if kind == "zeros":
        return np.zeros(n, np.uint8)
    if kind == "random":  # incompressible: stored blocks
        return rng.integers(0, 256, n, dtype=np.uint8)
    if kind == "small":  # few symbols, short runs
        return rng.integers(0, 4, n, dtype=np.uint8)
    if kind == "skewed":  # geometric symbol frequencies: deep Huffman trees to cap at 15 bits
        return np.minimum(rng.geometric(0.45, n) - 1, 255).astype(np.uint8)
    if kind == "mixed":  # runs, noise and repeats in one buffer
        x = rng.integers(0, 256, n, dtype=np.uint8)
        x[n // 4: n // 2] = 7
        x[n // 2:] = np.resize(x[: max(1, n // 8)], n - n // 2)
        return x
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["zeros", "random", "small", "skewed", "mixed"])
@pytest.mark.parametrize("n", [1, 2, 3, 259, gd.SEG - 1, gd.SEG, gd.SEG + 1, 3 * gd.SEG + 7])
def test_round_trip(lib, kind, n):
    data = pattern(kind, n, np.random.default_rng(n))
    z = host_stream(lib, data, width=max(1, n // 7), c=3)
    assert zlib.decompress(z) == data.tobytes()  # zlib also checks the Adler-32


def test_fibonacci_frequencies_need_the_length_limit(lib):
    """Symbol k appears fib(k) times in one segment: an unlimited Huffman tree would be ~21 deep."""
    fib = [1, 1]
    while sum(fib) + fib[-1] + fib[-2] < gd.SEG - 64:
        fib.append(fib[-1] + fib[-2])
    data = np.repeat(np.arange(len(fib), dtype=np.uint8) * 11, fib)
    data = np.random.default_rng(5).permutation(data)
    assert len(fib) > 16
    z = host_stream(lib, data, width=1000, c=4)
    assert zlib.decompress(z) == data.tobytes()
    assert len(z) < data.size  # still Huffman-coded, not stored


def test_random_data_falls_back_to_stored_blocks(lib):
    data = pattern("random", 2 * gd.SEG + 100, np.random.default_rng(1))
    _, sizes, _ = segment_outputs(lib, data, 100, 3)
    assert list(sizes) == [gd.SEG + 5, gd.SEG + 5, 105]
    assert zlib.decompress(host_stream(lib, data, 100, 3)) == data.tobytes()


def test_adler32_from_pieces_matches_zlib(lib):
    rng = np.random.default_rng(2)
    items = [rng.integers(0, 256, n, dtype=np.uint8) for n in (5, gd.SEG, 2 * gd.SEG + 3)]
    segs = max(gd.segments(x.size) for x in items)
    pieces = np.zeros((len(items), segs, 2), np.uint32)
    for i, x in enumerate(items):
        _, _, adler = segment_outputs(lib, x, 64, 4)
        pieces[i, :len(adler)] = adler
    got = gd.adler32(pieces, np.array([x.size for x in items]))
    assert [int(v) for v in got] == [zlib.adler32(x.tobytes()) for x in items]


@pytest.mark.parametrize("c", [1, 2, 3, 4])
def test_png_decodes_to_the_pixels(lib, c):
    rng = np.random.default_rng(c)
    h, w = 61, 517  # rows not aligned to segments; a row is 1 + 517 * c bytes
    px = (rng.integers(0, 3, (h, w, c)) * 40 + np.arange(w)[None, :, None] // 9).astype(np.uint8)
    rows = filter_rows(px, "up")
    z = host_stream(lib, rows, w, c)
    adl = int.from_bytes(z[-4:], "big")
    item = gd.Deflated(memoryview(z[2:-6]), adl, w, h, c)
    got = np.asarray(Image.open(io.BytesIO(encode_deflated(item))))
    assert np.array_equal(got.reshape(h, w, c), px)


def test_size_close_to_isal_on_demo_composites(lib, demo_layers):
    """Not a speed test: a coder that stopped finding matches or fell back to stored blocks would
    fail this. Measured: 1.02x ISA-L level 2 here, 1.05x on the 2048x2048 standard workload."""
    from isal import isal_zlib

    ls = load_layers(demo_layers)
    be = NumpyBackend()
    be.prepare(ls)
    ours = isal = 0
    for combo in make_plan([layer.weights for layer in ls.layers], 6, seed=2).combos:
        px = be.composite([combo])[0]
        rows = filter_rows(px, "up")
        z = host_stream(lib, rows, px.shape[1], px.shape[2])
        assert zlib.decompress(z) == rows.tobytes()
        ours += len(z)
        isal += len(isal_zlib.compress(rows.tobytes(), 2))
    assert ours < 1.3 * isal


def test_gpu_preset_without_cuda_deflates_on_the_cpu(demo_layers, tmp_path):
    """The `gpu` preset on the CPU backend is `fast`: ISA-L, the same pixels, said in the log."""
    import gpucomp

    logs = []
    a = gpucomp.run(demo_layers, tmp_path / "gpu", size=6, seed=3, backend="cpu", preset="gpu", log=logs.append)
    b = gpucomp.run(demo_layers, tmp_path / "fast", size=6, seed=3, backend="cpu", preset="fast")
    assert a["deflate"] == b["deflate"] != "gpu"
    assert any("gpu preset needs the CUDA backend" in line for line in logs)
    for n in range(1, 7):
        assert (tmp_path / "gpu/images" / f"{n}.png").read_bytes() == (tmp_path / "fast/images" / f"{n}.png").read_bytes()


def test_backend_glue_with_the_host_build_as_kernels(lib, monkeypatch):
    """The CUDA backend's deflate glue (DeflateBuffers: channels, lengths, launch arguments, the
    exclusive sum, packing, exact-size copy back, Adler-32, Deflated items) on the fake CuPy of
    tests/fake_cupy.py, kernels played by the host build. Opaque items as RGB, others RGBA."""
    import sys

    from gpucomp.render import kernels
    from gpucomp.render.cuda_buffers import DeflateBuffers

    from fake_cupy import FakeKernels, make_cupy

    cp, cupyx = make_cupy()
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    monkeypatch.setattr(kernels, "get_kernel", FakeKernels(lib))
    rng = np.random.default_rng(4)
    h, w, batch = 50, 700, 3  # 50 rows of 2801 bytes: five segments per RGBA item
    px = [rng.integers(0, 5, (h, w, 4), dtype=np.uint8) * 50 for _ in range(batch)]
    px[1][..., 3] = 255  # opaque: written as RGB
    not_opaque = np.array([1, 0, 1], np.int32)
    rows = np.zeros((batch, h * (1 + 4 * w)), np.uint8)
    want = []
    for b, p in enumerate(px):
        p = p if not_opaque[b] else p[..., :3]
        r = filter_rows(p, "up").reshape(-1)
        rows[b, :r.size] = r
        want.append(p)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        dfl = DeflateBuffers(cp, batch, w, h, opaque_rgb=True)
        dfl.launch(1, batch - 1, cp.asarray(rows), cp.asarray(not_opaque))  # a short batch in the second buffer
        sizes, adler = dfl.sizes[1][:batch - 1].get(), dfl.adler[1][:batch - 1].get()
    host, starts = dfl.copy_exact(1, sizes, stream)
    stream.synchronize()
    assert host.nbytes == int(sizes.sum())  # exactly the deflated bytes came back
    items = dfl.items(host, not_opaque[:batch - 1], sizes, adler, starts)
    assert [it.channels for it in items] == [4, 3]
    for item, p in zip(items, want, strict=False):
        got = np.asarray(Image.open(io.BytesIO(encode_deflated(item))))
        assert np.array_equal(got.reshape(p.shape), p)


@pytest.mark.parametrize("threads", [32, 128, 256])
def test_thread_count_variants_round_trip(tmp_path, threads):
    """The kernel variants the benchmark sweeps (DEFLATE_THREADS) are valid coders too."""
    variant = gd.build_host_library(tmp_path, threads)
    if variant is None:
        pytest.skip("no C++ compiler")
    out = (ctypes.c_uint32 * 3)()
    variant.deflate_constants(out)
    assert list(out) == [gd.SEG, gd.SLOT, threads]
    rng = np.random.default_rng(threads)
    for kind in ("mixed", "skewed", "random"):
        data = pattern(kind, 2 * gd.SEG + 999, rng)
        assert zlib.decompress(host_stream(variant, data, 300, 4)) == data.tobytes()


@pytest.mark.parametrize("threads", [64, 256, 32])
def test_staged_variant_writes_the_same_bytes(tmp_path, threads):
    """DEFLATE_STAGE=1 only changes where the input is read from (a window in shared memory, the
    rest from global memory): every stream must be byte-identical to the plain build's. Rows of
    2049 and 32769 bytes put the row-distance candidates inside and beyond the staged window."""
    plain, staged = gd.build_host_library(tmp_path, threads), gd.build_host_library(tmp_path, threads, stage=True)
    if plain is None:
        pytest.skip("no C++ compiler")
    rng = np.random.default_rng(threads + 1)
    for width, c in ((512, 4), (8192, 4), (700, 3)):
        h = 6
        px = (rng.integers(0, 3, (h, width, c)) * 30 + np.arange(width)[None, :, None] // 5).astype(np.uint8)
        rows = filter_rows(px, "up")
        a, b = host_stream(plain, rows, width, c), host_stream(staged, rows, width, c)
        assert a == b
        assert zlib.decompress(b) == rows.tobytes()
    for kind in ("mixed", "skewed", "random", "zeros"):
        data = pattern(kind, 3 * gd.SEG + 77, rng)
        assert host_stream(plain, data, 2000, 3) == host_stream(staged, data, 2000, 3)


@pytest.mark.parametrize("threads,stage", [(64, False), (256, True)])
def test_block_runs_race_free_on_real_threads(tmp_path, lib, threads, stage):
    """The block body on one real thread per CUDA thread (tests/deflate_threads.cpp) under
    ThreadSanitizer: no data race between the phases' barriers, and the same bytes as the
    one-thread-at-a-time build. What the device adds (its memory model, real shared memory) is
    still for tests/render/test_cuda.py."""
    import os
    import shutil
    import subprocess

    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("no g++")
    here = Path(__file__).resolve().parents[1]  # tests/: deflate_threads.cpp
    exe = tmp_path / "deflate_threads"
    r = subprocess.run([cxx, "-std=c++20", "-O1", "-g", "-fsanitize=thread", "-DDEFLATE_HOST", "-DDEFLATE_HOST_THREADS",
                        f"-DDEFLATE_THREADS={threads}", f"-DDEFLATE_STAGE={int(stage)}", "-Wall", "-Werror",
                        "-include", str(here.parent / "kernels" / "deflate.cu"), str(here / "deflate_threads.cpp"),
                        "-o", str(exe)], capture_output=True, text=True)
    if r.returncode and "sanitize" in r.stderr:
        pytest.skip(f"no ThreadSanitizer here: {r.stderr.strip()[:200]}")
    assert r.returncode == 0, r.stderr
    reference = lib if (threads, stage) == (gd.THREADS, False) else gd.build_host_library(tmp_path, threads, stage)
    rng = np.random.default_rng(threads)
    cases = [(pattern(kind, gd.SEG + 777, rng), 700, 3) for kind in ("mixed", "skewed", "random", "zeros")]
    px = (rng.integers(0, 3, (9, 1500, 4)) * 20 + np.arange(1500)[None, :, None] // 7).astype(np.uint8)
    cases.append((filter_rows(px, "up").reshape(-1), 1500, 4))
    args = []
    for i, (data, width, c) in enumerate(cases):
        (tmp_path / f"in{i}").write_bytes(data.tobytes())
        args += [str(tmp_path / f"in{i}"), str(width), str(c), str(tmp_path / f"out{i}")]
    env = {**os.environ, "TSAN_OPTIONS": "halt_on_error=1 exitcode=66"}
    r = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for i, (data, width, c) in enumerate(cases):
        slots, sizes, adler = gd.host_segments(reference, data, width, c)
        raw = np.fromfile(tmp_path / f"out{i}", np.uint8)
        segs = len(sizes)
        got_slots = raw[:segs * gd.SLOT].reshape(segs, gd.SLOT)
        assert np.array_equal(raw[segs * gd.SLOT:segs * gd.SLOT + 4 * segs].view(np.uint32), sizes)
        assert np.array_equal(raw[segs * gd.SLOT + 4 * segs:].view(np.uint32).reshape(segs, 2), adler)
        for k in range(segs):
            assert np.array_equal(got_slots[k, :sizes[k]], slots[k, :sizes[k]])


def test_deflate_kernel_that_cannot_build_falls_back_to_the_cpu(monkeypatch):
    """A compile failure of the deflate kernel (NVRTC, driver) must not stop a run: the backend
    says so and the gpu preset deflates with ISA-L. Runs without CuPy (no __init__)."""
    from gpucomp.encode.png import deflate_engine, get_preset
    from gpucomp.render import kernels
    from gpucomp.render.cuda_backend import CudaBackend

    def fake_get_kernel(name, src="composite.cu", defines=()):
        if src == "deflate.cu":
            raise RuntimeError("nvrtc: boom")

    monkeypatch.setattr(kernels, "get_kernel", fake_get_kernel)
    b = object.__new__(CudaBackend)
    b.fallbacks = []
    assert deflate_engine(get_preset("gpu"), gpu=b.gpu_deflate) == "gpu"
    b.warm(deflate=True)
    assert b.gpu_deflate is False and "boom" in b.fallbacks[0]
    assert deflate_engine(get_preset("gpu"), gpu=b.gpu_deflate) == "isal"
