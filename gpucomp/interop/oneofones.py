"""One-of-ones: finished images put into the collection at given or seeded numbers.

A folder holds `<name>.png` files, each with an optional `<name>.json` of metadata (`name`,
`description`, `attributes`, any other fields) for that item. `read_one_of_ones` checks the folder
before anything is written; `place` gives every one-of-one its number (the given ones first, the
others drawn from the numbers left, by a seed of their own so that the generated items' plan is
unchanged); the generated items take the numbers left over, in their order.

Wired in by collection.plan_collection (a segment of their own, layer "1/1"), shard.py (their files
copied, their .json merged into the metadata) and resume.make_manifest (plan.one_of_ones).
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from gpucomp._shared import json_input
from gpucomp._shared.files import read_regular
from gpucomp.errors import ConfigError

MAX_IMAGE_BYTES = 512 << 20
MAX_JSON_BYTES = 1 << 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class OneOfOne:
    name: str  # the file's stem
    path: Path
    sha256: str  # of the image file: recorded in the manifest, so a changed image is noticed
    size: tuple[int, int]  # (width, height)
    metadata: dict | None  # <name>.json, when there is one
    number: int | None = None  # given in the config; None: placed by the seed


def read_one_of_ones(folder, numbers: Mapping[str, int] | None = None) -> list[OneOfOne]:
    """Every one-of-one of `folder`, by name; `numbers` gives some of them their item number."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"one-of-ones: {folder} is not a folder; name the folder of finished images")
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() == ".png" and p.is_file()]
    stems = {p.stem for p in images}
    others = [p.name for p in files if p not in images and not (p.suffix.lower() == ".json" and p.stem in stems)]
    if others:
        raise ConfigError(f"one-of-ones: {folder} holds files that are neither a PNG nor the .json of one: "
                          f"{', '.join(others[:8])}; one-of-ones are finished PNG images, each with an optional "
                          f"<name>.json of metadata")
    if not images:
        raise ConfigError(f"one-of-ones: {folder} holds no PNG image")
    numbers = dict(numbers or {})
    unknown = sorted(set(numbers) - stems)
    if unknown:
        raise ConfigError(f"one-of-ones: a number is given for {unknown[0]!r}, but {folder} has no {unknown[0]}.png")
    return [_read_one(p, numbers.get(p.stem)) for p in images]


def _read_one(path: Path, number: int | None) -> OneOfOne:
    try:
        data = read_regular(path, MAX_IMAGE_BYTES)
    except OSError as err:
        raise ConfigError(f"one-of-ones: {path}: cannot read it ({err.strerror or err})") from None
    if not data.startswith(PNG_SIGNATURE):
        raise ConfigError(f"one-of-ones: {path}: not a PNG file (the image is copied into the collection as it is)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # the whole image decodes: a truncated or damaged file is named here, not after minting
            size = im.size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
        raise ConfigError(f"one-of-ones: {path}: not a readable PNG ({err})") from None
    meta = None
    side = path.with_suffix(".json")
    if side.exists():
        try:  # strictly: it is copied into metadata/ and _metadata.json, which must stay JSON (no NaN)
            meta = json_input.loads(read_regular(side, MAX_JSON_BYTES))
        except (OSError, ValueError) as err:
            raise ConfigError(f"one-of-ones: {side}: not readable JSON ({err})") from None
        _check_metadata(meta, side)
    if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
        raise ConfigError(f"one-of-ones: the number of {path.stem!r} must be a whole number, got {number!r}")
    return OneOfOne(path.stem, path, hashlib.sha256(data).hexdigest(), size, meta, number)


def _check_metadata(meta, where: Path) -> None:
    if not isinstance(meta, dict):
        raise ConfigError(f"one-of-ones: {where}: expected a JSON object (name, description, attributes, ...)")
    attributes = meta.get("attributes", [])
    if not isinstance(attributes, list) or not all(
            isinstance(a, dict) and isinstance(a.get("trait_type"), str) and "value" in a for a in attributes):
        raise ConfigError(f"one-of-ones: {where}: attributes must be a list of {{\"trait_type\": ..., \"value\": ...}}")


def place(ones: list[OneOfOne], size: int, start: int, seed: int) -> np.ndarray:
    """The item number of each one-of-one (in `ones` order): given numbers as given, the others
    drawn without repeats from the numbers left, by `seed`."""
    if len(ones) > size:
        raise ConfigError(f"one-of-ones: {len(ones)} images, but the collection has only {size} items")
    end = start + size - 1
    taken: dict[int, str] = {}
    for one in ones:
        if one.number is None:
            continue
        if not start <= one.number <= end:
            raise ConfigError(f"one-of-ones: {one.name!r} is given number {one.number}, outside the collection's "
                              f"numbers {start}..{end}")
        if one.number in taken:
            raise ConfigError(f"one-of-ones: {taken[one.number]!r} and {one.name!r} are both given number {one.number}")
        taken[one.number] = one.name
    free = np.setdiff1d(np.arange(start, end + 1, dtype=np.int64), np.fromiter(taken, np.int64, len(taken)))
    loose = [i for i, one in enumerate(ones) if one.number is None]
    drawn = np.random.default_rng(seed).choice(free, size=len(loose), replace=False) if loose else []
    out = np.array([one.number if one.number is not None else 0 for one in ones], np.int64)
    out[loose] = drawn
    return out


def generated_numbers(placed: np.ndarray, size: int, start: int) -> np.ndarray:
    """The numbers left for generated items, in order: `size - len(placed)` of them."""
    return np.setdiff1d(np.arange(start, start + size, dtype=np.int64), placed)


def manifest_entry(ones: list[OneOfOne], placed: np.ndarray) -> list[list]:
    """[name, image sha256, number] per one-of-one: what a resume compares."""
    return [[one.name, one.sha256, int(n)] for one, n in zip(ones, placed, strict=True)]
