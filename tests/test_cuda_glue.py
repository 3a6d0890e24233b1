"""The CUDA backend's orchestration on any machine: CuPy replaced by tests/fake_cupy.py (NumPy
arrays for device arrays) and each kernel played by the CPU code that defines its result. This
runs the real CudaBackend code — batching, double buffers, copies back, deflate packing, the
pipeline's handling of each output kind — and checks every image against the CPU backend. It
cannot see device faults or races: tests/test_cuda.py covers those on a GPU."""
import sys

import numpy as np
import pytest
from fake_cupy import FakeKernels, make_cupy
from PIL import Image

import gpucomp
from gpucomp import kernels
from gpucomp.config import Config, with_overrides
from gpucomp.demo import make_layers
from gpucomp.encode import deflate_engine, get_preset
from gpucomp.gpu_deflate import build_host_library
from gpucomp.pipeline import Generation


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    lib = build_host_library(tmp_path)
    if lib is None:
        pytest.skip("no C++ compiler for the deflate kernel's host build")
    cp, cupyx = make_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    fake = FakeKernels(lib)
    monkeypatch.setattr(kernels, "get_kernel", fake)
    return fake


@pytest.fixture(scope="module")
def layers256(tmp_path_factory):
    """256x256: an RGBA item's rows span 9 deflate segments."""
    return make_layers(tmp_path_factory.mktemp("layers256"), layers=4, traits=14, size=256, seed=3)


@pytest.mark.parametrize("preset", ["gpu", "fast", "balanced"])
def test_cuda_backend_orchestration_matches_the_cpu_backend(fake_gpu, layers256, tmp_path, preset):
    from gpucomp.backends.cuda_backend import CudaBackend

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
        assert (tmp_path / "cpu/metadata" / f"{n}.json").read_bytes() == (tmp_path / "cuda/metadata" / f"{n}.json").read_bytes()


@pytest.mark.parametrize("fits_below", [2, 1])  # 2: batches of 1 fit, go on; 1: nothing fits, finish on the CPU
def test_gpu_deflate_out_of_memory(fake_gpu, layers256, tmp_path, monkeypatch, fits_below):
    """Deflate buffers that do not fit: smaller batches first, then the CPU backend (whose items
    the gpu preset deflates with ISA-L); every image still matches the CPU backend's."""
    import cupy

    from gpucomp.backends import cuda_backend

    real_init = cuda_backend.DeflateBuffers.__init__

    def init(self, cp, batch, *a, **k):
        if batch < fits_below:
            real_init(self, cp, batch, *a, **k)
        else:
            raise cupy.cuda.memory.OutOfMemoryError("fake: deflate buffers too big")

    monkeypatch.setattr(cuda_backend.DeflateBuffers, "__init__", init)
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

    from gpucomp.backends import cuda_backend

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    prepare = cuda_backend.CudaBackend.prepare

    def watched(self, ls):
        prepare(self, ls)
        fake_gpu.prepared(self, ls)

    monkeypatch.setattr(cuda_backend.CudaBackend, "prepare", watched)
    import bench_gpu

    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", "--smoke", "--json", str(tmp_path / "out.json"), "--tmp", str(tmp_path)])
    assert bench_gpu.main() == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["cuda_gpu_preset"]["deflate"] == "gpu" and out["cuda"]["deflate"] != "gpu"
    assert [(d["threads"], d["stage"]) for d in out["deflate_sweep"]][:5] == [(64, False), (32, False), (128, False),
                                                                         (256, False), (64, True)]
    assert all("error" not in d for d in out["deflate_sweep"])
