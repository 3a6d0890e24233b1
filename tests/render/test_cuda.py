"""CUDA backend: byte parity with the NumPy backend. Marked gpu: skipped without CuPy and a device."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gpucomp
from gpucomp.layers.layerset import Layer, LayerSet, Trait
from gpucomp.outdir.stats import Stats
from gpucomp.plan.sampler import make_plan
from gpucomp.render.numpy_backend import NumpyBackend


def random_layerset(seed, h=37, w=53, layers=4, per_layer=3, opaque_base=False):
    rng = np.random.default_rng(seed)
    out = []
    for li in range(layers):
        layer = Layer(folder=f"L{li}", name=f"L{li}")
        for ti in range(per_layer):
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            y1, x1 = rng.integers(y0 + 1, h + 1), rng.integers(x0 + 1, w + 1)
            px = rng.integers(0, 256, (y1 - y0, x1 - x0, 4), dtype=np.uint8)
            px[..., 3] = rng.choice([0, 255, 1, 128, 254, 77], size=px.shape[:2])
            full = False
            if opaque_base and li == 0:
                y0, x0, y1, x1 = 0, 0, h, w
                px = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
                px[..., 3] = 255
                full = True
            layer.traits.append(Trait(f"t{ti}", 1.0, Path(f"t{ti}.png"), (int(y0), int(x0), int(y1), int(x1)), px,
                                      "0", (h, w), full))
        out.append(layer)
    return LayerSet(Path("."), out, w, h)


def cpu_images(ls, combos, opaque_rgb=True):
    b = NumpyBackend(opaque_rgb=opaque_rgb)
    b.prepare(ls)
    return [b.composite([c])[0] for c in combos]


def gpu_images(ls, combos, opaque_rgb=True, **kw):
    from gpucomp.render.cuda_backend import CudaBackend

    b = CudaBackend(opaque_rgb=opaque_rgb, **kw)
    b.prepare(ls)
    got = {}
    for idx, outs in b.render(combos, Stats(), png_filter="none"):
        for i, o in zip(idx.tolist(), outs, strict=True):
            got[i] = np.array(o)
    b.final_stats = b.stats()  # close() drops the cache and its counts
    b.close()
    return [got[i] for i in range(len(combos))], b


@pytest.mark.gpu
@pytest.mark.parametrize("opaque_base", [False, True])
@pytest.mark.parametrize("opaque_rgb", [False, True])
@pytest.mark.parametrize("width", [53, 64])  # scalar edge groups; 16-byte groups throughout
def test_gpu_matches_cpu_on_random_layers(opaque_base, opaque_rgb, width):
    ls = random_layerset(11 + opaque_base, w=width, opaque_base=opaque_base)
    combos = make_plan([layer.weights for layer in ls.layers], 40, seed=4).combos
    want = cpu_images(ls, combos, opaque_rgb)
    got, _ = gpu_images(ls, combos, opaque_rgb, batch_size=7)
    for w, g in zip(want, got, strict=True):
        assert w.shape == g.shape and np.array_equal(w, g)


@pytest.mark.gpu
def test_cache_on_off_identical_with_evictions_and_streaming():
    ls = random_layerset(5, layers=5, per_layer=2, opaque_base=True)
    combos = make_plan([layer.weights for layer in ls.layers], 32, seed=9).combos
    off, _ = gpu_images(ls, combos, cache="off", batch_size=5)
    on, b = gpu_images(ls, combos, cache="on", batch_size=5)
    assert b.final_stats["cache"]["hits"] > 0
    # a budget that holds only the traits of about one item and two cached prefixes
    from gpucomp.render.cuda_buffers import pad_box

    sizes = [pad_box(t.pixels, t.box, ls.width)[0].nbytes for layer in ls.layers for t in layer.traits]
    offs = np.cumsum([0] + [len(layer.traits) for layer in ls.layers[:-1]])
    per_item = max(sum(sizes[o + c] for o, c in zip(offs, row, strict=True)) for row in combos)
    assert sum(sizes) > per_item + 16
    npix = ls.width * ls.height
    item_bytes = npix * 4 + ls.height * (1 + 4 * ls.width)
    budget = per_item + 16 + 4 * 5 * item_bytes + 2 * npix * 16
    tiny, b2 = gpu_images(ls, combos, cache="on", batch_size=5, vram_budget=str(budget), trait_budget=per_item + 16)
    st = b2.final_stats
    assert st["prefetch"]["misses"] > 0 and not st["traits_resident"]
    assert st["cache"]["evictions"] > 0
    for a, c, d in zip(off, on, tiny, strict=True):
        assert np.array_equal(a, c) and np.array_equal(a, d)


@pytest.mark.gpu
def test_out_of_memory_falls_back_to_cpu(monkeypatch):
    import cupy

    from gpucomp.render import cuda_backend

    ls = random_layerset(3, opaque_base=True)
    combos = make_plan([layer.weights for layer in ls.layers], 12, seed=1).combos

    def boom(self, *a, **k):
        raise cupy.cuda.memory.OutOfMemoryError(1 << 40, 0, 0)
        yield  # pragma: no cover

    monkeypatch.setattr(cuda_backend.CudaBackend, "_render_batches", boom)
    with pytest.warns(RuntimeWarning, match="CPU backend"):
        got, b = gpu_images(ls, combos, batch_size=4)
    assert any("batch size" in f for f in b.final_stats["fallbacks"])
    for w, g in zip(cpu_images(ls, combos), got, strict=True):
        assert np.array_equal(w, g)


@pytest.mark.gpu
@pytest.mark.parametrize("preset", ["fast", "balanced"])
def test_end_to_end_png_files_identical(demo_layers, tmp_path, preset):
    a = gpucomp.run(demo_layers, tmp_path / "cpu", size=25, seed=3, backend="cpu", preset=preset)
    b = gpucomp.run(demo_layers, tmp_path / "gpu", size=25, seed=3, backend="cuda", preset=preset, batch_size=4)
    assert a["backend"]["backend"] == "cpu" and b["backend"]["backend"] == "cuda"
    for n in range(1, 26):
        assert (tmp_path / "cpu/images" / f"{n}.png").read_bytes() == (tmp_path / "gpu/images" / f"{n}.png").read_bytes()


# ---- nearest copies ([[output.sizes]] scale = k) made on the device: byte parity with resize.py -----
@pytest.mark.gpu
@pytest.mark.parametrize("opaque_base", [False, True])  # RGBA and (with opaque_rgb) RGB items in one batch
@pytest.mark.parametrize("opaque_rgb", [False, True])
def test_gpu_nearest_copies_equal_the_cpu_resize(opaque_base, opaque_rgb):
    """scale_nearest on the device, odd canvas (37x53) and scales 2, 3 and 32, batches of 7 with a
    short last one: every copy equals resize.py's np.repeat of the CPU backend's composite."""
    from gpucomp.encode.rendered import SizedPixels
    from gpucomp.encode.resize import Size, resize
    from gpucomp.render.cuda_backend import CudaBackend

    ls = random_layerset(21 + opaque_base, opaque_base=opaque_base)
    combos = make_plan([layer.weights for layer in ls.layers], 16, seed=4).combos
    want = cpu_images(ls, combos, opaque_rgb)
    sizes = tuple(Size(f"x{k}", scale=k, filter="nearest") for k in (2, 3, 32))
    b = CudaBackend(opaque_rgb=opaque_rgb, batch_size=7)
    b.prepare(ls)
    got = {}
    for idx, outs in b.render(combos, Stats(), png_filter="none", sizes=sizes):
        for i, o in zip(idx.tolist(), outs, strict=True):
            assert isinstance(o, SizedPixels)
            got[i] = (np.array(o.pixels), {k: np.array(v) for k, v in o.copies.items()})
    assert b.stats()["device_sizes"] == ["x2", "x3", "x32"] and not b.fallbacks
    b.close()
    for i, w in enumerate(want):
        px, copies = got[i]
        assert np.array_equal(px, w)
        for size in sizes:
            assert np.array_equal(copies[size.name], resize(w, size)), (i, size.name)


@pytest.mark.gpu
def test_gpu_nearest_sizes_end_to_end_files_identical(demo_layers, tmp_path):
    """A pixel-art run (x2 PNG and WebP, x5 PNG, a Lanczos thumbnail): every file of the CUDA run,
    copies made on the device, equals the CPU run's byte for byte."""
    sizes = [{"name": "x2", "scale": 2}, {"name": "x5", "scale": 5, "format": "png"}, {"name": "thumb", "width": 40}]
    kw = dict(size=12, seed=3, formats=["png", "webp"], sizes=sizes)
    gpucomp.run(demo_layers, tmp_path / "cpu", backend="cpu", **kw)
    b = gpucomp.run(demo_layers, tmp_path / "gpu", backend="cuda", batch_size=5, **kw)
    assert b["backend"]["device_sizes"] == ["x2", "x5"]
    names = [p.relative_to(tmp_path / "cpu") for p in sorted((tmp_path / "cpu/images").rglob("*.*"))]
    assert len(names) == 12 * 7  # png, webp; x2 png, webp; x5 png; thumb png, webp
    for name in names:
        assert (tmp_path / "cpu" / name).read_bytes() == (tmp_path / "gpu" / name).read_bytes(), name


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_kernels_compile_for_sm90(tmp_path):
    src = Path(__file__).resolve().parents[2] / "kernels"
    for cu in src.glob("*.cu"):
        r = subprocess.run(["nvcc", "-arch=sm_90", "--fmad=false", "-c", str(cu), "-o", str(tmp_path / "k.o")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


# ---- blend modes and opacity: byte parity with the NumPy backend ----------------------------------
def blended_layerset(seed, mode, opaque_base, w=53, opacities=(1.0, 0.6, 0.35, 1.0)):
    """random_layerset with layers 1.. in `mode` at the given opacities; layer 2 gets an opaque
    full-canvas trait (blended, it hides nothing) and layer 3 a full-canvas semi-transparent one."""
    ls = random_layerset(seed, w=w, layers=1 + len(opacities), per_layer=2, opaque_base=opaque_base)
    rng = np.random.default_rng(seed + 1000)
    h = ls.height
    for li, op in enumerate(opacities, 1):
        ls.layers[li].blend, ls.layers[li].opacity = mode, op
    full = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    full[..., 3] = 255
    ls.layers[2].traits[0] = Trait("full", 1.0, Path("full.png"), (0, 0, h, w), full, "0", (h, w), True)
    semi = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    semi[..., 3] = rng.choice([0, 1, 77, 128, 200, 254, 255], size=(h, w))
    ls.layers[3].traits[0] = Trait("semi", 1.0, Path("semi.png"), (0, 0, h, w), semi, "0", (h, w), False)
    return ls


BLEND_MODES_ALL = ("normal", "multiply", "screen", "overlay", "darken", "lighten", "color-dodge", "color-burn",
                   "hard-light", "soft-light", "difference", "exclusion", "additive")


@pytest.mark.gpu
@pytest.mark.parametrize("width", [53, 64])
@pytest.mark.parametrize("opaque_base", [False, True])
@pytest.mark.parametrize("mode", BLEND_MODES_ALL)
def test_gpu_matches_cpu_with_blend_modes(mode, opaque_base, width):
    ls = blended_layerset(31 + BLEND_MODES_ALL.index(mode), mode, opaque_base, w=width)
    combos = make_plan([layer.weights for layer in ls.layers], 24, seed=2).combos
    for opaque_rgb in (False, True):
        want = cpu_images(ls, combos, opaque_rgb)
        got, b = gpu_images(ls, combos, opaque_rgb, batch_size=5)
        assert b.blending  # opacity < 1 somewhere: the blend kernel
        for w, g in zip(want, got, strict=True):
            assert w.shape == g.shape and np.array_equal(w, g)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["normal", "multiply", "soft-light", "color-dodge"])
def test_gpu_blend_prefix_cache_on_off_identical(mode):
    ls = blended_layerset(7, mode, opaque_base=True, opacities=(0.5, 1.0, 0.8, 1.0))
    combos = make_plan([layer.weights for layer in ls.layers], 32, seed=9).combos
    off, _ = gpu_images(ls, combos, cache="off", batch_size=5)
    on, b = gpu_images(ls, combos, cache="on", batch_size=5)
    assert b.final_stats["cache"]["hits"] > 0
    for c, a, o in zip(cpu_images(ls, combos), off, on, strict=True):
        assert np.array_equal(c, a) and np.array_equal(c, o)


@pytest.mark.gpu
def test_gpu_plain_stacks_use_the_plain_kernel():
    ls = random_layerset(3, opaque_base=True)
    for layer in ls.layers:
        layer.blend, layer.opacity = "normal", 1.0
    _, b = gpu_images(ls, make_plan([layer.weights for layer in ls.layers], 4, seed=1).combos)
    assert not b.blending
    ls.layers[1].opacity = 0.5
    _, b = gpu_images(ls, make_plan([layer.weights for layer in ls.layers], 4, seed=1).combos)
    assert b.blending


STACKS_TOML = """
[collection]
shuffle = true
[[stacks]]
size = 9
layers = ["01-Background", "02-Body", { folder = "03-Clothes", blend = "multiply", opacity = 0.7 }]
[[stacks]]
size = 7
layers = ["01-Background", "02-Body", "03-Clothes", { folder = "04-Eyes", blend = "screen" }]
"""


@pytest.mark.gpu
def test_gpu_stacks_extend_and_rerender_match_cpu(demo_layers, tmp_path):
    """Several stacks (the backend is prepared once per stack), blends, then an extension."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(STACKS_TOML)
    for backend in ("cpu", "cuda"):
        out = tmp_path / backend
        gpucomp.run(demo_layers, out, cfg, seed=5, backend=backend, batch_size=3)
        for _ in gpucomp.extend(out, 4, backend=backend):
            pass
    files = sorted(p.name for p in (tmp_path / "cpu/images").iterdir())
    assert len(files) == 20
    for name in files:
        assert (tmp_path / "cpu/images" / name).read_bytes() == (tmp_path / "cuda/images" / name).read_bytes()


# ---- deflate on the GPU (the `gpu` preset) ------------------------------------------------------
@pytest.fixture(scope="module")
def host_deflate(tmp_path_factory):
    """The deflate kernel built for the CPU, or None without a C++ compiler (the device check
    still decodes every PNG; only the byte comparison with the host build is left out)."""
    from gpucomp.encode.gpu_deflate import build_host_library

    return build_host_library(tmp_path_factory.mktemp("hostdeflate"))


@pytest.mark.gpu
@pytest.mark.parametrize("opaque_rgb", [False, True])
@pytest.mark.parametrize("shape", [(37, 53), (301, 219)])  # one segment; several, rows across them
def test_gpu_deflate_is_the_host_build_bit_for_bit(host_deflate, opaque_rgb, shape):
    """The kernel on the device writes exactly the bytes its host build writes, and the PNG
    decodes to the NumPy backend's pixels."""
    import io

    from PIL import Image

    from gpucomp.encode.gpu_deflate import host_stream
    from gpucomp.encode.png import encode_deflated, filter_rows
    from gpucomp.render.cuda_backend import CudaBackend

    h, w = shape
    ls = random_layerset(11, h=h, w=w, opaque_base=True)
    combos = make_plan([layer.weights for layer in ls.layers], 10, seed=2).combos
    want = cpu_images(ls, combos, opaque_rgb=opaque_rgb)
    b = CudaBackend(opaque_rgb=opaque_rgb, batch_size=4)
    b.prepare(ls)
    seen = 0
    for idx, outs in b.render(combos, Stats(), "up", deflate=True):
        for i, item in zip(idx.tolist(), outs, strict=True):
            px = want[i]
            assert item.channels == px.shape[2]
            if host_deflate is not None:
                assert item.idat() == host_stream(host_deflate, filter_rows(px, "up"), w, px.shape[2])
            got = np.asarray(Image.open(io.BytesIO(encode_deflated(item))))
            assert np.array_equal(got.reshape(px.shape), px)
            seen += 1
    b.close()
    assert seen == len(combos)


@pytest.mark.gpu
def test_gpu_preset_end_to_end_same_pixels(demo_layers, tmp_path):
    from PIL import Image

    a = gpucomp.run(demo_layers, tmp_path / "cpu", size=25, seed=3, backend="cpu", preset="fast")
    b = gpucomp.run(demo_layers, tmp_path / "gpu", size=25, seed=3, backend="cuda", preset="gpu", batch_size=4)
    assert b["deflate"] == "gpu" and a["deflate"] != "gpu"
    for n in range(1, 26):
        with Image.open(tmp_path / "cpu/images" / f"{n}.png") as x, Image.open(tmp_path / "gpu/images" / f"{n}.png") as y:
            assert x.mode == y.mode and np.array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.gpu
@pytest.mark.parametrize("threads,stage", [(64, False), (32, False), (256, False), (64, True), (256, True)])
def test_gpu_deflate_kernel_on_synthetic_rows(tmp_path, threads, stage):
    """DeflateBuffers on the device against the host build, at the edges: width 8192 (row
    distances near and past deflate's 32 KiB window), incompressible rows (stored blocks), all
    zeros, an RGB item's shorter length, a last partial segment, and the kernel variants."""
    import zlib

    import cupy as cp

    from gpucomp.encode.gpu_deflate import build_host_library, host_stream
    from gpucomp.render.cuda_buffers import DeflateBuffers

    lib = build_host_library(tmp_path, threads)
    h, w = 5, 8192
    rng = np.random.default_rng(threads)
    not_opaque = np.array([1, 0, 1, 0], np.int32)
    rows = np.zeros((4, h * (1 + 4 * w)), np.uint8)
    lengths = [h * (1 + w * (4 if f else 3)) for f in not_opaque]
    rows[0, :lengths[0]] = rng.integers(0, 256, lengths[0], dtype=np.uint8)  # stored blocks
    # rows[1]: zeros (RGB length)
    stripes = (np.arange(lengths[2]) // 7 % 5 * 3).astype(np.uint8)
    stripes[::97] = rng.integers(0, 256, stripes[::97].size, dtype=np.uint8)
    rows[2, :lengths[2]] = stripes
    rows[3, :lengths[3]] = np.minimum(rng.geometric(0.3, lengths[3]) - 1, 255).astype(np.uint8)
    dfl = DeflateBuffers(cp, 4, w, h, opaque_rgb=True, threads=threads, stage=stage)
    flags = cp.asarray(not_opaque)
    dfl.launch(1, 4, cp.asarray(rows), flags)
    cp.cuda.Device().synchronize()
    stream = cp.cuda.Stream(non_blocking=True)
    sizes, adler = dfl.sizes[1][:4].get(), dfl.adler[1][:4].get()
    host, starts = dfl.copy_exact(1, sizes, stream)
    stream.synchronize()
    assert host.nbytes == int(sizes.sum())  # exactly the deflated bytes came back
    items = dfl.items(host, not_opaque, sizes, adler, starts)
    for b, item in enumerate(items):
        data = rows[b, :lengths[b]]
        assert item.channels == (4 if not_opaque[b] else 3)
        assert zlib.decompress(item.idat()) == data.tobytes()
        if lib is not None:
            assert item.idat() == host_stream(lib, data, w, item.channels)


@pytest.mark.gpu
@pytest.mark.parametrize("deflate", [False, True])
def test_gpu_render_closed_mid_run_then_the_next_matches_cpu(deflate):
    """A render closed after its first batch (three batches in flight) waits for the device before
    its buffers go back to the pools; the next render on the same backend (reusing those blocks)
    still writes the CPU's pixels. Four batches, so later ones were queued when it closed."""
    import io

    from PIL import Image

    from gpucomp.encode.png import encode_deflated
    from gpucomp.render.cuda_backend import CudaBackend

    ls = random_layerset(21, h=64, w=96, opaque_base=True)
    combos = make_plan([layer.weights for layer in ls.layers], 16, seed=5).combos
    want = cpu_images(ls, combos)
    b = CudaBackend(batch_size=4)
    b.prepare(ls)
    run = b.render(combos, Stats(), "up", deflate=deflate)
    next(run)
    run.close()
    seen = 0
    for idx, outs in b.render(combos, Stats(), "up", deflate=deflate):
        for i, o in zip(idx.tolist(), outs, strict=True):
            if deflate:
                got = np.asarray(Image.open(io.BytesIO(encode_deflated(o))))
            else:
                got = o.rows[:, 1:].reshape(o.height, o.width, o.channels).copy()
                for y in range(1, o.height):  # undo the Up filter
                    got[y] += got[y - 1]
            assert np.array_equal(got.reshape(want[i].shape), want[i]), i
            seen += 1
    b.close()
    assert seen == len(combos)
