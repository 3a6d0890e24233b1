"""Shared helpers for the benchmark scripts: standard workload layers, machine facts, output."""
from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpucomp.demo import make_layers  # noqa: E402

DATA = Path(__file__).resolve().parent / ".data"
STANDARD = dict(layers=8, traits=100, size=2048, seed=1)
QUICK = dict(layers=8, traits=100, size=512, seed=1)


def workload_layers(spec: dict) -> Path:
    """Generate (once, cached under benchmarks/.data) the layers for a workload spec."""
    d = DATA / f"layers-{spec['layers']}-{spec['traits']}-{spec['size']}-{spec['seed']}"
    stamp = d / ".complete"
    if not stamp.exists():
        shutil.rmtree(d, ignore_errors=True)
        t0 = time.perf_counter()
        make_layers(d, spec["layers"], spec["traits"], spec["size"], spec["seed"])
        stamp.write_text("ok")
        print(f"generated layers in {time.perf_counter() - t0:.1f}s -> {d}", file=sys.stderr)
    return d


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024


def table(rows: list[tuple], headers: tuple) -> str:
    cols = [headers] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    fmt = " | ".join(f"{{:{w}}}" for w in widths)
    lines = [fmt.format(*headers), "-+-".join("-" * w for w in widths)]
    lines += [fmt.format(*r) for r in cols[1:]]
    return "\n".join(lines)


def write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2))
        print(f"wrote {path}", file=sys.stderr)


def sample_composites(images_dir: Path, k: int) -> list:
    """Decode (untimed) up to k of a run's PNGs: the same composites the run encoded."""
    import numpy as np
    from PIL import Image

    paths = sorted(images_dir.glob("*.png"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)[:k]
    return [np.asarray(Image.open(p)) for p in paths]


def write_floor(pngs: list, folder: Path, workers: int, items: int = 0, rounds: int = 3) -> dict:
    """What writing alone costs here: items/s of writing `pngs` (cycled) as new files into `folder`
    (inside the run's output folder, so the same filesystem) with gpucomp's atomic writes on
    `workers` threads and its streamed writeback (gpucomp/outdir/writeback.py, waited for in the round's
    time); the median of `rounds`, every file kept until the end, as a run keeps its output."""
    import statistics
    from concurrent.futures import ThreadPoolExecutor

    from gpucomp._shared.files import atomic_write_bytes
    from gpucomp.outdir.writeback import Writeback

    items = items or max(4 * len(pngs), 8 * workers)
    times = []
    folder.mkdir()
    try:
        with ThreadPoolExecutor(workers) as pool:
            for r in range(rounds):
                t0 = time.perf_counter()
                with Writeback() as back:
                    list(pool.map(lambda i, r=r, back=back: atomic_write_bytes(folder / f"{r}-{i}.png", pngs[i % len(pngs)],
                                                               writeback=back), range(items)))
                times.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    dt = statistics.median(times)
    return {"items": items, "rounds": rounds, "round_seconds": times, "workers": workers,
            "items_per_s": items / dt, "ms_per_item_per_worker": dt * workers / items * 1e3}


def encode_floor(images: list, workers: int, preset: str = "fast", items: int = 0, rounds: int = 3) -> dict:
    """The floor: items/s of PNG encoding alone (filter + deflate + chunks, what the `encode` stage
    does minus the hash) on `workers` threads, cycling over `images` for `items` encodes a round;
    the median round of `rounds` (one round is ~1.5 s at 2048x2048: a moment of other load on the
    machine would otherwise move the floor, and every ratio to it, by itself)."""
    import statistics
    from concurrent.futures import ThreadPoolExecutor

    from gpucomp.encode.png import encode_png

    items = items or max(4 * len(images), 8 * workers)
    work = [images[i % len(images)] for i in range(items)]
    encode_png(work[0], preset, opaque_rgb=True)  # warm
    times = []
    with ThreadPoolExecutor(workers) as pool:
        for _ in range(rounds):
            t0 = time.perf_counter()
            sizes = list(pool.map(lambda im: len(encode_png(im, preset, opaque_rgb=True)), work))
            times.append(time.perf_counter() - t0)
    dt = statistics.median(times)
    return {"items": items, "rounds": rounds, "round_seconds": times, "workers": workers, "seconds": dt,
            "items_per_s": items / dt, "ms_per_item_per_worker": dt * workers / items * 1e3,
            "avg_png_bytes": sum(sizes) // items}

