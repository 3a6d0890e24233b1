"""numba, where it works: the optional JIT behind the fused CPU kernel (render/cpu_kernel.py)
and the fast PNG reader (png_unfilter.py). Without it (or with GPUCOMP_NO_JIT=1) gpucomp runs
the NumPy and Pillow paths, which give the same bytes."""
from __future__ import annotations

import importlib
import os
import tempfile

NO_JIT_ENV = "GPUCOMP_NO_JIT"  # set to 1: the NumPy and Pillow paths even where numba works


def disabled() -> bool:
    return os.environ.get(NO_JIT_ENV, "") not in ("", "0")


def import_jit(name: str):
    """Import a module of numba functions (raises when numba is missing or broken). numba caches
    compiled code next to the package, else in the user's cache folder; when neither is writable
    it refuses to define cached functions, so use a temporary folder (compiled once per process)."""
    try:
        return importlib.import_module(name)
    except RuntimeError as err:
        if "cannot cache" not in str(err):
            raise
        import numba  # deferred: optional (numba missing or GPUCOMP_NO_JIT: NumPy compositing)

        numba.config.CACHE_DIR = tempfile.mkdtemp(prefix="gpucomp-numba-")
        return importlib.import_module(name)
