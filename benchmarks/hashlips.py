"""HashLips Art Engine 2 (`@hashlips-lab/art-engine` from npm, rendering with sharp/libvips) on the
same layers, for an optional row of bench_standard.py when Node.js is there.

Installed on request into benchmarks/.data/hashlips (ignored by git, never committed). Its pinned
sharp 0.31 downloads libvips from outside the registries, so an npm `overrides` entry takes a
current sharp, whose prebuilt binaries come as npm packages.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import DATA

HOME = DATA / "hashlips"
PACKAGE = {"name": "gpucomp-hashlips-bench", "private": True,
           "dependencies": {"@hashlips-lab/art-engine": "2.0.0-alpha7", "sharp": "^0.34.0"},
           "overrides": {"sharp": "^0.34.0"}}


def available() -> str | None:
    """None if ready to run, else why not."""
    if shutil.which("node") is None:
        return "Node.js not found"
    if not (HOME / "node_modules" / "@hashlips-lab" / "art-engine").is_dir():
        return f"not installed (bench_standard.py --hashlips-install puts it in {HOME})"
    return None


def install() -> None:
    HOME.mkdir(parents=True, exist_ok=True)
    (HOME / "package.json").write_text(json.dumps(PACKAGE, indent=2))
    subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=HOME, check=True, timeout=600)


def mirror_layers(layers: Path, dest: Path) -> None:
    """Symlinks in Art Engine 2's naming: folder order -> __z, '<trait>#<w>.png' -> '<trait>__w<w>.png'."""
    for z, layer in enumerate(sorted(p for p in layers.iterdir() if p.is_dir())):
        d = dest / f"{layer.name.replace('.', '_')}__z{z}"
        d.mkdir(parents=True)
        for png in layer.glob("*.png"):
            name, _, w = png.stem.rpartition("#")
            target = f"{name.replace('.', '_')}__w{int(float(w))}.png" if name else f"{png.stem}.png"
            (d / target).symlink_to(png.resolve())


def hashlips_items_per_s(layers: Path, items: int, width: int, height: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="gpucomp-hashlips-") as tmp:
        mirror_layers(layers, Path(tmp) / "layers")
        done = subprocess.run(["node", str(Path(__file__).with_name("hashlips_run.js")), str(Path(tmp) / "layers"),
                               tmp, str(items), str(width), str(height)],
                              cwd=HOME, env={**os.environ, "NODE_PATH": str(HOME / "node_modules")},
                              capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"hashlips run failed: {done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        pngs = list((Path(tmp) / "output" / "images").glob("*.png"))
        result["avg_png_bytes"] = int(sum(p.stat().st_size for p in pngs) / max(len(pngs), 1))
    return result
