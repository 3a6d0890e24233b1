"""CPU compositing alone, standard workload: the fused kernel against the NumPy sparse path, one
thread and two, the kernel writing PNG-filtered rows (what the pipeline asks of it for a PNG), next
to the `fast` encode of the same items (the floor), all in one run.

    python benchmarks/bench_composite.py -n 16          # 2048x2048, 8 layers, 100 traits
    python benchmarks/bench_composite.py --quick

Per-item times are this thread's CPU time (time.thread_time), medians: less sensitive to other
processes on a shared machine than wall time. Thread scaling is wall time (it has to be): for the
kernel, 1- and 2-thread runs alternate three times and the medians are reported.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gpucomp.encode.png import encode_png
from gpucomp.layers.layerset import load_layers
from gpucomp.plan.sampler import make_plan
from gpucomp.render.numpy_backend import NumpyBackend

from common import QUICK, STANDARD, machine, table, workload_layers, write_json


def cpu_ms(fn, items) -> list[float]:
    out = []
    for it in items:
        t0 = time.thread_time()
        fn(it)
        out.append((time.thread_time() - t0) * 1e3)
    return out


def threads_rate(fn, items, threads: int) -> tuple[float, float]:
    """(items/s, CPU seconds of this process per wall second: above 1 only if threads overlap,
    i.e. the GIL is released; a loaded machine lowers the first, not the meaning of the second)."""
    with ThreadPoolExecutor(threads) as ex:
        t0, c0 = time.perf_counter(), time.process_time()
        list(ex.map(fn, items))
        wall = time.perf_counter() - t0
        return len(items) / wall, (time.process_time() - c0) / wall


def prepared(layers: Path, kernel: bool) -> tuple[NumpyBackend, float]:
    be = NumpyBackend(kernel=kernel)
    t0 = time.perf_counter()
    be.prepare(load_layers(layers), release_pixels=True)
    return be, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-n", "--items", type=int, default=16)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    spec = QUICK if args.quick else STANDARD
    layers = workload_layers(spec)
    combos = list(make_plan([la.weights for la in load_layers(layers).layers], args.items, seed=2).combos)
    res: dict = {}
    rows = []
    for kernel in (False, True):
        be, prep = prepared(layers, kernel)
        name = "fused kernel" if kernel else "NumPy sparse"
        def one(c, be=be):
            return be.composite([c])[0]

        one(combos[0])  # compile / warm caches
        ms = cpu_ms(one, combos)
        work = combos * (8 if kernel else 1)  # a few seconds of work per rate either way
        rates = {1: [], 2: []}
        for _ in range(3 if kernel else 1):  # alternate 1 and 2 threads: load drifts between runs
            for nt in (1, 2):
                rates[nt].append(threads_rate(one, work, nt))
        r1 = statistics.median(r for r, _ in rates[1])
        r2, busy2 = sorted(rates[2])[len(rates[2]) // 2]
        r = {"prepare_s": prep, "trait_mb": be.resident_bytes / 1e6, "ms_median": statistics.median(ms),
             "items_per_s_1": r1, "items_per_s_2": r2, "cpu_per_wall_2": busy2}
        res[name] = r
        rows.append((name, f"{r['ms_median']:.1f}", f"{r1:.1f}", f"{r2:.1f} (CPU/wall {busy2:.2f})",
                     f"{r['trait_mb']:.0f}", f"{prep:.1f}"))
        if kernel:
            imgs = [one(c) for c in combos]
            rows_ms = cpu_ms(lambda c, be=be: be.composite_filtered(c, "up"), combos)
            res["kernel_png_rows_ms_median"] = statistics.median(rows_ms)
            rows.append(("fused kernel, Up-filtered PNG rows", f"{statistics.median(rows_ms):.1f}", "-", "-", "-", "-"))
        be.close()
    enc = cpu_ms(lambda im: encode_png(im, "fast", opaque_rgb=True), imgs)  # filter + deflate: the floor
    res["encode_fast_ms_median"] = statistics.median(enc)
    rows.append(("encode (fast, ISA-L 2)", f"{statistics.median(enc):.1f}", "-", "-", "-", "-"))
    print(f"workload: {spec}; {len(combos)} items; machine: {machine()['cpu']}, {machine()['cores']} cores")
    print(table(rows, ("composite", "CPU ms/item (median)", "items/s 1 thread", "items/s 2 threads",
                       "trait MB", "prepare s")))
    k, n = res["fused kernel"], res["NumPy sparse"]
    print(f"kernel / NumPy speed-up (CPU ms): {n['ms_median'] / k['ms_median']:.2f}x; "
          f"2-thread scaling of the kernel: {k['items_per_s_2'] / k['items_per_s_1']:.2f}x")
    write_json(args.json or str(Path(__file__).parent / "results" / f"composite{'-quick' if args.quick else ''}.json"),
               {"workload": spec, "items": len(combos), "machine": machine(), **res})
    return 0


if __name__ == "__main__":
    sys.exit(main())
