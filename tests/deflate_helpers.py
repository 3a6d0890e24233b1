"""kernels/deflate.cu built as host C++, and the stream the CUDA backend would assemble from it."""
import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gpucomp import gpu_deflate as gd

KERNEL = Path(__file__).resolve().parent.parent / "kernels" / "deflate.cu"


def build_host_deflate(tmp_path_factory):
    """The host build as a ctypes library (skips the test without a C++ compiler)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    out = tmp_path_factory.mktemp("hostdeflate") / "deflate.so"
    r = subprocess.run([cxx, "-O2", "-x", "c++", "-DDEFLATE_HOST", "-Wall", "-Werror", "-shared", "-fPIC",
                        str(KERNEL), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return ctypes.CDLL(str(out))


def segment_outputs(lib, data: np.ndarray, width: int, c: int):
    """The kernel's per-segment results for one item: slots, sizes, Adler pieces."""
    data = np.ascontiguousarray(data, np.uint8).reshape(-1)
    segs = gd.segments(data.size)
    slots = np.zeros((segs, gd.SLOT), np.uint8)
    sizes = np.zeros(segs, np.uint32)
    adler = np.zeros((segs, 2), np.uint32)
    p = ctypes.c_void_p
    got = lib.deflate_host(p(data.ctypes.data), ctypes.c_uint32(data.size), ctypes.c_uint32(width),
                           ctypes.c_uint32(c), p(slots.ctypes.data), p(sizes.ctypes.data), p(adler.ctypes.data))
    assert got == segs
    return slots, sizes, adler


def host_stream(lib, data: np.ndarray, width: int, c: int) -> bytes:
    """The zlib stream the CUDA backend would write for `data`: segments packed at the exclusive
    sum of their sizes (gather_segments), Adler-32 combined from the pieces."""
    slots, sizes, adler = segment_outputs(lib, data, width, c)
    offsets = np.cumsum(sizes, dtype=np.uint32) - sizes
    packed = np.zeros(gd.packed_capacity(data.size), np.uint8)
    for k in range(len(sizes)):
        packed[offsets[k]:offsets[k] + sizes[k]] = slots[k, :sizes[k]]
    adl = gd.adler32(adler[None], np.array([data.size]))[0]
    return gd.zlib_stream(memoryview(packed[:int(sizes.sum())]), adl)
