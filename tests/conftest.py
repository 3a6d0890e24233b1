import importlib.util
import sys

import pytest

from gpucomp.demo import make_layers


def _cuda_ok() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    from gpucomp.render.select import cuda_status

    return cuda_status()[0]


CUDA = _cuda_ok()


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs CuPy and a working CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None and not CUDA:  # the marker, not a parameter named gpu
            item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_layers(tmp_path_factory):
    """Small deterministic layers folder: 4 layers, 14 traits, 64x64."""
    return make_layers(tmp_path_factory.mktemp("layers"), layers=4, traits=14, size=64, seed=3)


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    """CuPy played by tests/fake_cupy.py (streams, pinned pool, asynchronous copies), each CUDA
    kernel by its host equivalent; the deflate kernel's host build needs a C++ compiler."""
    from gpucomp.encode.gpu_deflate import build_host_library
    from gpucomp.render import kernels

    from fake_cupy import FakeKernels, make_cupy

    lib = build_host_library(tmp_path)
    if lib is None:
        pytest.skip("no C++ compiler for the deflate kernel's host build")
    cp, cupyx = make_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    fake = FakeKernels(lib)
    monkeypatch.setattr(kernels, "get_kernel", fake)
    return fake
