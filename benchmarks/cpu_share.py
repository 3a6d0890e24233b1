"""CPU time per item that the encode workers still spend once the GPU has composited, by preset,
on standard-workload composites (one thread, medians). This is the CPU floor of the GPU pipeline:
with W workers it cannot exceed W / (ms per item) items/s.

    fast: Up-filtered rows from the GPU -> ISA-L deflate, PNG chunks, SHA-256, write
    gpu:  a deflate stream from the GPU -> PNG chunks, SHA-256, write

The gpu preset's streams are made here by kernels/deflate.cu built for the CPU (the same code the
GPU runs, one thread at a time); its time is printed for scale only: it says nothing of GPU speed.

    python benchmarks/cpu_share.py [-n 8] [--json FILE]
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gpucomp._shared.files import atomic_write_bytes
from gpucomp.encode import gpu_deflate as gd
from gpucomp.encode.png import encode_deflated, encode_filtered, filter_rows, get_preset
from gpucomp.layers.layerset import load_layers
from gpucomp.plan.sampler import make_plan
from gpucomp.render.numpy_backend import NumpyBackend

from common import STANDARD, machine, table, workload_layers, write_json


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    r = fn()
    return (time.perf_counter() - t0) * 1e3, r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--items", type=int, default=8)
    ap.add_argument("--json")
    args = ap.parse_args()
    ls = load_layers(workload_layers(STANDARD))
    be = NumpyBackend()
    be.prepare(ls)
    fast = get_preset("fast")
    with tempfile.TemporaryDirectory(prefix="gpucomp-cpu-share-") as tmp:
        lib = gd.build_host_library(tmp)
        if lib is None:
            print("needs a C++ compiler (g++) to build the deflate kernel for the CPU", file=sys.stderr)
            return 2
        out = Path(tmp)
        res = {k: [] for k in ("fast_ms", "gpu_ms", "host_kernel_ms", "fast_mb", "gpu_mb")}
        for i, combo in enumerate(make_plan([layer.weights for layer in ls.layers], args.items, seed=5).combos):
            px = be.composite([combo])[0]
            h, w, c = px.shape
            rows = filter_rows(px, "up")  # what the GPU hands over for `fast`
            ms, stream = timed(lambda rows=rows, w=w, c=c: gd.host_stream(lib, rows, w, c))
            res["host_kernel_ms"].append(ms)
            item = gd.Deflated(memoryview(stream[2:-6]), int.from_bytes(stream[-4:], "big"), w, h, c)

            def finish(png: bytes, name: str) -> int:
                hashlib.sha256(png).digest()
                atomic_write_bytes(out / name, png)
                return len(png)

            ms, size = timed(lambda rows=rows, w=w, h=h, c=c, i=i: finish(encode_filtered(rows, w, h, c, fast),
                                                                          f"{i}-fast.png"))
            res["fast_ms"].append(ms)
            res["fast_mb"].append(size / 1e6)
            ms, size = timed(lambda item=item, i=i: finish(encode_deflated(item), f"{i}-gpu.png"))
            res["gpu_ms"].append(ms)
            res["gpu_mb"].append(size / 1e6)
    med = {k: statistics.median(v) for k, v in res.items()}
    m = machine()
    print(f"standard workload composites ({args.items} items); machine: {m['cpu']}, {m['cores']} cores; one thread")
    print(table([
        ("fast: ISA-L deflate + PNG + SHA-256 + write", f"{med['fast_ms']:.1f}", f"{med['fast_mb']:.2f}"),
        ("gpu: PNG + SHA-256 + write (deflate done on the GPU)", f"{med['gpu_ms']:.1f}", f"{med['gpu_mb']:.2f}"),
        ("(deflate kernel built for the CPU, one thread: scale only)", f"{med['host_kernel_ms']:.0f}", "-"),
    ], ("CPU work per item", "ms (median)", "PNG MB")))
    print(f"CPU work per item, gpu / fast: {med['gpu_ms'] / med['fast_ms']:.2f}; "
          f"PNG size, gpu / fast: {med['gpu_mb'] / med['fast_mb']:.3f}")
    write_json(args.json, {"machine": m, "items": args.items, "medians": med, "samples": res})
    return 0


if __name__ == "__main__":
    sys.exit(main())
