"""Resuming: what a collection was made from (the manifest), and which items are finished.

The manifest splits the inputs by what they decide: the plan (seed, size, layers, weights),
the pixels (trait art, PNG preset) and the metadata text. A resume refuses when the plan or
the pixels would differ, and simply rewrites metadata when only its text changed.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .journal import file_sha256, is_known

FORMAT = 2


def plan_digest(combos: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(combos, dtype="<i4").tobytes()).hexdigest()


def make_manifest(cfg, ls, plan, encoder: str) -> dict:
    return {
        "gpucomp": __version__,
        "format": FORMAT,
        "plan": {
            "seed": cfg.seed, "size": cfg.size, "start": cfg.start,
            "layers": [{"folder": layer.folder, "name": layer.name,
                        "traits": [[t.name, t.weight] for t in layer.traits]} for layer in ls.layers],
        },
        "plan_sha256": plan_digest(plan.combos),
        "art": {"fingerprint": ls.fingerprint, "width": ls.width, "height": ls.height,
                "preset": cfg.preset, "opaque_rgb": cfg.opaque_rgb},
        "encoder": encoder,
        "metadata": {"name_prefix": cfg.name_prefix, "description": cfg.description, "base_uri": cfg.base_uri},
    }


def differences(old: dict, new: dict) -> list[str]:
    """What changed in a way that would change the plan or the pixels (empty: resumable)."""
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        return [f"its manifest has another format (written by gpucomp {old.get('gpucomp', '?') if isinstance(old, dict) else '?'})"]
    out = []
    op, np_ = old.get("plan", {}), new["plan"]
    for key in ("seed", "size", "start"):
        if op.get(key) != np_[key]:
            out.append(f"{key} was {op.get(key)!r}, now {np_[key]!r}")
    ol, nl = op.get("layers", []), np_["layers"]
    if [(x.get("folder"), x.get("name")) for x in ol] != [(x["folder"], x["name"]) for x in nl]:
        out.append("the layers or their order changed ({} -> {})".format(
            ", ".join(str(x.get("folder")) for x in ol), ", ".join(x["folder"] for x in nl)))
    else:
        for a, b in zip(ol, nl):
            if a.get("traits") != b["traits"]:
                out.append(f"traits or weights of layer {b['folder']!r} changed")
    if not out and old.get("plan_sha256") != new["plan_sha256"]:
        out.append("the same inputs now give another plan (was NumPy upgraded?)")
    oa, na = old.get("art", {}), new["art"]
    for key, what in (("width", "canvas width"), ("height", "canvas height"), ("preset", "PNG preset"),
                      ("opaque_rgb", "opaque_rgb")):
        if oa.get(key) != na[key]:
            out.append(f"{what} was {oa.get(key)!r}, now {na[key]!r}")
    if oa.get("fingerprint") != na["fingerprint"] and not any("traits" in d or "layers" in d for d in out):
        out.append("trait art changed (a PNG in the layers folder has other content)")
    return out


def find_finished(out: Path, numbers: list[int], shas: np.ndarray, meta_bytes: Callable[[int], bytes],
                  write_meta: Callable[[Path, bytes], None], workers: int) -> np.ndarray:
    """Bool mask of items whose image hashes to its record; their metadata is checked and
    rewritten if its text differs (e.g. a new base URI). Hashing runs in threads, in blocks,
    so memory stays flat for any collection size."""
    done = np.zeros(len(numbers), bool)

    def check(i: int) -> bool:
        n = numbers[i]
        if not is_known(shas[i]) or file_sha256(out / "images" / f"{n}.png") != shas[i].tobytes():
            return False
        path = out / "metadata" / f"{n}.json"
        want = meta_bytes(i)
        try:
            ok = path.read_bytes() == want
        except OSError:
            ok = False
        if not ok:
            write_meta(path, want)
        return True

    candidates = np.flatnonzero(shas.any(axis=1))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for b in range(0, len(candidates), 4096):
            block = candidates[b:b + 4096].tolist()
            done[block] = list(pool.map(check, block))
    return done


def clean_temporaries(out: Path, tmp_prefix: str) -> int:
    """Remove partial files a killed run left under temporary names."""
    n = 0
    for d in (out, out / "images", out / "metadata"):
        if d.is_dir():
            for p in d.iterdir():
                if p.name.startswith(tmp_prefix):
                    try:
                        os.unlink(p)
                        n += 1
                    except FileNotFoundError:
                        pass
    return n
