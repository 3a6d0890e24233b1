"""Scaling out: items/s of one process against Ray with 1 and 2 workers (or --ray-workers), on
the standard workload, on this machine, in one run.

    python benchmarks/bench_scale.py                 # 1000 items, 8 layers, 100 traits, 2048x2048, CPU
    python benchmarks/bench_scale.py --quick         # 200 items at 512x512: a smoke run
    python benchmarks/bench_scale.py --backend cuda  # GPU workers (two workers share one GPU: num_gpus 0.5)

Prints per run items/s (render phase and end to end), the scaling efficiency (items/s with k
workers over k times items/s with one) and the ratio to one process, and Ray's overhead per
shard: worker time not spent rendering, (render seconds x workers - busy seconds) / shards.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import gpucomp

from common import QUICK, STANDARD, machine, table, workload_layers, write_json


def one_run(layers: Path, out: Path, n: int, args, **extra) -> dict:
    t0 = time.perf_counter()
    s = gpucomp.run(layers, out, size=n, seed=1, backend=args.backend, preset=args.preset, force=True, **extra)
    s["wall_seconds"] = time.perf_counter() - t0
    return s


def overhead_ms(s: dict) -> float | None:
    """Worker time not spent rendering shards, per shard (dispatch, results, the driver's journal)."""
    r = s["backend"]["ray"]
    busy = sum(d["seconds"] for d in r["devices"])
    return round((s["render_seconds"] * r["workers"] - busy) / max(r["shards"], 1) * 1e3, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-n", "--items", type=int, help="items (default 1000, quick 200)")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--ray-workers", default="1,2", help="Ray worker counts to measure (default 1,2)")
    ap.add_argument("--one-last", action="store_true",
                    help="measure the one-process run after the Ray runs (a second sample with the order reversed)")
    ap.add_argument("--json", default=None, help="write results here (default benchmarks/results/scale[-quick].json)")
    args = ap.parse_args()
    import ray

    spec = QUICK if args.quick else STANDARD
    n = args.items or (200 if args.quick else 1000)
    layers = workload_layers(spec)
    tmp = Path(tempfile.mkdtemp(prefix="gpucomp-scale-"))
    runs = {}
    try:
        if not args.one_last:
            runs["one process"] = one_run(layers, tmp / "one", n, args)
        t0 = time.perf_counter()
        gpus = 1 if args.backend == "cuda" else 0
        root = str(Path(__file__).resolve().parent.parent)  # the workers import this checkout's gpucomp
        ray.init(num_cpus=os.cpu_count(), num_gpus=gpus or None, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": root}})
        ray_init = time.perf_counter() - t0
        for k in [int(x) for x in args.ray_workers.split(",")]:
            runs[f"ray, {k} worker{'s' if k > 1 else ''}"] = one_run(layers, tmp / f"ray{k}", n, args, ray=True,
                                                                     ray_workers=k)
        ray.shutdown()
        if args.one_last:
            runs["one process"] = one_run(layers, tmp / "one", n, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(runs, spec, n, ray_init, args)
    return 0


def report(runs: dict, spec: dict, n: int, ray_init: float, args) -> None:
    one = runs["one process"]
    first_ray = next((s for name, s in runs.items() if name != "one process"), None)
    rows = []
    for name, s in runs.items():
        ray_info = s["backend"].get("ray")
        k = ray_info["workers"] if ray_info else 1
        eff = s["items_per_s"] / (k * first_ray["items_per_s"]) if ray_info and first_ray else None
        rows.append((name, f"{s['items_per_s']:.2f}", f"{s['items_per_s_total']:.2f}",
                     f"{s['items_per_s'] / one['items_per_s']:.2f}", f"{eff:.2f}" if eff else "-",
                     ray_info["shards"] if ray_info else "-", overhead_ms(s) if ray_info else "-"))
    m = machine()
    print(f"workload: {spec['layers']} layers, {spec['traits']} traits, {spec['size']}x{spec['size']}, {n} items, "
          f"backend {args.backend}, preset {args.preset}; machine: {m['cpu']}, {m['cores']} cores; "
          f"ray.init {ray_init:.1f}s (not counted)")
    print(table(rows, ("run", "items/s (render)", "items/s (end to end)", "vs one process",
                       "scaling efficiency", "shards", "overhead ms/shard")))
    for name, s in runs.items():
        for d in s["backend"].get("ray", {}).get("devices", []):
            print(f"  {name}: worker {d['worker']} ({d['device']}): {d['items']} items, {d['items_per_s']} items/s busy")
    write_json(args.json or str(Path(__file__).parent / "results" / f"scale{'-quick' if args.quick else ''}.json"),
               {"workload": spec, "items": n, "machine": machine(), "ray_init_seconds": ray_init, "runs": runs})


if __name__ == "__main__":
    sys.exit(main())
