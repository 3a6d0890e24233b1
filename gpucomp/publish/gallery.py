"""A static gallery page of a finished collection: OUT/gallery/index.html.

Static files only: the page, its script and style (copied from `gallery_assets/`), and the
collection's data written as JavaScript files (`data/index.js`, `data/meta-NNNN.js`), which a page
opened from `file://` may load (fetch() of local files is refused there). No server, no network.

What it reads, all from OUT itself, so any finished output works (resumed, extended, re-rendered):
  rarity.json      layers, traits, counts, asked-for shares and sigma (charts, filters)
  rarity.csv       per item: number, rank, and its trait in every layer (the grid's index),
                   and an `openrarity_rank` column where the report has one
  metadata/<n>.json  streamed one at a time into chunks of META_CHUNK items (the item view)
  provenance.json  each image's SHA-256: a thumbnail is remade only when its image changed
  images/          each item's primary image (images/<n>.<ext> of the collection's first format,
                   itemfiles.py) is what the item view shows; thumbnails (OUT/gallery/thumbs/<n>.webp)
                   are made from it, or from a sized copy when one is smaller and still large enough,
                   in a thread pool

Memory stays bounded: the index holds a few integers per item; metadata and images are
streamed, with at most 2 * workers thumbnails in flight.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from PIL import Image, features

from gpucomp._shared.files import (
    atomic_write_bytes,
    ensure_folder,
    json_bytes,
    open_regular,
    read_regular,
    remove_temporaries,
    write_failure,
)
from gpucomp._shared.safe_text import csv_text_cell
from gpucomp.encode.media import OutputFile
from gpucomp.errors import ConfigError, OutputError
from gpucomp.metadata.rarity import csv_header
from gpucomp.outdir.journal import unfinished
from gpucomp.outdir.layout import MANIFEST, MAX_METADATA_BYTES, PROVENANCE
from gpucomp.outdir.lock import OutputLock
from gpucomp.outdir.resume import read_manifest
from gpucomp.publish.itemfiles import collection_files
from gpucomp.publish.limits import THUMB_DEFAULT, THUMB_MAX, THUMB_MIN
from gpucomp.publish.thumbs import LOAD_ERRORS, decode_image, thumbnail_files

GALLERY = "gallery"
ASSETS = ("index.html", "gallery.js", "gallery.css")
META_CHUNK = 500  # items per metadata file the page loads when an item is opened
THUMB_QUALITY = 85
OPENRARITY_COLUMN = "openrarity_rank"
FORMAT = 1  # version of the data files, in data/index.js
LOG_EVERY = 2.0  # seconds between progress lines
_THUMB_NAME = re.compile(r"^(0|[1-9][0-9]*)\.(webp|png)$")
_META_NAME = re.compile(r"^meta-(\d+)\.js$")

Log = Callable[[str], None]


@dataclass
class Index:
    """What the grid needs per item, in item-number order (position i is the i-th item)."""

    report: dict  # rarity.json
    numbers: list[int] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    log_rarity: list[float] = field(default_factory=list)
    traits: list[list[int]] = field(default_factory=list)  # per layer: the item's trait index
    openrarity: list[int] | None = None


# ---------------------------------------------------------------------------- reading OUT


def _not_finished(out: Path, what: str) -> OutputError:
    return OutputError(f"{out}: {what}; the gallery needs a finished gpucomp output (run `gpucomp resume {out}` "
                       f"to finish an interrupted one, or `gpucomp generate` to make one)")


def _check_ours(out: Path) -> None:
    if not out.is_dir():
        raise OutputError(f"{out}: not a folder; pass a gpucomp output folder (it holds {MANIFEST})")
    if not (out / MANIFEST).is_file():
        raise OutputError(f"{out}: not a gpucomp output (no {MANIFEST}); pass the folder that `gpucomp generate -o` "
                          f"wrote")


def check_finished(out: Path) -> None:
    """Raise OutputError unless `out` is a gpucomp output whose last run finished."""
    _check_ours(out)
    if unfinished(out):
        raise _not_finished(out, "the collection is not finished (an interrupted run, or no provenance.json)")
    for name in ("rarity.json", "rarity.csv"):
        if not (out / name).is_file():
            raise _not_finished(out, f"{name} is missing")


def _read_report(out: Path) -> dict:
    path = out / "rarity.json"
    try:
        report = json.loads(read_regular(path))
        for layer in report["layers"]:  # the fields the page needs
            for t in layer["traits"]:
                str(layer["name"]), str(t["name"]), int(t["count"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise _not_finished(out, f"{path.name} is unreadable ({type(err).__name__}: {err})") from err
    return report


def _columns(header: list[str], layer_names: list[str], path: Path) -> tuple[list[int], int | None]:
    """Positions of the layer columns (named as rarity.csv_header names them) and of the
    OpenRarity rank column (None when the report has none)."""
    want = csv_header(layer_names)
    missing = [c for c in want if c not in header]
    if missing:
        raise OutputError(f"{path}: its header lacks {missing} that rarity.json's layers call for; "
                          f"the two reports disagree: re-run `gpucomp resume {path.parent}` to rewrite them")
    pos = [header.index(c) for c in want]
    return pos[4:], (header.index(OPENRARITY_COLUMN) if OPENRARITY_COLUMN in header else None)


def read_index(out: Path) -> Index:
    """The per-item index from rarity.json and rarity.csv (streamed), in number order."""
    report = _read_report(out)
    layers = report["layers"]
    # rarity.csv writes each name as csv_text_cell makes it (one to one): looked up the same way
    lookup = [{csv_text_cell(t["name"]): k for k, t in enumerate(layer["traits"])} for layer in layers]
    index = Index(report, traits=[[] for _ in layers])
    path = out / "rarity.csv"
    try:
        with open_regular(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as f:
            rows = csv.reader(f)
            cols, orc = _columns(next(rows, []), [layer["name"] for layer in layers], path)
            index.openrarity = [] if orc is not None else None
            for line, row in enumerate(rows, start=2):
                try:
                    index.numbers.append(int(row[0]))
                    index.ranks.append(int(row[1]))
                    index.scores.append(float(row[2]))
                    index.log_rarity.append(float(row[3]))
                    for li, c in enumerate(cols):
                        index.traits[li].append(lookup[li][row[c]])
                    if orc is not None:
                        index.openrarity.append(int(row[orc]))
                except (ValueError, IndexError, KeyError) as err:
                    raise OutputError(f"{path}, line {line}: {type(err).__name__} {err} (a value rarity.json does not "
                                      f"list, or a malformed row); re-run `gpucomp resume {out}` to rewrite the "
                                      f"reports") from err
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise _not_finished(out, f"rarity.csv is unreadable ({err})") from err
    if not index.numbers:
        raise _not_finished(out, "rarity.csv lists no items")
    if any(b <= a for a, b in zip(index.numbers, index.numbers[1:], strict=False)):
        raise OutputError(f"{path}: items are not in increasing number order; re-run `gpucomp resume {out}`")
    return index


def _image_shas(out: Path) -> dict[int, str]:
    """Item number -> first 16 hex digits of its image's SHA-256, from provenance.json."""
    path = out / PROVENANCE
    try:
        items = json.loads(read_regular(path))["items"]
        return {int(x["number"]): str(x["sha256"])[:16] for x in items}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise _not_finished(out, f"{PROVENANCE} is unreadable ({type(err).__name__}: {err})") from err


# ---------------------------------------------------------------------------- folders


def _remove_stale(folder: Path, pattern: re.Pattern, keep: set[str]) -> int:
    """Delete files of ours (names matching `pattern`) that are not in `keep`."""
    removed = 0
    for entry in os.scandir(folder):
        if pattern.match(entry.name) and entry.name not in keep:
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed


def _read_nofollow(path: Path) -> bytes | None:
    """The bytes of `path` if it is a regular file of ours (not a link, FIFO or device), else None."""
    try:
        return read_regular(path)
    except OSError:
        return None


def _write(path: Path, data: bytes) -> None:
    """Write atomically (a failure leaves neither the file nor its temporary); a failed write (a full
    disk, a quota, a read-only or failing device) is an OutputError naming the file and what to do."""
    try:
        atomic_write_bytes(path, data)
    except OSError as err:
        raise write_failure(path, err, "run `gpucomp gallery` again (thumbnails already made are kept)") from err


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write atomically unless the file already holds exactly `data` (re-runs touch nothing)."""
    if _read_nofollow(path) == data:
        return False
    _write(path, data)
    return True


# ---------------------------------------------------------------------------- thumbnails


def thumb_format() -> str:
    """'webp' (small, keeps alpha) where Pillow has it, else 'png'."""
    return "webp" if features.check("webp") else "png"


def thumbnail_bytes(src: Path, size: int, fmt: str) -> bytes:
    """The thumbnail of image `src` in a size x size box (aspect kept; never enlarged: the page
    scales small pixel art up without smoothing), alpha kept, encoded as `fmt`."""
    try:
        im = decode_image(src)  # a link, FIFO or device: refused, never waited on
    except FileNotFoundError:
        raise OutputError(f"{src}: image missing; run `gpucomp resume {src.parent.parent}` to re-render it") from None
    except LOAD_ERRORS as err:
        raise OutputError(f"{src}: cannot be read as an image ({type(err).__name__}: {err}); run "
                          f"`gpucomp resume {src.parent.parent}` to check and re-render it") from err
    if im.width > size or im.height > size:
        im.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buf = io.BytesIO()
    if fmt == "webp":
        im.save(buf, "WEBP", quality=THUMB_QUALITY, method=4)
    else:
        im.save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def _load_state(path: Path, size: int, fmt: str, source: str) -> dict[str, str]:
    """number (as text) -> image SHA prefix of each thumbnail made earlier with these settings (and
    from the same file of each item: `source`, a media path with {n})."""
    raw = _read_nofollow(path)
    try:
        state = json.loads(raw) if raw else {}
        if (state.get("size") == size and state.get("format") == fmt and state.get("source", "{n}.png") == source
                and isinstance(state.get("sha256"), dict)):
            return state["sha256"]
    except (ValueError, AttributeError):
        pass
    return {}


def make_thumbnails(out: Path, numbers: list[int], size: int = THUMB_DEFAULT, workers: int = 0,
                    log: Log | None = None) -> str:
    """Write OUT/gallery/thumbs/<n>.<fmt> for every item whose image changed since its thumbnail
    was made (by provenance.json's SHA-256); returns the format. Thumbnails of items no longer in
    the collection are removed. Interrupted work is kept: the state is saved in any case."""
    log = log or (lambda msg: None)
    fmt = thumb_format()
    folder = ensure_folder(ensure_folder(out / GALLERY) / "thumbs")
    state_path = folder / "thumbs.json"
    shas = _image_shas(out)
    source = thumbnail_files(out, numbers, size)  # the primary image, or a smaller sized copy
    done = _load_state(state_path, size, fmt, source.path)
    present = {e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False)}
    names = {n: f"{n}.{fmt}" for n in numbers}
    fresh = {str(n): shas[n] for n in numbers if n in shas and done.get(str(n)) == shas[n] and names[n] in present}
    todo = [n for n in numbers if str(n) not in fresh]
    log(f"gallery: {len(numbers)} items, {len(numbers) - len(todo)} thumbnails up to date, {len(todo)} to make "
        f"({size}px {fmt})")
    state = {"size": size, "format": fmt, **({"source": source.path} if source.path != "{n}.png" else {}),
             "sha256": fresh}  # `fresh` grows as thumbnails are made
    try:
        _run_thumbs(out, source, folder, todo, names, size, fmt, workers, fresh, shas, log)
    except BaseException:
        with contextlib.suppress(OutputError):  # the first failure is the one to report; losing the
            _write(state_path, json_bytes(state, indent=None))  # state only costs remaking thumbnails
        raise
    _write(state_path, json_bytes(state, indent=None))
    _remove_stale(folder, _THUMB_NAME, set(names.values()))
    return fmt


def _run_thumbs(out, source: OutputFile, folder, todo, names, size, fmt, workers, fresh, shas, log) -> None:
    """Make the thumbnails of `todo` in a thread pool (Pillow's decode, resize and encode release
    the GIL), at most 2 * workers in flight; record each finished one in `fresh`."""
    if not todo:
        return
    workers = workers or (os.cpu_count() or 1)

    def one(n: int) -> int:
        _write(folder / names[n], thumbnail_bytes(out / "images" / source.name(n), size, fmt))
        return n

    t0 = last = time.monotonic()
    pending: deque = deque()
    it = iter(todo)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpucomp-gallery") as pool:
        try:
            for k in range(len(todo)):
                while len(pending) < 2 * workers and (n := next(it, None)) is not None:
                    pending.append(pool.submit(one, n))
                n = pending.popleft().result()
                if n in shas:
                    fresh[str(n)] = shas[n]
                now = time.monotonic()
                if now - last >= LOG_EVERY or k + 1 == len(todo):
                    last = now
                    log(f"gallery: thumbnails {k + 1}/{len(todo)} ({(k + 1) / max(now - t0, 1e-9):.0f}/s)")
        finally:
            for fut in pending:
                fut.cancel()


# ---------------------------------------------------------------------------- data files


CHART_KEYS = ("name", "count", "percent", "weight_percent", "expected", "z", "off")
ACHIEVABLE_KEYS = ("achievable_percent", "reachable_percent")  # only where uniqueness moved a share


def _script(call: str, obj) -> bytes:
    """A JavaScript file that hands `obj` (as JSON, which is valid JavaScript) to `call`."""
    return f"{call}({json.dumps(obj, ensure_ascii=False, separators=(',', ':'), allow_nan=False)});\n".encode("utf-8")


def write_metadata_chunks(out: Path, index: Index, log: Log | None = None) -> int:
    """Stream OUT/metadata/<n>.json into OUT/gallery/data/meta-NNNN.js, META_CHUNK items each, as
    [score, log_rarity, metadata] per item; returns the number of chunk files."""
    log = log or (lambda msg: None)
    folder = ensure_folder(ensure_folder(out / GALLERY) / "data")
    n_chunks = -(-len(index.numbers) // META_CHUNK)
    keep, changed = set(), 0
    last = time.monotonic()
    for c in range(n_chunks):
        if time.monotonic() - last >= LOG_EVERY:
            last = time.monotonic()
            log(f"gallery: metadata {c * META_CHUNK}/{len(index.numbers)}")
        items = []
        for i in range(c * META_CHUNK, min((c + 1) * META_CHUNK, len(index.numbers))):
            path = out / "metadata" / f"{index.numbers[i]}.json"
            try:
                meta = json.loads(read_regular(path, MAX_METADATA_BYTES))
            except (OSError, ValueError) as err:
                raise OutputError(f"{path}: missing or unreadable ({type(err).__name__}: {err}); run "
                                  f"`gpucomp resume {out}` to check and rewrite it") from err
            items.append([index.scores[i], index.log_rarity[i], meta])
        name = f"meta-{c:04d}.js"
        keep.add(name)
        changed += _write_if_changed(folder / name, _script("GALLERY.addMeta", {"chunk": c, "items": items}))
    _remove_stale(folder, _META_NAME, keep)
    log(f"gallery: metadata in {n_chunks} files ({changed} changed)")
    return n_chunks


def index_data(index: Index, title: str, thumb: dict, image: str = "{n}.png") -> dict:
    """The object data/index.js hands to the page (format FORMAT); `image`: the primary image's path
    under images/, with {n} for the number (the item view shows it)."""
    r = index.report
    return {
        "format": FORMAT, "title": title, "items": len(index.numbers), "image": image, "sigma": r.get("sigma"),
        "weights_known": bool(r.get("weights_known")), "meta_chunk": META_CHUNK, "thumb": thumb,
        "layers": [{"name": layer["name"],
                    "traits": [{k: t.get(k) for k in (*CHART_KEYS, *(k for k in ACHIEVABLE_KEYS if k in t))}
                               for t in layer["traits"]]}
                   for layer in r["layers"]],
        "numbers": index.numbers, "ranks": index.ranks, "openrarity": index.openrarity, "traits": index.traits,
    }


def write_index(gallery_dir: Path, data: dict) -> Path:
    path = ensure_folder(gallery_dir / "data") / "index.js"
    _write_if_changed(path, _script("GALLERY.load", data))
    return path


def write_assets(gallery_dir: Path) -> Path:
    """Copy the page, script and style from the package; index.html last."""
    root = resources.files("gpucomp.publish") / "gallery_assets"
    for name in reversed(ASSETS):
        _write_if_changed(gallery_dir / name, (root / name).read_bytes())
    return gallery_dir / "index.html"


# ---------------------------------------------------------------------------- the whole job


def _image_size(path: Path) -> list[int] | None:
    """[width, height] of an image from its header (the page draws small ones without smoothing)."""
    try:
        with open_regular(path) as f, Image.open(f) as im:
            return [im.width, im.height]
    except LOAD_ERRORS:
        return None


def _title(out: Path, manifest: dict) -> str:
    meta = manifest.get("metadata")
    prefix = meta.get("name_prefix") if isinstance(meta, dict) else None
    name = out.resolve().name
    return f"{prefix} — {name}" if prefix else name


def make_gallery(out, thumb: int = THUMB_DEFAULT, workers: int | None = None, log: Log | None = None) -> Path:
    """Write OUT/gallery/ (index.html, its script and style, data/, thumbs/) for the finished
    collection in `out` and return the path of index.html. Re-running remakes only the
    thumbnails whose image changed and rewrites only the files whose content changed."""
    if isinstance(thumb, bool) or not isinstance(thumb, int) or not THUMB_MIN <= thumb <= THUMB_MAX:
        raise ConfigError(f"gallery thumbnail size must be a whole number of pixels {THUMB_MIN}..{THUMB_MAX}, "
                          f"got {thumb!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"gallery workers must be a whole number >= 0 (0: one per core), got {workers!r}")
    log = log or (lambda msg: None)
    out = Path(out)
    t0 = time.monotonic()
    _check_ours(out)  # before the lock, which would leave a lock file in any folder
    with OutputLock(out):  # no run may change the collection meanwhile
        check_finished(out)
        manifest = read_manifest(out)  # checked against its schema: a damaged one is named
        index = read_index(out)
        gdir = ensure_folder(out / GALLERY)
        for folder in (gdir, gdir / "data", gdir / "thumbs"):
            remove_temporaries(folder)  # what a killed earlier gallery run left
        fmt = make_thumbnails(out, index.numbers, thumb, workers or 0, log)
        write_metadata_chunks(out, index, log)
        primary = collection_files(out)[0]
        thumbs = {"size": thumb, "format": fmt, "image": _image_size(out / "images" / primary.name(index.numbers[0]))}
        write_index(gdir, index_data(index, _title(out, manifest), thumbs, primary.path))
        page = write_assets(gdir)
    log(f"gallery: {page} ({time.monotonic() - t0:.1f}s)")
    return page


__all__ = ["make_gallery", "read_index", "check_finished", "make_thumbnails", "write_metadata_chunks",
           "index_data", "write_index", "write_assets", "thumbnail_bytes", "Index"]
