"""The CUDA backend's orchestration on any machine: CuPy replaced by tests/fake_cupy.py (NumPy
arrays for device arrays) and each kernel played by the CPU code that defines its result. This
runs the real CudaBackend code — batching, double buffers, copies back, deflate packing, the
pipeline's handling of each output kind — and checks every image against the CPU backend. It
cannot see device faults or races: tests/render/test_cuda.py covers those on a GPU."""
import importlib.util
import sys

import numpy as np
import pytest
from PIL import Image

import gpucomp
from gpucomp.config import Config, with_overrides
from gpucomp.demo import make_layers
from gpucomp.encode.png import deflate_engine, get_preset
from gpucomp.outdir.pipeline import Generation


@pytest.fixture(scope="module")
def layers256(tmp_path_factory):
    """256x256: an RGBA item's rows span 9 deflate segments."""
    return make_layers(tmp_path_factory.mktemp("layers256"), layers=4, traits=14, size=256, seed=3)


def test_other_formats_and_sizes_on_the_cuda_backend_equal_the_cpu_files(fake_gpu, layers256, tmp_path):
    """With formats or sizes the CUDA backend hands the workers pixels (no filtered rows, no device
    deflate, even with the gpu preset); every file matches the CPU run's byte for byte."""
    from gpucomp.render.cuda_backend import CudaBackend

    output = dict(formats=["png", "jpeg"], sizes=[{"name": "x2", "scale": 2}], size=6, seed=3, preset="gpu")
    backend = CudaBackend(batch_size=4)
    fake_gpu.watch(backend)
    gen = Generation(layers256, tmp_path / "cuda", with_overrides(Config(), force=True, **output), backend=backend)
    for _ in gen:
        pass
    assert fake_gpu.calls["composite_batch"] == 2 and fake_gpu.calls.get("deflate_segments", 0) == 0
    gpucomp.run(layers256, tmp_path / "cpu", backend="cpu", **output)
    for n in range(1, 7):
        for name in (f"{n}.png", f"{n}.jpg", f"x2/{n}.png", f"x2/{n}.jpg"):
            assert (tmp_path / "cpu/images" / name).read_bytes() == (tmp_path / "cuda/images" / name).read_bytes(), name


@pytest.mark.parametrize("preset", ["gpu", "fast", "balanced"])
def test_cuda_backend_orchestration_matches_the_cpu_backend(fake_gpu, layers256, tmp_path, preset):
    from gpucomp.render.cuda_backend import CudaBackend

    backend = CudaBackend(batch_size=3)  # 10 items: 4 batches, the last one short
    fake_gpu.watch(backend)
    cfg = with_overrides(Config(), size=10, seed=3, preset=preset, force=True)
    gen = Generation(layers256, tmp_path / "cuda", cfg, backend=backend)
    for _ in gen:
        pass
    want = deflate_engine(get_preset(preset), gpu=True)
    assert gen.summary["deflate"] == want and gen.summary["rendered"] == 10
    assert fake_gpu.calls["composite_batch"] == 4
    assert fake_gpu.calls.get("deflate_segments", 0) == (4 if preset == "gpu" else 0)
    gpucomp.run(layers256, tmp_path / "cpu", size=10, seed=3, backend="cpu", preset=preset)
    for n in range(1, 11):
        with Image.open(tmp_path / "cpu/images" / f"{n}.png") as a, Image.open(tmp_path / "cuda/images" / f"{n}.png") as b:
            assert a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b)), n
        assert ((tmp_path / "cpu/metadata" / f"{n}.json").read_bytes()
                == (tmp_path / "cuda/metadata" / f"{n}.json").read_bytes())


@pytest.mark.parametrize("fits_below", [2, 1])  # 2: batches of 1 fit, go on; 1: nothing fits, finish on the CPU
def test_gpu_deflate_out_of_memory(fake_gpu, layers256, tmp_path, monkeypatch, fits_below):
    """Deflate buffers that do not fit: smaller batches first, then the CPU backend (whose items
    the gpu preset deflates with ISA-L); every image still matches the CPU backend's."""
    import cupy

    from gpucomp.render import cuda_backend, cuda_buffers

    real_init = cuda_buffers.DeflateBuffers.__init__

    def init(self, cp, batch, *a, **k):
        if batch < fits_below:
            real_init(self, cp, batch, *a, **k)
        else:
            raise cupy.cuda.memory.OutOfMemoryError("fake: deflate buffers too big")

    monkeypatch.setattr(cuda_buffers.DeflateBuffers, "__init__", init)
    backend = cuda_backend.CudaBackend(batch_size=3)
    fake_gpu.watch(backend)
    cfg = with_overrides(Config(), size=7, seed=5, preset="gpu", force=True)
    gen = Generation(layers256, tmp_path / "cuda", cfg, backend=backend)
    if fits_below == 1:
        with pytest.warns(RuntimeWarning, match="CPU backend"):
            list(gen)
    else:
        list(gen)
    notes = backend.stats()["fallbacks"]
    assert any("batch size 3" in f for f in notes)
    assert any("CPU backend" in f for f in notes) == (fits_below == 1)
    gpucomp.run(layers256, tmp_path / "cpu", size=7, seed=5, backend="cpu", preset="fast")
    for n in range(1, 8):
        with Image.open(tmp_path / "cpu/images" / f"{n}.png") as a, Image.open(tmp_path / "cuda/images" / f"{n}.png") as b:
            assert np.array_equal(np.asarray(a), np.asarray(b)), n


def test_bench_gpu_smoke_runs(fake_gpu, monkeypatch, tmp_path):
    """benchmarks/bench_gpu.py, every step at toy sizes, on the stand-in: a GPU machine's few
    minutes must not be lost to a Python error in the script (its figures here mean nothing)."""
    import json
    from pathlib import Path

    from gpucomp.render import cuda_backend

    bench = Path(__file__).resolve().parents[2] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    prepare = cuda_backend.CudaBackend.prepare

    def watched(self, ls):
        prepare(self, ls)
        fake_gpu.prepared(self, ls)

    monkeypatch.setattr(cuda_backend.CudaBackend, "prepare", watched)
    import bench_gpu

    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", "--smoke", "--json", str(tmp_path / "out.json"),
                                      "--jsonl", str(tmp_path / "out.jsonl"), "--tmp", str(tmp_path)])
    assert bench_gpu.main() == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["cuda_gpu_preset"]["deflate"] == "gpu" and out["cuda"]["deflate"] != "gpu"
    sweep = out["deflate_sweep"]["variants"]
    assert ([(d["threads"], d["stage"]) for d in sweep][:5]
            == [(64, False), (32, False), (128, False), (256, False), (64, True)])
    assert all("error" not in d for d in sweep)
    assert not [k for k, v in out.items() if "error" in v], out
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["stage"] for x in lines] == list(out)  # one line per stage, written as it ended
    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", "--smoke", "--presets", "3", "--jsonl", str(tmp_path / "p.jsonl"),
                                      "--tmp", str(tmp_path)])
    assert bench_gpu.main() == 0
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [x["stage"] for x in lines] == ["device", "preset_fast", "preset_gpu", "preset_balanced", "preset_small"]
    assert all("error" not in x["result"] for x in lines)


# ---- what only a device shows, kept by the stand-in's books --------------------------------------
def _backend(fake, layers, batch_size=2, **kw):
    """A CudaBackend on the stand-in, prepared for `layers`: (backend, layer set)."""
    from gpucomp.layers.layerset import load_layers
    from gpucomp.render.cuda_backend import CudaBackend

    backend = CudaBackend(batch_size=batch_size, **kw)
    fake.watch(backend)
    ls = load_layers(layers)
    backend.prepare(ls)
    return backend, ls


def _combos(ls, n, seed=1):
    from gpucomp.plan.sampler import make_plan

    return make_plan([layer.weights for layer in ls.layers], n, seed=seed).combos


def _render(backend, combos, preset="gpu", on_batch=None, keep=False):
    """Render as the pipeline asks; `on_batch(k)` after batch k. Returns the outputs with `keep`,
    else their number: like the encoders, it drops each batch (and its pinned buffer) as it goes."""
    from gpucomp.outdir.stats import Stats

    p = get_preset(preset)
    outs, n = [], 0
    for k, (_idx, batch) in enumerate(backend.render(combos, Stats(), p.filter, deflate=p.engine == "gpu")):
        n += len(batch)
        if keep:
            outs += batch
        del batch
        if on_batch is not None:
            on_batch(k)
    return outs if keep else n


def test_bench_nearest_smoke_runs(fake_gpu, monkeypatch, tmp_path, capsys):
    """benchmarks/bench_nearest.py (gpu_check.sh's nearest stage) at toy sizes on the stand-in: all
    three runs, files identical, the device run scaling on the device and the other not."""
    import json
    from pathlib import Path

    from gpucomp.render import cuda_backend

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    prepare = cuda_backend.CudaBackend.prepare

    def watched(self, ls):
        prepare(self, ls)
        fake_gpu.prepared(self, ls)

    monkeypatch.setattr(cuda_backend.CudaBackend, "prepare", watched)
    import bench_nearest

    monkeypatch.setattr(sys, "argv", ["bench_nearest.py", "--smoke", "--json", str(tmp_path / "n.json")])
    assert bench_nearest.main() == 0
    out = json.loads((tmp_path / "n.json").read_text())
    assert out["identical"]["device_vs_cpu"]["identical"] and out["identical"]["host_vs_cpu"]["files"] == 12
    assert out["cuda_device_scaled"]["backend"]["device_sizes"] == ["x3"]
    assert out["cuda_cpu_scaled"]["backend"]["device_sizes"] == []

def test_stand_in_catches_what_a_device_would(fake_gpu):
    """The stand-in's own rules, each shown failing: an unordered launch, a buffer freed under a
    copy, the pinned pool's exact-size reuse, spinning waits."""
    import gc

    import cupy
    import cupyx

    dev = cupy.fake
    up = cupy.asarray(np.arange(4, dtype=np.int32))  # legacy default stream
    s = cupy.cuda.Stream(non_blocking=True)
    with s, pytest.raises(AssertionError, match="nothing ordering it"):
        fake_gpu("filter_rows")((1, 1), (1,), (up, up, 0, 1, 1, 0, cupy.empty(8, cupy.uint8)))
    s.wait_event(cupy.cuda.Stream.null.record())
    with s:
        cupy.cumsum(up)  # ordered now
    a = cupyx.empty_pinned((1000,), np.uint8)
    cupy.cuda.runtime.memcpyAsync(a.ctypes.data, up.data.ptr, 16, 2, s.ptr)
    del a
    gc.collect()
    assert dev.faults and "pinned buffer" in dev.faults[-1]
    n = dev.pinned_allocs
    cupyx.empty_pinned((1000,), np.uint8)  # the freed 1024-byte block serves the same rounded size
    assert dev.pinned_allocs == n
    cupyx.empty_pinned((1100,), np.uint8)  # and only that size
    assert dev.pinned_allocs == n + 1
    ev = cupy.cuda.Event(block=True, disable_timing=True)
    ev.record(s)
    ev.synchronize()
    s.synchronize()
    assert dev.waits[-2:] == [("Event.synchronize", True), ("Stream.synchronize", False)]


@pytest.mark.parametrize("preset", ["gpu", "fast"])
def test_pinned_memory_is_flat_in_the_number_of_batches(fake_gpu, layers256, preset):
    """Fix 1: each batch's bytes come back into a pinned buffer; CuPy's pool reuses a freed block
    only for the same rounded size. Asked for exactly, every batch pinned fresh memory that the
    pool kept for good (~4 MB an item at 2048x2048). Now, while the encoders drop each batch's
    items as they go, 24 more batches pin nothing more than the first 8 did."""
    import cupy

    backend, ls = _backend(fake_gpu, layers256)
    combos = _combos(ls, 64, seed=2)
    _render(backend, combos[:16], preset)
    first = cupy.fake.pinned_bytes
    _render(backend, combos[16:], preset)
    assert cupy.fake.pinned_bytes <= first * 1.1, (first, cupy.fake.pinned_bytes)
    assert not cupy.fake.faults


@pytest.mark.parametrize("preset", ["gpu", "fast"])
def test_host_waits_sleep_and_none_per_item(fake_gpu, layers256, preset):
    """Fix 2 and 4: the thread that feeds the GPU waits on blocking-sync events only (a spinning
    wait eats a core the encoders need), at most twice a batch (its sizes, its bytes), never a
    synchronous .get()."""
    import cupy

    backend, ls = _backend(fake_gpu, layers256)
    combos = _combos(ls, 12)
    waits = cupy.fake.waits
    waits.clear()
    _render(backend, combos, preset)
    assert waits and all(sleeps for _, sleeps in waits), waits
    assert len(waits) <= 2 * 6 + 2  # 6 batches; the close waits for both streams


def test_uploads_are_ordered_before_launches(fake_gpu, layers256):
    """Fix 3: traits, boxes, tables and pointers are uploaded on the backend's stream; on the legacy
    default stream a non-blocking stream's launch would not wait for them (the stand-in raises)."""
    import cupy

    backend, ls = _backend(fake_gpu, layers256)
    assert _render(backend, _combos(ls, 3), "fast") == 3 and not cupy.fake.faults
    # A second stack (prepare again) is uploaded in order too.
    backend.prepare(ls)
    assert _render(backend, _combos(ls, 3, seed=4), "gpu") == 3


@pytest.mark.parametrize("preset", ["gpu", "fast"])
def test_gpu_has_the_next_batches_queued_while_one_is_encoded(fake_gpu, layers256, preset):
    """Fix 4: when batch k reaches the encoders, batch k+1's bytes are already being copied back and
    batch k+2 is launched, so the GPU never waits for the host between batches."""
    import cupy

    backend, ls = _backend(fake_gpu, layers256)
    n_batches = 6
    launched_at_yield = []
    _render(backend, _combos(ls, 2 * n_batches), preset,
            lambda k: launched_at_yield.append(fake_gpu.calls["composite_batch"]))
    assert launched_at_yield == [min(k + 3, n_batches) for k in range(n_batches)]
    assert not [w for w in cupy.fake.waits if w[0] == ".get()"]


def test_rgb_items_copy_back_only_their_rows(fake_gpu, layers256):
    """Fix 5: an opaque item is written as RGB, a quarter fewer bytes than its RGBA-capacity slot:
    exactly its rows come back (plus 4 bytes of flags per item), not the slot."""
    import cupy

    backend, ls = _backend(fake_gpu, layers256)
    cupy.fake.d2h_bytes = 0
    outs = _render(backend, _combos(ls, 6), "fast", keep=True)
    assert {o.channels for o in outs} == {3}  # the demo layers have an opaque background
    assert cupy.fake.d2h_bytes == sum(o.rows.nbytes for o in outs) + 4 * len(outs)


@pytest.mark.parametrize("preset", ["gpu", "fast"])
def test_closing_mid_run_waits_for_the_device(fake_gpu, layers256, preset):
    """Fix 6: a render closed after its first batch (Ctrl-C, an error in the pipeline) or failing
    must not hand its device and pinned buffers back to the pools while kernels and copies may
    still use them."""
    import gc

    import cupy

    from gpucomp.outdir.stats import Stats

    backend, ls = _backend(fake_gpu, layers256)
    p = get_preset(preset)
    run = backend.render(_combos(ls, 12), Stats(), p.filter, deflate=p.engine == "gpu")
    next(run)
    assert cupy.fake.in_flight()  # later batches are queued
    run.close()
    del run
    gc.collect()
    assert not cupy.fake.faults, cupy.fake.faults
    assert not cupy.fake.in_flight()


def test_batch_size_is_bounded_by_the_grid(fake_gpu):
    """Fix 7: one item per grid row, and a grid has at most 65535 rows: a larger batch_size is a
    clear error up front, not a failed launch mid-run (auto batches stay far below)."""
    from gpucomp.errors import ConfigError
    from gpucomp.render.cuda_backend import CudaBackend

    with pytest.raises(ConfigError, match="65535"):
        with_overrides(Config(), batch_size=65536)
    assert with_overrides(Config(), batch_size=65535).batch_size == 65535
    with pytest.raises(ValueError, match="65535"):
        CudaBackend(batch_size=70000)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy here: run the real check instead")
def test_gpu_check_without_a_gpu_says_so_and_exits_0(tmp_path):
    """benchmarks/gpu_check.sh --quick on a machine without a GPU: one clear "no GPU" line, exit 0,
    no traceback, a JSON line per stage so far; wheels for another Python or machine are skipped,
    and a wheel that fails to install costs only itself."""
    import json
    import os
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("bash") is None or shutil.which("timeout") is None:
        pytest.skip("needs bash and timeout")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    for name in (f"isal-1.7.0-{tag}-{tag}-manylinux_2_17_x86_64.whl", "isal-1.7.0-cp39-cp39-manylinux_2_17_x86_64.whl",
                 "hypothesis-6.0.0-py3-none-any.whl"):
        (wheels / name).write_text("not a wheel")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OUT": str(tmp_path / "out"), "GPU_CHECK_WHEELS": str(wheels), "PYTHON": sys.executable,
           "TMPDIR": str(tmp_path)}
    r = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--quick"], cwd=root, env=env, capture_output=True,
                       text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Traceback" not in out
    assert [line for line in r.stdout.splitlines() if line.startswith("no GPU: ")], out
    assert "skipped isal-1.7.0-cp39" in out and f"failed to install isal-1.7.0-{tag}" in out
    assert "failed to install hypothesis-6.0.0-py3-none-any.whl" in out
    stages = [json.loads(line) for line in (tmp_path / "out/gpu_check.jsonl").read_text().splitlines()]
    assert [s["stage"] for s in stages] == ["environment", "identity", "wheels", "packages", "device", "summary"]
    assert stages[1]["python"] == ".".join(map(str, sys.version_info[:3])) and stages[-1]["gpu"] is False


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy here: the bench would measure")
def test_bench_gpu_without_a_gpu_exits_cleanly(tmp_path):
    """bench_gpu.py where `import cupy` fails: one line, exit 0, no traceback."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "benchmarks/bench_gpu.py", "--jsonl", str(tmp_path / "b.jsonl")], cwd=root,
                       env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr + r.stdout
    assert r.stdout.startswith("no GPU: ") and "nothing measured" in r.stdout


# ---- nearest copies ([[output.sizes]] scale = k) made on the device beside the composite ---------
def _sized_run(fake, layers, out, monkeypatch, opaque_rgb=True, **kw):
    """A run with a x3 nearest copy, a x2 one in WebP only and a Lanczos thumbnail, on the stand-in;
    returns (backend, {size filter: CPU resize calls})."""
    from gpucomp.encode import media
    from gpucomp.render.cuda_backend import CudaBackend

    calls = {"nearest": 0, "lanczos": 0}
    real = media.resize

    def counted(px, size):
        calls[size.filter] += 1
        return real(px, size)

    monkeypatch.setattr(media, "resize", counted)
    backend = CudaBackend(batch_size=kw.pop("batch_size", 4), opaque_rgb=opaque_rgb, **kw)
    fake.watch(backend)
    cfg = with_overrides(Config(), force=True, opaque_rgb=opaque_rgb, **SIZED)
    list(Generation(layers, out, cfg, backend=backend))
    return backend, calls


SIZED = dict(formats=["png", "webp"], size=6, seed=3,
             sizes=[{"name": "x3", "scale": 3}, {"name": "x2", "scale": 2, "format": "webp"},
                    {"name": "thumb", "width": 100}])


def _same_files(a, b):
    for n in range(1, 7):
        for name in (f"{n}.png", f"{n}.webp", f"x3/{n}.png", f"x3/{n}.webp", f"x2/{n}.webp", f"thumb/{n}.png"):
            assert (a / "images" / name).read_bytes() == (b / "images" / name).read_bytes(), name


@pytest.mark.parametrize("opaque_rgb", [True, False])  # RGB items (opaque background) and RGBA ones
def test_nearest_copies_are_made_on_the_device_and_equal_the_cpu_files(fake_gpu, layers256, tmp_path, monkeypatch,
                                                                       opaque_rgb):
    """The x3 and x2 copies come back from scale_nearest with the batch (the CPU resizes only the
    Lanczos thumbnail); every file equals the CPU backend's byte for byte."""
    backend, calls = _sized_run(fake_gpu, layers256, tmp_path / "cuda", monkeypatch, opaque_rgb)
    assert fake_gpu.calls["scale_nearest"] == 2 * 2  # two batches (6 items, 4 a batch), two nearest sizes
    assert calls == {"nearest": 0, "lanczos": 6}
    assert backend.stats()["device_sizes"] == ["x3", "x2"]
    gpucomp.run(layers256, tmp_path / "cpu", backend="cpu", opaque_rgb=opaque_rgb, **SIZED)
    _same_files(tmp_path / "cpu", tmp_path / "cuda")


def test_nearest_copies_over_the_vram_budget_are_made_on_the_cpu_saying_why(fake_gpu, layers256, tmp_path,
                                                                           monkeypatch):
    """Two batches of one item with its copies must fit a quarter of the budget; when they do not,
    the copies are made on the CPU (same bytes) and the backend's fallbacks say so."""
    backend, calls = _sized_run(fake_gpu, layers256, tmp_path / "cuda", monkeypatch, vram_budget="6MiB")
    assert fake_gpu.calls.get("scale_nearest", 0) == 0 and calls["nearest"] == 12
    notes = [f for f in backend.stats()["fallbacks"] if "nearest copies" in f]
    assert len(notes) == 1 and "'x3' (x3)" in notes[0] and "made on the CPU" in notes[0], notes
    gpucomp.run(layers256, tmp_path / "cpu", backend="cpu", **SIZED)
    _same_files(tmp_path / "cpu", tmp_path / "cuda")


def test_nearest_copies_count_in_the_batch_size(fake_gpu, layers256, monkeypatch):
    """Each copy is k*k canvases an item on the device and in pinned memory: the auto batch size
    counts them (and a quarter of the budget), a given one is lowered under the pinned cap, saying so."""
    from gpucomp.encode.resize import Size
    from gpucomp.outdir.stats import Stats
    from gpucomp.render import cuda_backend

    backend, ls = _backend(fake_gpu, layers256, batch_size=0)  # auto
    plain = backend.batch_size
    per_item = backend.item_bytes(scales=(("x8", 8),))
    assert per_item == backend.item_bytes() + 64 * 256 * 256 * 4
    backend.budget = 8 * per_item * 3  # room for batches of 3
    list(backend.render(_combos(ls, 2), Stats(), "none", sizes=(Size("x8", scale=8, filter="nearest"),)))
    assert backend.batch_size == 3 < plain and not backend.fallbacks
    monkeypatch.setattr(cuda_backend, "SCALED_BATCH_BYTES", 2 * 64 * 256 * 256 * 4)
    given, _ = _backend(fake_gpu, layers256, batch_size=5)
    outs = [o for _, b in given.render(_combos(ls, 5), Stats(), "none", sizes=(Size("x8", scale=8, filter="nearest"),))
            for o in b]
    assert given.batch_size == 2 and any("batch size 5 lowered to 2" in f for f in given.fallbacks)
    assert all(o.copies["x8"].shape == (2048, 2048, 3) and o.pixels.shape == (256, 256, 3) for o in outs)


def test_sized_copies_need_pixels_not_rows(fake_gpu, layers256):
    from gpucomp.encode.resize import Size
    from gpucomp.outdir.stats import Stats

    backend, ls = _backend(fake_gpu, layers256)
    with pytest.raises(ValueError, match="png_filter='none'"):
        list(backend.render(_combos(ls, 2), Stats(), "up", sizes=(Size("x2", scale=2, filter="nearest"),)))
