"""Output files: everything appears atomically (written under a temporary name, then renamed)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

TMP_PREFIX = ".gpucomp-tmp-"


def atomic_write_bytes(path: str | os.PathLike, data, fsync: bool = False) -> None:
    """Write `data` to `path` so the final name only ever shows complete content."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=indent, ensure_ascii=False) + "\n").encode())


MANIFEST = "gpucomp.json"


def check_output(out: Path, force: bool) -> None:
    """Refuse a path that is a file, or a non-empty folder that is not ours unless forced.
    Writes nothing: called before layers are read so bad input leaves no folder behind."""
    from .errors import OutputError

    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another output path")
    if out.is_dir() and not force and any(out.iterdir()):
        what = "already holds a gpucomp collection" if (out / MANIFEST).exists() else "is not empty and is not a gpucomp output"
        raise OutputError(f"{out}: {what}; choose an empty folder or pass --force to write into it")


def prepare_output(out: Path, force: bool) -> None:
    """Check OUT, then create OUT/images and OUT/metadata (emptied of earlier items if forced)."""
    from .errors import OutputError

    check_output(out, force)
    try:
        for sub in ("images", "metadata"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        if force:  # drop items of an earlier collection so none is left over from it
            for sub, ext in (("images", ".png"), ("metadata", ".json")):
                for p in (out / sub).iterdir():
                    if p.suffix == ext and p.stem.isdigit() or p.name.startswith(TMP_PREFIX):
                        p.unlink()
    except OSError as err:
        raise OutputError(f"{out}: cannot prepare output folder ({err.strerror or err})") from err


def item_metadata(number: int, names: list[str], layer_names: list[str], dna: str, cfg) -> dict:
    """ERC-721 / OpenSea metadata, HashLips-compatible field set (no timestamp: reruns are byte-identical)."""
    return {
        "name": f"{cfg.name_prefix} #{number}",
        "description": cfg.description,
        "image": f"{cfg.base_uri.rstrip('/')}/{number}.png",
        "dna": dna,
        "edition": number,
        "attributes": [{"trait_type": lt, "value": v} for lt, v in zip(layer_names, names)],
        "compiler": "gpucomp",
    }


def write_collection_metadata(out: Path, numbers) -> None:
    """Stream OUT/metadata/<n>.json in order into OUT/_metadata.json (bounded memory)."""
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("[")
            for i, n in enumerate(numbers):
                text = (out / "metadata" / f"{n}.json").read_text(encoding="utf-8").strip()
                f.write(("," if i else "") + "\n" + text)
            f.write("\n]\n")
        os.replace(tmp, out / "_metadata.json")
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def rarity_summary(layerset, combos) -> dict:
    """Per layer and trait: count, % of the collection, and the % its weight asked for."""
    import numpy as np

    n = int(combos.shape[0])
    out = {}
    for li, layer in enumerate(layerset.layers):
        counts = np.bincount(combos[:, li], minlength=len(layer.traits))
        wsum = float(layer.weights.sum())
        out[layer.name] = {
            t.name: {"count": int(c), "percent": round(100 * c / n, 3), "weight_percent": round(100 * t.weight / wsum, 3)}
            for t, c in zip(layer.traits, counts)
        }
    return out
