"""Upload layouts made from a finished collection's files: `gpucomp export OUT --layout LAYOUT`
(also `gpucomp generate ... --export LAYOUT`, which runs it once the collection is finished).

- sugar: OUT/assets/ as Metaplex's Sugar uploads it: N.<ext> + N.json for every item, numbered 0..N-1
  without gaps, plus collection.json (and collection.<ext>, the first item's image unless a cover
  collection.png/.jpg/.jpeg/.gif is already there: Sugar then makes the on-chain collection NFT from
  the pair). N.<ext> is the item's primary image; Sugar takes PNG, JPEG and GIF images only
  (its assets rule: N.jpg, .jpeg, .gif or .png, exactly one per item), so a collection whose primary image is
  WebP or AVIF is refused. N.json is the item's metadata, rewritten only where its
  `properties.files` names other files by relative paths (the collection's other formats and sizes):
  Sugar uploads N.<ext> alone and would publish those as broken links, so they are left out.
- erc1155: OUT/erc1155/<id>.json, the id as 64 lower-case hex digits, zero-padded, which is what
  an ERC-1155 client puts for `{id}` in the contract's URI (images stay in images/).

The renderer writes only images/ and metadata/; these folders are derived from those files at the
end, so nothing here touches how items render or resume. Files are hard links to the finished ones
(no second copy of a large collection, and made in a moment), each made under a temporary name and
renamed into place, so a name in the folder only ever shows a complete file and a link already
there is replaced, never written through; one that already is the finished file is kept (renaming a
link onto another link of the same file does nothing and would leave the temporary name behind).
Where the file system refuses hard links (or with `copy=True`) the files are copied through
_shared/files.atomic_open instead. A hard link shares the file: rerender and update-metadata replace
images and metadata with new files, so export again after them (old links keep the old content;
nothing is written into them).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Callable

from gpucomp._shared.files import (
    NO_HARD_LINKS,
    TMP_PREFIX,
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    ensure_folder,
    json_bytes,
    open_regular,
    read_regular,
    remove_temporaries,
    write_failure,
)
from gpucomp.encode.media import OutputFile
from gpucomp.errors import ConfigError, OutputError
from gpucomp.metadata.tokens import MetadataOptions, options_for_config
from gpucomp.outdir.journal import unfinished
from gpucomp.outdir.layout import MANIFEST, MAX_METADATA_BYTES, output_state
from gpucomp.outdir.lock import OutputLock
from gpucomp.outdir.resume import read_manifest
from gpucomp.outdir.update import finished_numbers, stored_options
from gpucomp.publish.itemfiles import animated_files, collection_files

LAYOUTS = {"sugar": "assets", "erc1155": "erc1155"}  # layout -> folder inside OUT
FORMATS = {"sugar": ("solana",), "erc1155": ("erc1155", "erc721")}  # metadata formats each layout takes
SUGAR_ANIMATIONS = ("mp4", "webm")  # animated files Sugar uploads as an item's animation_url (<n>.mp4, <n>.webm)
SUGAR_FORMATS = ("png", "jpeg")  # formats gpucomp writes that Sugar takes as an item's image (it also takes GIF)
SUGAR_COVERS = {"collection.png": "image/png", "collection.jpg": "image/jpeg", "collection.jpeg": "image/jpeg",
                "collection.gif": "image/gif"}
AGAIN = "export again (the files already in place are kept)"  # after a failed write, once its cause is fixed
_ITEM_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".json")  # what _remove_stale may remove


def export(out, layout: str, copy: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """Write OUT/<folder> for `layout` from the finished collection in OUT; returns the folder."""
    out = Path(out)
    log = log or (lambda msg: None)
    if layout not in LAYOUTS:
        raise OutputError(f"export: unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if output_state(out) != "ours":
        raise OutputError(f"{out}: not a gpucomp output (no {MANIFEST}); export works on a folder written by "
                          f"`gpucomp generate`")
    with OutputLock(out):
        if unfinished(out):
            raise OutputError(f"{out}: the collection is not finished; finish it with `gpucomp resume {out}`, "
                              f"then export")
        opts = stored_options(read_manifest(out), str(out / MANIFEST))
        numbers = finished_numbers(out, f"run `gpucomp resume {out}`, then export")
        image = collection_files(out)[0]  # the primary image
        _check(out, layout, opts, numbers, image)
        dest = ensure_folder(out / LAYOUTS[layout])
        remove_temporaries(dest)  # what a killed export left
        animations = animated_files(out)
        anim = next((f for f in animations if f.format.name in SUGAR_ANIMATIONS), None)
        if layout == "sugar" and animations and anim is None:
            log("export: Sugar uploads an animation_url file only as mp4 or webm: the items' animation_url is left "
                "out (add \"mp4\" or \"webm\" to [output] animation to publish the animation)")
        names = _place_all(out, dest, layout, numbers, copy, log, image, anim)
        if layout == "sugar":
            cover = next((c for c in SUGAR_COVERS if _is_regular(dest / c)), None)  # the user's own is kept
            if cover is None:
                cover = f"collection.{image.format.ext}"
                _place(out / "images" / image.name(numbers[0]), dest / cover, copy)
            try:
                atomic_write_json(dest / "collection.json", collection_metadata(opts, cover))
            except OSError as err:
                raise write_failure(dest / "collection.json", err, AGAIN) from err
            names |= {"collection.json", cover}
        stale = _remove_stale(dest, names)
    log(f"export: {len(numbers)} items into {dest} ({layout}" + (f"; {stale} stale files removed)" if stale else ")"))
    return dest


def check_config(cfg, layout: str, source: str = "config") -> None:
    """Before a `generate --export LAYOUT` renders: will the finished collection fit the layout?"""
    if layout not in LAYOUTS:
        raise ConfigError(f"export: unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    opts = options_for_config(cfg, source)
    if opts.format not in FORMATS[layout]:
        raise ConfigError(f"{source}: metadata.format: the {layout} layout needs {' or '.join(FORMATS[layout])}, "
                          f"got {opts.format!r}")
    if layout == "sugar" and cfg.formats[0].name not in SUGAR_FORMATS:
        raise ConfigError(f"{source}: output.format: {_sugar_refusal(cfg.formats[0].name)} (formats: "
                          f"{', '.join(f.name for f in cfg.formats)})")
    if layout == "sugar" and cfg.start != 0:
        raise ConfigError(f"{source}: collection.start: Sugar numbers items from 0, got start = {cfg.start}; "
                          f"remove start (format = \"solana\" starts at 0) or set it to 0")


def _sugar_refusal(fmt: str) -> str:
    return (f"Sugar takes PNG, JPEG or GIF item images (<n>.png, .jpg, .jpeg or .gif in its assets folder), and the "
            f"primary image (the first format listed) is {fmt}; list \"png\" or \"jpeg\" first in [output] format")


def _check(out: Path, layout: str, opts: MetadataOptions, numbers: list[int], image: OutputFile) -> None:
    if layout == "sugar" and image.format.name not in SUGAR_FORMATS:
        raise OutputError(f"{out}: {_sugar_refusal(image.format.name)}, then generate the collection again "
                          f"(--force)")
    if opts.format not in FORMATS[layout]:
        raise OutputError(f"{out}: the {layout} layout needs metadata.format = {' or '.join(FORMATS[layout])}, but this "
                          f"collection's is {opts.format!r}; set it in [metadata] and run `gpucomp generate` again "
                          f"(the images are kept, the metadata is rewritten)")
    if layout == "sugar" and numbers != list(range(len(numbers))):
        first = min(numbers) if numbers else 0
        raise OutputError(f"{out}: Sugar needs items numbered 0 to {len(numbers) - 1} without gaps, and this collection "
                          f"starts at {first}; generate it with start = 0 in [collection] (the default for "
                          f"format = \"solana\") into a new folder")


def erc1155_name(number: int) -> str:
    """The file name an ERC-1155 client asks for when it substitutes {id}: 64 lower-case hex digits."""
    if not 0 <= number < 1 << 256:
        raise ValueError(f"ERC-1155 ids are 256-bit unsigned integers, got {number}")
    return f"{number:064x}.json"


def _place_all(out: Path, dest: Path, layout: str, numbers: list[int], copy: bool, log, image: OutputFile,
               anim: OutputFile | None = None) -> set[str]:
    """`anim`: the animated file Sugar uploads beside the image as <n>.mp4 or <n>.webm (None: none)."""
    names: set[str] = set()
    linking = not copy
    for n in numbers:
        if layout == "sugar":
            asset = f"{n}.{image.format.ext}"
            pairs = [(out / "images" / image.name(n), asset)]
            animation = f"{n}.{anim.format.name}" if anim else None
            if anim:
                pairs.append((out / "images" / anim.name(n), animation))
            meta_path = out / "metadata" / f"{n}.json"
            if _sugar_json(meta_path, asset, dest / f"{n}.json", animation):
                names.add(f"{n}.json")
            else:
                pairs.append((meta_path, f"{n}.json"))
        else:
            pairs = [(out / "metadata" / f"{n}.json", erc1155_name(n))]
        for src, name in pairs:
            if not _place(src, dest / name, not linking) and linking:
                linking = False
                log(f"export: this file system does not take hard links in {dest}; copying instead")
            names.add(name)
    return names


def _sugar_json(src: Path, asset: str, dst: Path, animation: str | None = None) -> bool:
    """Write dst as sugar_metadata of src when that differs from src (True); False: src is as Sugar
    takes it, to be linked or copied as it is."""
    try:
        meta = json.loads(read_regular(src, MAX_METADATA_BYTES))
    except (OSError, ValueError) as err:
        raise OutputError(f"{src}: missing or unreadable ({type(err).__name__}: {err}); run `gpucomp resume "
                          f"{src.parent.parent}`, which repairs the collection, then export again") from err
    fixed = sugar_metadata(meta, asset, animation)
    if fixed is meta:
        return False
    try:
        atomic_write_bytes(dst, json_bytes(fixed))
    except OSError as err:
        raise write_failure(dst, err, AGAIN) from err
    return True


def sugar_metadata(meta, asset: str, animation: str | None = None):
    """An item's metadata as Sugar is to upload it beside its image file `asset` (<n>.<ext>) and its
    animation file `animation` (<n>.mp4 or <n>.webm, or None). Sugar uploads those files only and puts
    their links in `image`, `animation_url` and the `properties.files` entries that name them; entries
    naming other files by a relative path (the collection's other formats, sizes and animations) would
    be published as they are, broken, so they are left out, and so is a relative `animation_url` with
    no `animation`. Entries with a full URI (a base_uri was set) stay. Returns `meta` itself when
    nothing changes."""
    if not isinstance(meta, dict):
        return meta
    url = meta.get("animation_url")
    relative = isinstance(url, str) and "://" not in url
    out = meta
    if relative and url != animation:  # animation/<n>.mp4 in the collection: <n>.mp4 in Sugar's assets
        out = {**meta, "animation_url": animation} if animation else \
            {k: v for k, v in meta.items() if k != "animation_url"}
    props = out.get("properties")
    files = props.get("files") if isinstance(props, dict) else None
    if not isinstance(files, list):
        return out
    files = [{**f, "uri": animation} if animation and isinstance(f, dict) and f.get("uri") == url else f for f in files]
    keep = [f for f in files if not isinstance(f, dict) or f.get("uri") in (out.get("image"), asset, animation)
            or "://" in str(f.get("uri", ""))]
    return out if keep == props["files"] else {**out, "properties": {**props, "files": keep}}


def _place(src: Path, dst: Path, copy: bool) -> bool:
    """dst becomes the content of src: a hard link (True) or, with `copy` or where links are
    refused, a copy (False). Either appears under its name in one rename."""
    if not _is_regular(src):
        raise OutputError(f"{src}: missing or not a plain file; run `gpucomp resume {src.parent.parent}`, which "
                          f"repairs the collection, then export again")
    if not copy:
        if _same_file(src, dst):
            return True  # an earlier export's link: already this file, nothing to write
        tmp = dst.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            os.link(src, tmp, follow_symlinks=False)
        except OSError as err:
            if err.errno not in NO_HARD_LINKS:
                raise OutputError(f"{dst}: cannot link {src} ({err.strerror or err})") from err
        else:
            try:
                os.replace(tmp, dst)
            except OSError as err:
                os.unlink(tmp)
                raise write_failure(dst, err, AGAIN) from err
            # rename(2) of one link onto another of the same file does nothing and keeps both names:
            # so if dst became one (between the check and here), the temporary name is still there
            _unlink_if_there(tmp)
            return True
    try:
        with open_regular(src) as f, atomic_open(dst) as g:
            shutil.copyfileobj(f, g, 1 << 20)
    except OSError as err:
        raise OutputError(f"{dst}: cannot copy {src} there ({err.strerror or err})") from err
    return False


def _same_file(src: Path, dst: Path) -> bool:
    """dst is a hard link to src (not a symbolic link, which is replaced: never written through)."""
    try:
        a, b = os.lstat(src), os.lstat(dst)
    except OSError:
        return False
    return stat.S_ISREG(b.st_mode) and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _unlink_if_there(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _remove_stale(dest: Path, keep: set[str]) -> int:
    """Item files an earlier, larger export left (items the collection no longer has)."""
    n = 0
    try:
        for p in dest.iterdir():
            item = p.stem.isdigit() or (len(p.stem) == 64 and all(c in "0123456789abcdef" for c in p.stem))
            if p.name not in keep and p.suffix in _ITEM_SUFFIXES and item and not p.is_dir():
                p.unlink()
                n += 1
    except OSError as err:
        raise OutputError(f"{dest}: cannot remove an earlier export's files ({err.strerror or err})") from err
    return n


def collection_metadata(opts: MetadataOptions, cover: str = "collection.png") -> dict:
    """Sugar's collection.json: the collection NFT, described like an item (Metaplex's fields);
    `cover`: its image file beside it (SUGAR_COVERS)."""
    meta = {"name": opts.collection_name or opts.name_prefix, "symbol": opts.symbol, "description": opts.description,
            "seller_fee_basis_points": opts.seller_fee_basis_points, "image": cover}
    if opts.external_url:
        meta["external_url"] = opts.external_url
    meta["attributes"] = []
    meta["properties"] = {"files": [{"uri": cover, "type": SUGAR_COVERS[cover]}], "category": "image",
                          "creators": [{"address": a, "share": s} for a, s in opts.creators]}
    return meta
