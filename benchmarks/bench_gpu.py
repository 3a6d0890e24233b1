"""GPU check benchmark: the standard workload on the CUDA backend and on the CPU backend of
the same machine, in one run, with composite-only kernel throughput next to a measured
device-to-device copy, copy-back bandwidth, encode rate, cache/prefetch stats, peak VRAM, the
deflate kernel's variants, encode workers (cores vs cores - 1) and memory flatness in N.

    PYTHONPATH=. python3 benchmarks/bench_gpu.py --json OUT.json --jsonl OUT.jsonl [--items 1000]
    PYTHONPATH=. python3 benchmarks/bench_gpu.py --presets 300 --jsonl OUT.jsonl   # each preset, N items

Every stage is printed and written the moment it ends (one JSON line appended to --jsonl, the whole
result so far rewritten to --json), so a timeout or a failure in one stage loses nothing before it;
a stage that fails records its error and the next one runs. Without a usable GPU it says so in one
line and exits 0, having measured nothing.

`--smoke` runs every step at toy sizes (64x64, a few items): tests/render/test_cuda_glue.py runs it on the
CPU with a stand-in for CuPy, so the script cannot fail on a GPU machine for a Python reason.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

import gpucomp

from common import QUICK, STANDARD, machine, peak_rss_mb, table, workload_layers

PRESETS = ("fast", "gpu", "balanced", "small")


class Results:
    """Stage results, each printed and written as soon as its stage ends."""

    def __init__(self, json_path: str | None, jsonl_path: str | None):
        self.json_path, self.jsonl_path = json_path, jsonl_path
        self.data: dict = {}

    def stage(self, name: str, fn, *args, **kw) -> dict:
        """Run one stage; its result (or its error) is recorded under `name` at once."""
        t0 = time.perf_counter()
        try:
            r = fn(*args, **kw)
        except Exception as err:  # one stage's failure must not cost the others' figures
            print(f"stage {name} failed:", file=sys.stderr)
            traceback.print_exc()
            r = {"error": f"{type(err).__name__}: {err}"}
        r = r if isinstance(r, dict) else {"value": r}
        self.add(name, r, time.perf_counter() - t0)
        return r

    def add(self, name: str, r, seconds: float = 0.0) -> None:
        self.data[name] = r
        line = {"stage": name, "seconds": round(seconds, 2), "result": r}
        print(f"[{name}] {_brief(r)} ({seconds:.1f} s)", flush=True)
        if self.jsonl_path:
            Path(self.jsonl_path).parent.mkdir(parents=True, exist_ok=True)
            with open(self.jsonl_path, "a") as f:
                f.write(json.dumps(line, default=str) + "\n")
        if self.json_path:
            Path(self.json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.json_path).write_text(json.dumps(self.data, indent=2, default=str))


def _brief(r) -> str:
    if not isinstance(r, dict):
        return str(r)[:300]
    if "error" in r:
        return f"ERROR {r['error']}"
    keys = ("items_per_s_total", "items_per_s", "avg_png_bytes", "gb_per_s", "d2d_gb_per_s", "peak_rss_mb")
    shown = {k: (round(r[k], 2) if isinstance(r[k], float) else r[k]) for k in keys if k in r}
    return json.dumps(shown or r, default=str)[:300]


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

    from gpucomp.encode.png import encode_filtered, get_preset
    from gpucomp.outdir.stats import Stats

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


def deflate_sweep(b, combos) -> list:
    """The deflate kernel's variants on one batch: the default (64 threads, global loads) first."""
    sweep = []
    for threads, stage in ((64, False), (32, False), (128, False), (256, False), (64, True), (128, True), (256, True)):
        try:
            sweep.append(b.deflate_only(combos, threads=threads, stage=stage))
        except Exception as err:
            sweep.append({"threads": threads, "stage": stage, "error": repr(err)})
        print(f"deflate only (kernel + gather, one batch): {sweep[-1]}", flush=True)
    return sweep


def workers_sweep(layers, n: int, tmp) -> dict:
    """End to end with one encode worker per core and with one core left to the thread that feeds
    the GPU (CudaBackend.encode_workers), for the fast and gpu presets."""
    cores = os.cpu_count() or 1
    out = {"cores": cores}
    for preset in ("gpu", "fast"):
        for w in sorted({cores, max(1, cores - 1)}, reverse=True):
            s = run(layers, n, "cuda", workers=w, tmp=tmp, preset=preset)
            out[f"{preset}_workers_{w}"] = s["items_per_s_total"]
    return out


def flatness(layers_spec: str, counts: list[int], preset: str) -> dict:
    """Peak RSS (pinned host memory included: it is resident) of fresh processes rendering N items,
    for each N: flat in N means no per-batch leak of pinned or other host memory."""
    out = {"preset": preset}
    for n in counts:
        r = subprocess.run([sys.executable, __file__, "--child", str(n), "--child-preset", preset,
                            "--child-layers", layers_spec], capture_output=True, text=True)
        if r.returncode:
            out[str(n)] = {"error": r.stderr.strip()[-500:]}
            continue
        out[str(n)] = json.loads(r.stdout.strip().splitlines()[-1])
    rss = [out[str(n)].get("peak_rss_mb") for n in counts]
    if all(rss):
        out["rss_ratio_last_over_first"] = rss[-1] / rss[0]
    return out


def child(n: int, preset: str, layers: str) -> int:
    """One run in this fresh process; prints its figures as one JSON line."""
    out = Path(tempfile.mkdtemp(prefix="gpucomp-flat-"))
    try:
        s = gpucomp.run(layers, out, size=n, seed=1, backend="cuda", force=True, preset=preset)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"items": n, "items_per_s_total": s["items_per_s_total"], "peak_rss_mb": rss,
                      "peak_vram_bytes": s["backend"]["peak_vram_bytes"]}))
    return 0


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="512x512 layers instead of the standard 2048x2048")
    ap.add_argument("--smoke", action="store_true", help="toy sizes: checks that every step runs")
    ap.add_argument("--presets", type=int, metavar="N", help="only: N items of each preset on the CUDA backend")
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--cpu-items", type=int, default=200)
    ap.add_argument("--flat", type=int, default=0, metavar="N",
                    help="also peak RSS of fresh runs of N and 3N items (gpu preset)")
    ap.add_argument("--tmp", help="folder for outputs (default system temp)")
    ap.add_argument("--json", help="the whole result so far, rewritten after every stage")
    ap.add_argument("--jsonl", help="one JSON line appended per stage as it ends")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-preset", help=argparse.SUPPRESS)
    ap.add_argument("--child-layers", help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    if args.child:
        return child(args.child, args.child_preset, args.child_layers)
    from gpucomp.render.select import cuda_status

    res = Results(args.json, args.jsonl)
    ok, why = cuda_status()
    if not ok:
        print(f"no GPU: {why}; nothing measured")
        res.add("device", {"gpu": False, "why": why, "machine": machine()})
        return 0
    spec = SMOKE if args.smoke else QUICK if args.quick else STANDARD
    if args.smoke:
        args.items, args.cpu_items = min(args.items, 8), min(args.cpu_items, 4)
    layers = workload_layers(spec)
    from gpucomp.render.cuda_backend import device_report

    res.stage("device", lambda: {"gpu": True, "report": device_report(), "machine": machine(), "workload": spec})
    if args.presets:
        for preset in PRESETS:
            res.stage(f"preset_{preset}", run, layers, args.presets, "cuda", tmp=args.tmp, preset=preset)
        print(table([(p, _fmt(res.data[f"preset_{p}"], "items_per_s_total", ".1f"),
                      _fmt(res.data[f"preset_{p}"], "items_per_s", ".1f"),
                      f"{res.data[f'preset_{p}']['avg_png_bytes'] / 1e6:.2f}"
                      if "avg_png_bytes" in res.data[f"preset_{p}"] else "-")
                     for p in PRESETS], ("preset (cuda backend)", "items/s end to end", "render phase", "avg PNG MB")))
        return 0
    measure(args, res, layers, spec)
    print_table(res.data, spec)
    res.add("peak_rss_mb", {"peak_rss_mb": peak_rss_mb()})
    return 0


def measure(args, res: Results, layers, spec) -> None:
    """Every stage, most established first: deflate on the GPU runs after the figures that cannot
    depend on it (a kernel fault spoils the CUDA context for everything after it)."""
    import cupy as cp

    from gpucomp.layers.layerset import load_layers
    from gpucomp.plan.sampler import make_plan
    from gpucomp.render.cuda_backend import CudaBackend

    n_warm, n_combos, n_copy = (8, 16, 1 << 20) if args.smoke else (128, 256, 1 << 30)
    res.stage("bandwidth", copy_bandwidth, cp, n_copy)
    res.stage("cuda_warmup", run, layers, n_warm, "cuda", tmp=args.tmp)  # NVRTC compile, pinned pool growth
    res.stage("cuda", run, layers, args.items, "cuda", tmp=args.tmp)
    res.stage("cpu", run, layers, args.cpu_items, "cpu", tmp=args.tmp)
    res.stage("cuda_cache_on", run, layers, min(args.items, 300), "cuda", tmp=args.tmp, cache="on")
    ls = load_layers(layers)
    b = CudaBackend()
    b.prepare(ls)
    combos = make_plan([layer.weights for layer in ls.layers], n_combos, seed=1).combos
    res.stage("composite_only", b.composite_only, combos)
    res.stage("encode_only", encode_only, b, combos[:n_combos // 2], os.cpu_count() or 1)
    res.stage("cuda_gpu_preset_warmup", run, layers, min(64, n_warm), "cuda", tmp=args.tmp, preset="gpu")
    res.stage("cuda_gpu_preset", run, layers, args.items, "cuda", tmp=args.tmp, preset="gpu")
    res.stage("deflate_sweep", lambda: {"variants": deflate_sweep(b, combos)})
    b.close()
    res.stage("workers", workers_sweep, layers, min(args.items, 300), args.tmp)
    if args.flat:
        res.stage("flatness", flatness, str(layers), [args.flat, 3 * args.flat], "gpu")


def print_table(d: dict, spec) -> None:
    """The summary table from whatever stages finished."""
    gpu, cpu, dfl = d.get("cuda", {}), d.get("cpu", {}), d.get("cuda_gpu_preset", {})
    comp, bw, sweep = d.get("composite_only", {}), d.get("bandwidth", {}), d.get("deflate_sweep", {}).get("variants", [])
    dfl_only = sweep[0] if sweep else {}

    def enc_rate(s: dict) -> str:  # items per second of the encode stage across all workers
        busy = s.get("stage_seconds", {}).get("encode", 0) / max(s.get("workers", 1), 1)
        return f"{s['items'] / busy:.0f}" if busy > 0 else "-"

    def mb(s: dict) -> str:
        return f"{s['avg_png_bytes'] / 1e6:.2f}" if "avg_png_bytes" in s else "-"

    rows = [
        ("end-to-end items/s (load+plan+render+write)", _fmt(gpu, "items_per_s_total", ".1f"),
         _fmt(cpu, "items_per_s_total", ".1f")),
        ("end-to-end items/s, gpu preset (deflate on the GPU)", _fmt(dfl, "items_per_s_total", ".1f"), "-"),
        ("render-phase items/s, gpu preset", _fmt(dfl, "items_per_s", ".1f"), "-"),
        ("avg PNG MB, gpu preset", mb(dfl), "-"),
        ("deflate-only items/s (kernel + gather, batch)", _fmt(dfl_only, "items_per_s", ".0f"), "-"),
        ("render-phase items/s", _fmt(gpu, "items_per_s", ".1f"), _fmt(cpu, "items_per_s", ".1f")),
        ("composite-only items/s (kernel, batch)", _fmt(comp, "items_per_s", ".0f"), "-"),
        ("composite achieved GB/s / D2D copy GB/s", f"{_fmt(comp, 'gb_per_s', '.0f')} / {_fmt(bw, 'd2d_gb_per_s', '.0f')}",
         "-"),
        ("copy-back (D2H pinned) GB/s", _fmt(bw, "d2h_pinned_gb_per_s", ".1f"), "-"),
        ("encode items/s (all workers)", enc_rate(gpu) if gpu else "-", enc_rate(cpu) if cpu else "-"),
        ("avg PNG MB", mb(gpu), mb(cpu)),
        ("peak VRAM GiB", f"{gpu['backend']['peak_vram_bytes'] / 2**30:.2f}" if "backend" in gpu else "-", "-"),
        ("items", gpu.get("items", "-"), cpu.get("items", "-")),
        ("with prefix cache forced on: render items/s", _fmt(d.get("cuda_cache_on", {}), "items_per_s", ".1f"), "-"),
    ]
    print(f"workload: {spec}; machine: {machine()['cpu']}, {machine()['cores']} cores")
    print(table(rows, ("measure", "cuda", "cpu")))
    print(table([(v["threads"], "shared" if v["stage"] else "global", _fmt(v, "items_per_s", ".0f"),
                  _fmt(v, "gb_per_s_in", ".1f"), _fmt(v, "out_over_in", ".4f")) for v in sweep],
                ("deflate threads/segment", "input from", "items/s (kernel+gather)", "GB/s in", "out/in")))
    for name in ("cuda", "cuda_gpu_preset", "cpu"):
        if "stage_seconds" in d.get(name, {}):
            print(f"{name} stages: {d[name]['stage_seconds']}")
    for name in ("workers", "flatness"):
        if name in d:
            print(f"{name}: {d[name]}")


if __name__ == "__main__":
    sys.exit(main())
