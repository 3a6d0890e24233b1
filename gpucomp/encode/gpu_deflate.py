"""The host side of deflate on the GPU (kernels/deflate.cu, the `gpu` preset).

The kernel turns each DEFLATE_SEG-byte segment of an item's filtered rows into a byte-aligned
run of deflate blocks and reports, per segment, its size and two Adler-32 pieces. Here those
become one zlib stream: header, the segments back to back, a final empty block, the Adler-32.
No CuPy here, so the assembly is tested on any machine (with the kernel built as host C++).
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpucomp._shared.sources import kernel_source

SEG = 32768  # must match DEFLATE_SEG in kernels/deflate.cu (a test checks)
SLOT = SEG + 8  # DEFLATE_SLOT: output bytes reserved per segment
THREADS = 64  # DEFLATE_THREADS (default): one thread block per segment; other powers of two
# 32..512 build variants (more threads: more parallel work per segment, shorter greedy parses),
# and DEFLATE_STAGE=1 a variant that reads the input from shared memory (same bytes out)
ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, "fastest" level flag; (0x7801 % 31 == 0)
FINAL_BLOCK = b"\x03\x00"  # BFINAL=1, fixed Huffman, end of block
ADLER_MOD = 65521


def segments(n: int) -> int:
    """Segments (thread blocks) for `n` bytes of filtered rows."""
    return -(-n // SEG)


def packed_capacity(n: int) -> int:
    """Worst-case bytes of an item's packed segments: a stored block adds 5 bytes to each."""
    return n + 5 * segments(n)


def adler32(pieces: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Adler-32 per item from per-segment pieces.

    pieces: (items, segs, 2) integers, per segment (sum of bytes, sum of bytes weighted by their
    distance to the segment's end: the last byte counts once), each mod 65521; lengths: (items,)
    bytes per item. Segments past an item's end must have zero pieces.
    s1 = 1 + sum(A); s2 = n + sum over segments of (n - end) * A + B, all mod 65521.
    """
    p = np.asarray(pieces, np.int64)
    n = np.asarray(lengths, np.int64)
    ends = np.minimum((np.arange(p.shape[1], dtype=np.int64) + 1) * SEG, n[:, None])
    a, b = p[..., 0], p[..., 1]
    s1 = (1 + a.sum(axis=1)) % ADLER_MOD
    s2 = (n + (((n[:, None] - ends) % ADLER_MOD) * a + b).sum(axis=1)) % ADLER_MOD
    return (s2 << 16 | s1).astype(np.uint32)


def zlib_pieces(body, adler: int) -> tuple:
    """A complete zlib stream around the concatenated segments, in pieces."""
    return ZLIB_HEADER, body, FINAL_BLOCK, int(adler).to_bytes(4, "big")


def zlib_stream(body, adler: int) -> bytes:
    return b"".join(zlib_pieces(body, adler))


@dataclass
class Deflated:
    """An item deflated on the GPU: its segments back to back, ready to become an IDAT chunk."""

    body: memoryview
    adler: int
    width: int
    height: int
    channels: int

    def idat(self) -> bytes:
        return zlib_stream(self.body, self.adler)

    def idat_pieces(self) -> tuple:
        return zlib_pieces(self.body, self.adler)


# ---- the kernel built for the CPU (tests and benchmarks; needs a C++ compiler) ----------------------
def build_host_library(out_dir, threads: int = THREADS, stage: bool = False) -> ctypes.CDLL | None:
    """kernels/deflate.cu compiled as host C++ (its phases run one thread at a time), or None
    without a C++ compiler. Raises RuntimeError with the compiler's message if it fails."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        return None
    out_dir = Path(out_dir)
    src, lib = out_dir / "deflate_host.cpp", out_dir / f"deflate_host_{threads}_{int(stage)}.so"
    src.write_text(kernel_source("deflate.cu"))
    r = subprocess.run([cxx, "-O2", "-DDEFLATE_HOST", f"-DDEFLATE_THREADS={threads}", f"-DDEFLATE_STAGE={int(stage)}",
                        "-Wall", "-Werror", "-shared", "-fPIC", str(src), "-o", str(lib)],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"building the host deflate failed:\n{r.stderr}")
    return ctypes.CDLL(str(lib))


def host_segments(lib, data: np.ndarray, width: int, c: int):
    """The kernel's per-segment results for one item from the host build: slots, sizes, Adler pieces."""
    data = np.ascontiguousarray(data, np.uint8).reshape(-1)
    segs = segments(data.size)
    slots = np.zeros((segs, SLOT), np.uint8)
    sizes = np.zeros(segs, np.uint32)
    adler = np.zeros((segs, 2), np.uint32)
    p = ctypes.c_void_p
    got = lib.deflate_host(p(data.ctypes.data), ctypes.c_uint32(data.size), ctypes.c_uint32(width),
                           ctypes.c_uint32(c), p(slots.ctypes.data), p(sizes.ctypes.data), p(adler.ctypes.data))
    assert got == segs
    return slots, sizes, adler


def host_stream(lib, data: np.ndarray, width: int, c: int) -> bytes:
    """The zlib stream the CUDA backend writes for `data`: segments packed at the exclusive sum of
    their sizes (as gather_segments packs them), Adler-32 combined from the pieces."""
    slots, sizes, adler = host_segments(lib, data, width, c)
    offsets = np.cumsum(sizes, dtype=np.uint32) - sizes
    packed = np.zeros(packed_capacity(data.size), np.uint8)
    for k in range(len(sizes)):
        packed[offsets[k]:offsets[k] + sizes[k]] = slots[k, :sizes[k]]
    adl = adler32(adler[None], np.array([data.size]))[0]
    return zlib_stream(memoryview(packed[:int(sizes.sum())]), adl)
