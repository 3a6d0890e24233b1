"""The standard workload end to end on this machine (CPU or any backend), against the naive
Pillow pipeline on the same layers and against the floor (PNG encoding alone of the same
composites, same number of workers), all in the same run. It also times writing alone (the run's
PNG bytes as new files in its output folder, same workers): what the machine's filesystem and
memory make a file cost, which the floor does not count.

    python benchmarks/bench_standard.py            # 1000 items, 8 layers, 100 traits, 2048x2048
    python benchmarks/bench_standard.py --quick    # 200 items at 512x512: a smoke run
    python benchmarks/bench_standard.py -n 300 --naive-items 4 --backend cpu   # a shorter run
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from naive_pillow import naive_items_per_s

import gpucomp
from gpucomp.layers.layerset import load_layers
from gpucomp.plan.sampler import make_plan

import hashlips
from common import (
    QUICK,
    STANDARD,
    encode_floor,
    machine,
    peak_rss_mb,
    sample_composites,
    table,
    workload_layers,
    write_floor,
    write_json,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-n", "--items", type=int, help="items (default 1000, quick 200)")
    ap.add_argument("--size", type=int, help="canvas side of the workload's layers (default 2048, quick 512)")
    ap.add_argument("--naive-items", type=int, help="items for the naive Pillow baseline (default 20, quick 50)")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--out", help="output folder (default: a temporary folder, removed after)")
    ap.add_argument("--hashlips-items", type=int, default=8, help="items for the HashLips Art Engine 2 row (0: skip)")
    ap.add_argument("--hashlips-install", action="store_true", help="npm-install Art Engine 2 into benchmarks/.data first")
    ap.add_argument("--floor-sample", type=int, default=16, help="composites of the run to time the encoder on")
    ap.add_argument("--json", default=None, help="write results here (default benchmarks/results/standard[-quick].json)")
    args = ap.parse_args()
    spec = dict(QUICK if args.quick else STANDARD, **({"size": args.size} if args.size else {}))
    n = args.items or (200 if args.quick else 1000)
    naive_n = args.naive_items or (50 if args.quick else 20)
    layers = workload_layers(spec)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gpucomp-bench-"))
    try:
        t0 = time.perf_counter()
        s = gpucomp.run(layers, out, size=n, seed=1, backend=args.backend, preset=args.preset,
                        workers=args.workers, force=True)
        wall = time.perf_counter() - t0
        peak = peak_rss_mb()
        floor = encode_floor(sample_composites(out / "images", args.floor_sample), s["workers"], args.preset)
        pngs = [p.read_bytes() for p in sorted((out / "images").glob("*.png"))[:args.floor_sample]]
        writes = write_floor(pngs, out / ".write-floor", s["workers"])
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    ls = load_layers(layers)
    combos = make_plan([layer.weights for layer in ls.layers], naive_n, seed=2).combos
    naive = naive_items_per_s(ls, combos)
    ratio = s["items_per_s_total"] / naive["items_per_s"]
    hl = hashlips_row(args, layers, spec)
    of_floor = s["items_per_s_total"] / floor["items_per_s"]
    # Encoding and then writing each item on the same workers: the two floors in series.
    with_writes = 1 / (1 / floor["items_per_s"] + 1 / writes["items_per_s"])
    rows = [
        ("gpucomp " + s["backend"]["backend"] + f" ({s['preset']})", n, f"{s['items_per_s_total']:.2f}",
         f"{s['items_per_s']:.2f}", f"{s['avg_png_bytes'] / 1e6:.2f}", f"{peak:.0f}"),
        (f"floor: encode only ({args.preset}, {floor['workers']} workers, median of {floor['rounds']} rounds)",
         floor["items"],
         f"{floor['items_per_s']:.2f}", "-", f"{floor['avg_png_bytes'] / 1e6:.2f}", "-"),
        ("naive Pillow (1 thread)", naive_n, f"{naive['items_per_s']:.3f}", "-",
         f"{naive['avg_png_bytes'] / 1e6:.2f}", "-"),
    ]
    print(f"workload: {spec['layers']} layers, {spec['traits']} traits, {spec['size']}x{spec['size']}; "
          f"machine: {machine()['cpu']}, {machine()['cores']} cores")
    if "items_per_s" in hl:
        rows.append(("HashLips Art Engine 2 (node, sharp)", hl["items"], f"{hl['items_per_s']:.3f}", "-",
                     f"{hl['avg_png_bytes'] / 1e6:.2f}", "-"))
    print(table(rows, ("pipeline", "items", "items/s (end to end)", "items/s (render)", "avg PNG MB", "peak RSS MB")))
    print("stage seconds (summed over workers): " + ", ".join(f"{k} {v:.2f}" for k, v in s["stage_seconds"].items()))
    print(f"end to end / floor: {of_floor:.2f} (encode alone {floor['ms_per_item_per_worker']:.1f} ms per item "
          f"per worker); ratio gpucomp / naive Pillow: {ratio:.1f}x")
    print(f"writing alone: {writes['items_per_s']:.1f} items/s ({writes['ms_per_item_per_worker']:.1f} ms per item per "
          f"worker, new files in the output folder); encode + write in series: {with_writes:.1f} items/s, "
          f"end to end / that: {s['items_per_s_total'] / with_writes:.2f}")
    if "items_per_s" in hl:
        hl["ratio"] = s["items_per_s_total"] / hl["items_per_s"]
        print(f"ratio gpucomp / HashLips Art Engine 2: {hl['ratio']:.1f}x")
    else:
        print(f"HashLips Art Engine 2: not measured ({hl['skipped']})")
    name = f"standard{'-quick' if args.quick else ''}{f'-{args.size}' if args.size else ''}.json"
    write_json(args.json or str(Path(__file__).parent / "results" / name),
               {"workload": spec, "items": n, "machine": machine(), "gpucomp": s, "wall_seconds": wall,
                "peak_rss_mb": peak, "naive_pillow": naive, "ratio_vs_naive": ratio,
                "floor": floor, "ratio_vs_floor": of_floor, "write_floor": writes, "encode_write_floor": with_writes,
                "ratio_vs_encode_write_floor": s["items_per_s_total"] / with_writes, "hashlips": hl})
    return 0


def hashlips_row(args, layers: Path, spec: dict) -> dict:
    """HashLips Art Engine 2 on the same layers (optional: Node.js and the npm package)."""
    if args.hashlips_items <= 0:
        return {"skipped": "--hashlips-items 0"}
    if args.hashlips_install and hashlips.available():
        hashlips.install()
    why = hashlips.available()
    if why:
        return {"skipped": why}
    return hashlips.hashlips_items_per_s(layers, args.hashlips_items, spec["size"], spec["size"])


if __name__ == "__main__":
    sys.exit(main())
