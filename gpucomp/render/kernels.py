"""Find the CUDA sources (a checkout's kernels/ or the installed gpucomp._kernels) and
compile them lazily, once per device, through cupy.RawModule."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

NVRTC_OPTIONS = ("--std=c++17", "--fmad=false")  # no FMA contraction: bit-identical to NumPy


def kernel_source(name: str = "composite.cu") -> str:
    checkout = Path(__file__).resolve().parent.parent / "kernels" / name
    if checkout.is_file():
        return checkout.read_text()
    from importlib.resources import files

    return files("gpucomp._kernels").joinpath(name).read_text()


@lru_cache(maxsize=None)
def _module(device_id: int, name: str, defines: tuple[str, ...]):
    import cupy

    with cupy.cuda.Device(device_id):
        return cupy.RawModule(code=kernel_source(name), options=NVRTC_OPTIONS + tuple(f"-D{d}" for d in defines))


def get_kernel(func: str, name: str = "composite.cu", defines: tuple[str, ...] = ()):
    """The compiled kernel `func` for the current device (compiled on first use); `defines`
    (e.g. ("DEFLATE_THREADS=128",)) build a variant of the source."""
    import cupy

    return _module(cupy.cuda.Device().id, name, tuple(defines)).get_function(func)
