"""Encode time per 2048x2048 item for each output format, one thread and two threads.

Pillow's WebP/JPEG/AVIF encoders release the GIL for part of their work only; the two-thread column
says how much of the second core an encode pool really gets (wall ms per item with two threads
encoding at once; 2.0x speedup = perfect scaling). Composites: the standard workload's generator
(8 layers, 2048x2048) with 16 traits in all (the encoders see the same kind of art; fewer files).

    python benchmarks/bench_formats.py [-n 4] [--json FILE]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from gpucomp.encode.formats import encode, parse_formats
from gpucomp.layers.layerset import load_layers
from gpucomp.plan.sampler import make_plan
from gpucomp.render.numpy_backend import NumpyBackend

from common import machine, table, workload_layers, write_json

SPEC = dict(layers=8, traits=16, size=2048, seed=1)
CASES = [("png (fast preset)", "png", {}), ("webp q90 method 4", "webp", {}),
         ("webp lossless method 4", "webp", {"lossless": True}), ("jpeg q90", "jpeg", {}),
         ("avif q80 speed 6", "avif", {})]


def run(images, fmt, threads: int, rounds: int) -> tuple[float, float]:
    """Medians over rounds of wall ms per item with `threads` encoding the images at once, and of the
    process's CPU time / wall time (1.0: one core busy; up to 2.0 with two threads and no GIL waits)."""
    per_item, share = [], []
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            sizes = list(pool.map(lambda px: len(encode(px, fmt)), images))
            wall = time.perf_counter() - t0
            per_item.append(wall * 1e3 / len(images))
            share.append((time.process_time() - c0) / wall)
    run.sizes = sizes
    return statistics.median(per_item), statistics.median(share)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--items", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    ls = load_layers(workload_layers(SPEC))
    be = NumpyBackend()
    be.prepare(ls)
    images = [be.composite([c])[0] for c in make_plan([layer.weights for layer in ls.layers], args.items, seed=5).combos]
    rows, res = [], {}
    for label, name, settings in CASES:
        fmt = parse_formats(name, {name: settings} if settings else {}, "bench")[0]
        (one, _), (two, cpu2) = run(images, fmt, 1, args.rounds), run(images, fmt, 2, args.rounds)
        mb = statistics.median(run.sizes) / 1e6
        res[label] = {"ms_1_thread": one, "ms_2_threads": two, "speedup": one / two, "cpu_per_wall_2_threads": cpu2,
                      "mb": mb}
        rows.append((label, f"{one:.0f}", f"{two:.0f}", f"{one / two:.2f}x", f"{cpu2:.2f}", f"{mb:.2f}"))
    m = machine()
    print(f"{args.items} composites {images[0].shape}; medians of {args.rounds} rounds; "
          f"machine: {m['cpu']}, {m['cores']} cores")
    print(table(rows, ("format", "ms/item 1 thread", "ms/item 2 threads", "speedup", "CPU/wall 2 threads", "MB")))
    write_json(args.json, {"machine": m, "items": args.items, "shape": list(images[0].shape), "results": res})
    return 0


if __name__ == "__main__":
    sys.exit(main())
