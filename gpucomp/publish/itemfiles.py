"""Which image files a finished collection holds, read back from its manifest (`art.output`): what
`preview`, `gallery` and `export` read, whatever formats and sizes the collection was made with.

- The *primary* image is images/<n>.<ext> of the first format listed (media.py): the file metadata
  `image` names and provenance.json hashes.
- A thumbnail is made from the smallest file of an item that is still large enough for it: a sized
  copy (`[[output.sizes]]`, e.g. a 256-pixel thumbnail) decodes far faster than a 2048-pixel primary.
A folder without a manifest (images copied from elsewhere) holds images/<n>.png, as every earlier
gpucomp output did.
"""
from __future__ import annotations

from pathlib import Path

from gpucomp.encode.animated import parse_animation
from gpucomp.encode.formats import parse_formats
from gpucomp.encode.media import DEFAULT_FILES, OutputFile, output_files
from gpucomp.encode.resize import Size
from gpucomp.errors import OutputError
from gpucomp.outdir.layout import MANIFEST
from gpucomp.outdir.resume import output_of, read_manifest


def _recorded_output(out: Path) -> dict | None:
    """The manifest's `art.output` (resume.output_of), or None in a folder without a manifest."""
    if not (Path(out) / MANIFEST).exists():
        return None
    return output_of(read_manifest(Path(out)))


def collection_files(out: Path) -> tuple[OutputFile, ...]:
    """Every image file of an item of the collection in `out`, primary first (media.output_files)."""
    output = _recorded_output(out)
    if output is None:
        return DEFAULT_FILES
    where = f"{Path(out) / MANIFEST}: art.output"
    try:
        formats = parse_formats([f["name"] for f in output["formats"]],
                                {f["name"]: {k: v for k, v in f.items() if k != "name"} for f in output["formats"]
                                 if f["name"] != "png"}, where)
        sizes = tuple(Size.from_dict(s) for s in output.get("sizes", []))
    except (KeyError, TypeError, ValueError) as err:
        raise OutputError(f"{where}: damaged or edited by hand ({type(err).__name__}: {err}); regenerate the "
                          f"collection with --force") from err
    return output_files(formats, sizes)


def animated_files(out: Path) -> tuple[OutputFile, ...]:
    """The animated files of an item (images/animation/<n>.<ext>, encode/animated.py), in the order of
    [output] animation; () for a collection without animated output."""
    anim = (_recorded_output(out) or {}).get("animation")
    if not isinstance(anim, dict):
        return ()
    table = {k: v for k, v in anim.items() if k not in ("formats", "webp", "frames")}
    try:
        parsed = parse_animation(anim.get("formats"), table, anim.get("webp", {}),
                                 f"{Path(out) / MANIFEST}: art.output")
    except (TypeError, ValueError) as err:
        raise OutputError(f"{Path(out) / MANIFEST}: art.output.animation: damaged or edited by hand ({err}); "
                          f"regenerate the collection with --force") from err
    return tuple(f for f in output_files((), (), parsed) if f.animated)


def thumbnail_source(files: tuple[OutputFile, ...], width: int, height: int, box: int) -> OutputFile:
    """The file to make a `box`-pixel thumbnail from, for a `width` x `height` primary image: the one
    with the fewest pixels whose larger side still reaches min(box, the primary's larger side), with
    the primary's aspect ratio (within a pixel of rounding); the primary when no sized copy qualifies.
    So the thumbnail has the size it would have from the primary, from fewer bytes to decode."""
    need = min(box, max(width, height))
    best, best_pixels = files[0], width * height
    for f in files[1:]:
        if f.size is None:
            continue
        w, h = f.size.target(width, height)
        same_aspect = abs(w * height - h * width) <= max(width, height)
        if same_aspect and max(w, h) >= need and w * h < best_pixels:
            best, best_pixels = f, w * h
    return best
