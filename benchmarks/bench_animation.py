"""Animated workload: items/s for each animated format, CPU backend, and each encoder's floor.

Workload (issue 15): 8 layers at 512x512, the top two animated (gpucomp's demo generator: the top
layer's traits are folders of 24 frames, the next layer's animated PNGs of 12), so every item has
24 frames. For each format a whole run (`gpucomp.run`, CPU backend, a PNG still plus the animated
file, every core) gives items/s; the floor is the encoder alone: ms per item to encode the same 24
frames (already composited) on one thread. A run cannot beat floor x cores. The composite row: ms per
item to composite its 24 frames (fused CPU kernel, one thread), the part every format shares.

    python benchmarks/bench_animation.py [-n 8] [--formats webp,apng,gif,mp4,webm] [--json FILE]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import gpucomp
from gpucomp.demo import make_layers
from gpucomp.encode.animated import encoder, parse_animation
from gpucomp.encode.formats import _settings as format_settings
from gpucomp.layers.layerset import load_layers
from gpucomp.plan.frames import frame_view
from gpucomp.plan.sampler import make_plan
from gpucomp.render.numpy_backend import NumpyBackend

from common import DATA, machine, table, write_json

SPEC = dict(layers=8, traits=32, size=512, seed=1, animated=24)
FORMATS = ["webp", "apng", "gif", "mp4", "webm"]


def workload() -> str:
    d = DATA / "anim-{layers}-{traits}-{size}-{seed}-a{animated}".format(**SPEC)
    if not (d / ".complete").exists():
        shutil.rmtree(d, ignore_errors=True)
        make_layers(d, SPEC["layers"], SPEC["traits"], SPEC["size"], SPEC["seed"], animated=SPEC["animated"])
        (d / ".complete").write_text("ok")
    return str(d)


def run_rate(layers: str, fmt: str, items: int) -> float:
    """items/s of a whole CPU run (rendering stage) with animated output `fmt` and a PNG still."""
    out = tempfile.mkdtemp(prefix="bench-anim-")
    try:
        summary = gpucomp.run(layers, out, size=items, seed=3, backend="cpu", force=True, animation=fmt)
        return float(summary["items_per_s"])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def item_frames(layers: str, items: int) -> tuple[list[list], float]:
    """The frames of `items` items, composited once (CPU backend through the frame view), and the
    median ms per item that took."""
    ls = load_layers(layers, animated=True)
    view = frame_view(ls, SPEC["animated"])
    be = NumpyBackend()
    be.prepare(view.layerset)
    combos = make_plan([layer.weights for layer in ls.layers], items, seed=5).combos
    out, ms = [], []
    for combo in combos:
        t0 = time.perf_counter()
        out.append([be.composite([c])[0] for c in view.combos(combo[None, :])])
        ms.append((time.perf_counter() - t0) * 1e3)
    return out, statistics.median(ms)


def floor_ms(frames: list[list], fmt: str, rounds: int) -> tuple[float, float]:
    """Median ms per item to encode an item's frames on one thread, and the median file size (KB)."""
    anim = parse_animation(fmt, {}, format_settings("webp", {}, "webp"), "bench")
    times, sizes = [], []
    for _ in range(rounds):
        for item in frames:
            t0 = time.perf_counter()
            e = encoder(anim, fmt)
            for px in item:
                e.add(px)
            sizes.append(len(e.finish()))
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), statistics.median(sizes) / 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--items", type=int, default=8, help="items per run (default 8)")
    ap.add_argument("--rounds", type=int, default=1, help="encode-only rounds over 4 items (default 1)")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--json")
    args = ap.parse_args()
    layers = workload()
    formats = args.formats.split(",")
    frames, composite_ms = item_frames(layers, 4)
    rows = [("(composite 24 frames only)", "", f"{composite_ms:.0f}", f"{1e3 / composite_ms:.2f}", "")]
    res: dict = {"composite_only_ms_per_item_1_thread": composite_ms, "formats": {}}
    for fmt in formats:
        rate = run_rate(layers, fmt, args.items)
        ms, kb = floor_ms(frames, fmt, args.rounds)
        res["formats"][fmt] = {"items_per_s": rate, "encode_only_ms_per_item_1_thread": ms,
                               "encode_only_items_per_s_1_thread": 1e3 / ms, "kb_per_item": kb}
        rows.append((fmt, f"{rate:.2f}", f"{ms:.0f}", f"{1e3 / ms:.2f}", f"{kb:.0f}"))
    m = machine()
    load = os.getloadavg()
    print(f"{args.items} items of 24 frames, 8 layers (2 animated), 512x512, CPU backend; machine: {m['cpu']}, "
          f"{m['cores']} cores, load {load[0]:.1f}")
    print(table(rows, ("animation", "items/s (run)", "encode-only ms/item (1 thread)", "floor items/s (1 thread)",
                       "KB/item")))
    write_json(args.json, {"machine": m, "load_1min": load[0], "workload": SPEC, "items": args.items,
                           "results": res, "note": "CPU only, GPU not measured"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
