"""The CUDA kernels, compiled lazily, once per device and variant, through cupy.RawModule (the sources:
_shared/sources.py). Only this module and the CUDA backend's own modules touch cupy, and only in calls."""
from __future__ import annotations

from functools import lru_cache

from gpucomp._shared.sources import kernel_source

NVRTC_OPTIONS = ("--std=c++17", "--fmad=false")  # no FMA contraction: bit-identical to NumPy



@lru_cache(maxsize=None)
def _module(device_id: int, name: str, defines: tuple[str, ...]):
    import cupy  # deferred: optional (the [cuda12]/[cuda13] extras)

    with cupy.cuda.Device(device_id):
        return cupy.RawModule(code=kernel_source(name), options=NVRTC_OPTIONS + tuple(f"-D{d}" for d in defines))


def get_kernel(func: str, name: str = "composite.cu", defines: tuple[str, ...] = ()):
    """The compiled kernel `func` for the current device (compiled on first use); `defines`
    (e.g. ("DEFLATE_THREADS=128",)) build a variant of the source."""
    import cupy  # deferred: optional (the [cuda12]/[cuda13] extras)

    return _module(cupy.cuda.Device().id, name, tuple(defines)).get_function(func)
