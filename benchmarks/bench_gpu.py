"""GPU check benchmark: the standard workload on the CUDA backend and on the CPU backend of
the same machine, in one run, with composite-only kernel throughput next to a measured
device-to-device copy, copy-back bandwidth, encode rate, cache/prefetch stats, peak VRAM.

    PYTHONPATH=. python3 benchmarks/bench_gpu.py --json OUT.json [--items 1000] [--cpu-items 200]

`--smoke` runs every step at toy sizes (64x64, a few items): tests/test_cuda_glue.py runs it on the
CPU with a stand-in for CuPy, so the script cannot fail on a GPU machine for a Python reason.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import QUICK, STANDARD, machine, peak_rss_mb, table, workload_layers, write_json

import numpy as np

import gpucomp


def copy_bandwidth(cp, nbytes: int = 1 << 30) -> dict:
    """Device-to-device copy (bytes read + written per second) and device-to-pinned-host copy."""
    import cupyx

    a = cp.empty(nbytes, cp.uint8)
    b = cp.empty_like(a)
    b[...] = a
    cp.cuda.Device().synchronize()
    t = []
    for _ in range(5):
        s, e = cp.cuda.Event(), cp.cuda.Event()
        s.record()
        b[...] = a
        e.record()
        e.synchronize()
        t.append(cp.cuda.get_elapsed_time(s, e) / 1e3)
    d2d = 2 * nbytes / float(np.median(t)) / 1e9
    h = cupyx.empty_pinned(nbytes // 4, np.uint8)
    src = a[: nbytes // 4]
    t = []
    for _ in range(5):
        t0 = time.perf_counter()
        cp.cuda.runtime.memcpy(h.ctypes.data, src.data.ptr, h.nbytes, 2)
        t.append(time.perf_counter() - t0)
    d2h = h.nbytes / float(np.median(t)) / 1e9
    del a, b
    cp.get_default_memory_pool().free_all_blocks()
    return {"d2d_gb_per_s": d2d, "d2h_pinned_gb_per_s": d2h}


def encode_only(backend, combos, workers: int) -> dict:
    """The encode gap: per-item encode time of GPU-filtered rows with no GPU work running, on
    1 thread and on `workers` threads, to set against the encode stage inside the pipeline
    (98 vs 62 ms/item/worker on the H100 box in device run 2, unexplained)."""
    from concurrent.futures import ThreadPoolExecutor

    from gpucomp.encode import encode_filtered, get_preset
    from gpucomp.stats import Stats

    preset = get_preset("fast")
    outs = [o for _, batch in backend.render(combos, Stats(), preset.filter) for o in batch]

    def enc(o):
        return len(encode_filtered(o.rows, o.width, o.height, o.channels, preset))

    first = outs[:16]
    t0 = time.perf_counter()
    for o in first:
        enc(o)
    one = (time.perf_counter() - t0) / len(first)
    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        list(pool.map(enc, outs))
        wall = time.perf_counter() - t0
    return {"items": len(outs), "ms_per_item_1_thread": one * 1e3, "workers": workers,
            "ms_per_item_per_worker": wall * workers / len(outs) * 1e3, "items_per_s": len(outs) / wall}


SMOKE = dict(layers=4, traits=14, size=64, seed=1)


def _fmt(d: dict, key: str, spec: str) -> str:
    return format(d[key], spec) if key in d else "error"


def run(layers, n, backend, workers=0, **kw) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"gpucomp-{backend}-", dir=kw.pop("tmp", None)))
    try:
        t0 = time.perf_counter()
        s = gpucomp.run(layers, out, size=n, seed=1, backend=backend, workers=workers, force=True, **kw)
        s["wall"] = time.perf_counter() - t0
        return s
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="toy sizes: checks that every step runs")
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--cpu-items", type=int, default=200)
    ap.add_argument("--tmp", help="folder for outputs (default system temp)")
    ap.add_argument("--json")
    args = ap.parse_args()
    import cupy as cp

    from gpucomp.backends.cuda_backend import CudaBackend, device_report
    from gpucomp.layers import load_layers
    from gpucomp.plan import make_plan

    spec = SMOKE if args.smoke else QUICK if args.quick else STANDARD
    n_warm, n_combos, n_copy = (8, 16, 1 << 20) if args.smoke else (128, 256, 1 << 30)
    if args.smoke:
        args.items, args.cpu_items = min(args.items, 8), min(args.cpu_items, 4)
    layers = workload_layers(spec)
    dev = device_report()
    print("\n".join(dev))
    bw = copy_bandwidth(cp, n_copy)
    warm = run(layers, n_warm, "cuda", tmp=args.tmp)  # first use: NVRTC compile, pinned pool growth
    print(f"warm-up run ({n_warm} items, first use): {warm['items_per_s']:.1f} items/s render", flush=True)
    gpu = run(layers, args.items, "cuda", tmp=args.tmp)
    cached = run(layers, min(args.items, 300), "cuda", tmp=args.tmp, cache="on")
    cpu = run(layers, args.cpu_items, "cpu", tmp=args.tmp)
    ls = load_layers(layers)
    b = CudaBackend()
    b.prepare(ls)
    combos = make_plan([layer.weights for layer in ls.layers], n_combos, seed=1).combos
    comp = b.composite_only(combos)
    try:
        import os

        gap = encode_only(b, combos[:n_combos // 2], os.cpu_count() or 1)
    except Exception as err:  # a diagnostic: never lose the rest of the results to it
        gap = {"error": repr(err)}
    print(f"encode only (no GPU work alongside): {gap}", flush=True)
    # Deflate on the GPU last: it is new, and a kernel fault would spoil the CUDA context for
    # everything after it, so every figure above is taken first.
    try:
        warm_dfl = run(layers, min(64, n_warm), "cuda", tmp=args.tmp, preset="gpu")  # first use: NVRTC compile
        print(f"warm-up run, gpu preset ({warm_dfl['items']} items, first use): {warm_dfl['items_per_s_total']:.1f} items/s "
              f"end to end", flush=True)
        gpu_dfl = run(layers, args.items, "cuda", tmp=args.tmp, preset="gpu")
    except Exception as err:
        gpu_dfl = {"error": repr(err)}
    print(f"gpu preset run: {gpu_dfl.get('items_per_s_total', gpu_dfl)}", flush=True)
    sweep = []
    # The default (64 threads, global loads) first; the others are kernel variants.
    for threads, stage in ((64, False), (32, False), (128, False), (256, False), (64, True), (128, True), (256, True)):
        try:
            sweep.append(b.deflate_only(combos, threads=threads, stage=stage))
        except Exception as err:
            sweep.append({"threads": threads, "stage": stage, "error": repr(err)})
        print(f"deflate only (kernel + gather, one batch): {sweep[-1]}", flush=True)
    dfl_only = sweep[0]
    b.close()
    peak_vram = gpu["backend"]["peak_vram_bytes"]
    ratio = gpu["items_per_s_total"] / cpu["items_per_s_total"]
    def enc_rate(s: dict) -> float:  # items per second of the encode stage across all workers
        busy = s["stage_seconds"].get("encode", 0) / s["workers"]
        return s["items"] / busy if busy > 0 else float("nan")

    rows = [
        ("end-to-end items/s (load+plan+render+write)", f"{gpu['items_per_s_total']:.1f}", f"{cpu['items_per_s_total']:.1f}"),
        ("end-to-end items/s, gpu preset (deflate on the GPU)", _fmt(gpu_dfl, "items_per_s_total", ".1f"), "-"),
        ("render-phase items/s, gpu preset", _fmt(gpu_dfl, "items_per_s", ".1f"), "-"),
        ("avg PNG MB, gpu preset", f"{gpu_dfl['avg_png_bytes'] / 1e6:.2f}" if "avg_png_bytes" in gpu_dfl else "-", "-"),
        ("deflate-only items/s (kernel + gather, batch)", _fmt(dfl_only, "items_per_s", ".0f"), "-"),
        ("render-phase items/s", f"{gpu['items_per_s']:.1f}", f"{cpu['items_per_s']:.1f}"),
        ("composite-only items/s (kernel, batch)", f"{comp['items_per_s']:.0f}", "-"),
        ("composite achieved GB/s / D2D copy GB/s", f"{comp['gb_per_s']:.0f} / {bw['d2d_gb_per_s']:.0f}", "-"),
        ("copy-back (D2H pinned) GB/s", f"{bw['d2h_pinned_gb_per_s']:.1f}", "-"),
        ("encode items/s (all workers)", f"{enc_rate(gpu):.0f}", f"{enc_rate(cpu):.0f}"),
        ("avg PNG MB", f"{gpu['avg_png_bytes'] / 1e6:.2f}", f"{cpu['avg_png_bytes'] / 1e6:.2f}"),
        ("peak VRAM GiB", f"{peak_vram / 2**30:.2f}", "-"),
        ("items", gpu["items"], cpu["items"]),
        ("with prefix cache forced on: render items/s", f"{cached['items_per_s']:.1f}", "-"),
    ]
    print(f"workload: {spec}; machine: {machine()['cpu']}, {machine()['cores']} cores")
    print(table(rows, ("measure", "cuda", "cpu")))
    print(f"GPU/CPU end-to-end ratio: {ratio:.1f}x; composite / copy bandwidth: {comp['gb_per_s'] / bw['d2d_gb_per_s']:.2f}")
    print(f"cuda cache: {gpu['backend']['cache']}; prefetch: {gpu['backend']['prefetch']}")
    print(f"cuda, cache forced on ({cached['items']} items): {cached['backend']['cache']}")
    print(f"cuda stages: {gpu['stage_seconds']}")
    print(f"cuda, gpu preset, stages: {gpu_dfl.get('stage_seconds')}")
    print(table([(d["threads"], "shared" if d["stage"] else "global", _fmt(d, "items_per_s", ".0f"),
                  _fmt(d, "gb_per_s_in", ".1f"), _fmt(d, "out_over_in", ".4f")) for d in sweep],
                ("deflate threads/segment", "input from", "items/s (kernel+gather)", "GB/s in", "out/in")))
    if "items_per_s_total" in gpu_dfl:
        print(f"gpu preset / CPU end to end: {gpu_dfl['items_per_s_total'] / cpu['items_per_s_total']:.1f}x")
    print(f"cpu stages: {cpu['stage_seconds']}")
    write_json(args.json, {"device": dev, "machine": machine(), "workload": spec, "bandwidth": bw, "cuda": gpu,
                           "cpu": cpu, "cuda_warmup": warm, "cuda_cache_on": cached, "composite_only": comp, "encode_only": gap,
                           "cuda_gpu_preset": gpu_dfl, "deflate_only": dfl_only, "deflate_sweep": sweep, "ratio": ratio, "peak_rss_mb": peak_rss_mb()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
