"""The one place that decides CPU or CUDA, and says why."""
from __future__ import annotations

from gpucomp.errors import BackendUnavailable
from gpucomp.render.cuda_backend import CudaBackend
from gpucomp.render.numpy_backend import NumpyBackend


def cuda_status() -> tuple[bool, str]:
    """(usable, reason). Never raises: no cupy, no driver and no device are all answers."""
    try:
        import cupy  # deferred: optional (the [cuda12]/[cuda13] extras)
    except ImportError:
        return False, "CuPy is not installed (pip install 'gpucomp[cuda12]' or 'gpucomp[cuda13]')"
    except Exception as err:  # a broken install
        return False, f"CuPy failed to import: {err}"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:
        return False, f"no usable CUDA driver ({type(err).__name__}: {err})"
    if n < 1:
        return False, "no CUDA device found"
    try:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        cupy.zeros(1, dtype=cupy.uint8).sum()  # a real launch: catches driver/toolkit mismatches
    except Exception as err:
        return False, f"CUDA device present but not usable ({type(err).__name__}: {err})"
    return True, f"CUDA device 0: {name}"


def choose(name: str, opaque_rgb: bool = True, **cuda_options):
    """-> (backend, reason). `auto` uses CUDA when it works, else the NumPy backend."""
    if name == "cpu":
        return NumpyBackend(opaque_rgb=opaque_rgb), "cpu backend requested"
    ok, why = cuda_status()
    if ok:
        return CudaBackend(opaque_rgb=opaque_rgb, **cuda_options), why
    if name == "cuda":
        raise BackendUnavailable(f"--backend cuda: {why}; use --backend cpu or auto")
    return NumpyBackend(opaque_rgb=opaque_rgb), f"using the CPU backend: {why}"
