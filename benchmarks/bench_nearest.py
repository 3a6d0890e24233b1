"""Pixel-art scaling: items/s of a run with a nearest copy ([[output.sizes]] scale = k) on the CPU
backend, on the CUDA backend with the copies made on the GPU in the batch, and on the CUDA backend
with them made on the CPU (np.repeat, as before), in one run; files compared byte for byte.

    PYTHONPATH=. python3 benchmarks/bench_nearest.py --json OUT.json          # 64x64 layers x16, 300 items
    PYTHONPATH=. python3 benchmarks/bench_nearest.py --size 24 --scale 32 -n 500

Without a usable GPU it measures the CPU run only and says so (exit 0). `--smoke`: toy sizes
(tests/render/test_cuda_glue.py runs it on the CuPy stand-in, so it cannot fail on a device for a Python
reason; its figures there mean nothing).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import gpucomp
from gpucomp.config import Config, with_overrides
from gpucomp.demo import make_layers
from gpucomp.outdir.pipeline import Generation

from common import machine, workload_layers


def run_one(layers: Path, out: Path, kw: dict, backend=None) -> dict:
    """One run; its items/s (render phase), encode seconds (summed over workers) and the backend's stats."""
    t0 = time.perf_counter()
    if backend is None:
        summary = gpucomp.run(layers, out, backend="cpu", **kw)
    else:
        gen = Generation(layers, out, with_overrides(Config(), force=True, **kw), backend=backend)
        for _ in gen:
            pass
        summary = gen.summary
    wall = time.perf_counter() - t0
    st = summary.get("stage_seconds", {})
    return {"items_per_s": summary.get("items_per_s"), "wall_s": round(wall, 3), "encode_s": st.get("encode"),
            "backend": {k: summary["backend"].get(k) for k in ("backend", "batch_size", "device_sizes", "fallbacks")
                        if k in summary["backend"]}}


def identical(a: Path, b: Path) -> dict:
    names = sorted(p.relative_to(a) for p in (a / "images").rglob("*.*"))
    differ = [str(n) for n in names if (a / n).read_bytes() != (b / n).read_bytes()]
    return {"files": len(names), "differ": differ[:10], "identical": not differ}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--items", type=int, default=300)
    ap.add_argument("--size", type=int, default=64, help="layers' canvas side (pixels)")
    ap.add_argument("--scale", type=int, default=16)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--smoke", action="store_true", help="toy sizes: checks the script, measures nothing")
    args = ap.parse_args()
    if args.smoke:
        args.items, args.size, args.scale = 6, 16, 3
    from gpucomp.render.select import cuda_status

    tmp = Path(tempfile.mkdtemp(prefix="gpucomp-nearest-"))
    spec = dict(layers=6, traits=20, size=args.size, seed=1)
    layers = make_layers(tmp / "layers", **spec) if args.smoke else workload_layers(spec)
    kw = dict(size=args.items, seed=1, sizes=[{"name": f"x{args.scale}", "scale": args.scale}])
    res: dict = {"machine": machine(), "items": args.items, "canvas": args.size, "scale": args.scale,
                 "copy": f"{args.size * args.scale}x{args.size * args.scale} PNG"}
    try:
        res["cpu"] = run_one(layers, tmp / "cpu", kw)
        ok, why = cuda_status()
        res["gpu"] = why
        if ok:
            from gpucomp.render.cuda_backend import CudaBackend

            res["cuda_device_scaled"] = run_one(layers, tmp / "dev", kw, CudaBackend())
            res["cuda_cpu_scaled"] = run_one(layers, tmp / "host", kw, CudaBackend(scale_on_device=False))
            res["identical"] = {"device_vs_cpu": identical(tmp / "cpu", tmp / "dev"),
                                "host_vs_cpu": identical(tmp / "cpu", tmp / "host")}
            d, h = res["cuda_device_scaled"]["items_per_s"], res["cuda_cpu_scaled"]["items_per_s"]
            res["device_over_host_scaling"] = round(d / h, 3) if d and h else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    bad = [k for k, v in res.get("identical", {}).items() if not v["identical"]]
    if bad:
        print(f"bench_nearest: files differ from the CPU run: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
