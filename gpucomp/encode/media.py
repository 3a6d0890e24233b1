"""Which files each item has: every [output] format at full size, and each [[output.sizes]] copy.

Paths are relative to OUT/images/ and hold `{n}` for the item number:
- full size: `{n}.<ext>` for each format; the first format listed is the *primary* image, the one
  metadata `image` names and the journal and provenance.json hash;
- sized copies: `<size name>/{n}.<ext>`, in the size's formats (default: every format);
- animated files ([output] animation, encode/animated.py): `animation/{n}.<ext>`, after every still file
  (metadata `animation_url` names the first; the still files are frame `still_frame` of the animation).
The same relative paths under `base_uri` are the URIs metadata gives (upload images/ as one folder).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpucomp._shared.files import atomic_write_bytes
from gpucomp.encode.animated import EXTENSIONS as ANIM_EXT
from gpucomp.encode.animated import FOLDER
from gpucomp.encode.animated import MIME_TYPES as ANIM_MIME
from gpucomp.encode.formats import MAX_PIXELS, MAX_SIDE, MIME_TYPES, OutputFormat, encode
from gpucomp.encode.rendered import SizedPixels
from gpucomp.encode.resize import Size, resize
from gpucomp.errors import ConfigError


@dataclass(frozen=True)
class OutputFile:
    path: str  # relative to OUT/images/, with {n}
    format: OutputFormat
    size: Size | None  # None: full size
    animated: bool = False  # an animated file (format.name is an anim_encode format): made from every frame

    def name(self, number: int) -> str:
        return self.path.replace("{n}", str(number))


def output_files(formats: tuple[OutputFormat, ...], sizes: tuple[Size, ...], animation=None) -> tuple[OutputFile, ...]:
    """Every file of an item, primary first, animated files last (`animation`: anim_encode.Animation)."""
    files = [OutputFile(f"{{n}}.{f.ext}", f, None) for f in formats]
    for s in sizes:
        for f in formats:
            if not s.formats or f.name in s.formats:
                files.append(OutputFile(f"{s.name}/{{n}}.{f.ext}", f, s))
    for name in (animation.formats if animation is not None else ()):
        files.append(OutputFile(f"{FOLDER}/{{n}}.{ANIM_EXT[name]}", OutputFormat(name), None, animated=True))
    return tuple(files)


def still_files(files: tuple[OutputFile, ...]) -> tuple[OutputFile, ...]:
    return tuple(f for f in files if not f.animated)


def check_fits(files: tuple[OutputFile, ...], width: int, height: int, where: str = "config") -> None:
    """Refuse, before rendering, a file too large for its format (or for memory) from a width x height canvas."""
    for f in still_files(files):
        w, h = f.size.target(width, height) if f.size else (width, height)
        what = f"size {f.size.name!r} makes" if f.size else "the canvas is"
        if max(w, h) > MAX_SIDE[f.format.name] or w * h > MAX_PIXELS:
            raise ConfigError(f"{where}: {what} {w}x{h} from the {width}x{height} layers; {f.format.name} holds at most "
                              f"{MAX_SIDE[f.format.name]} pixels a side (and gpucomp {MAX_PIXELS} pixels an image)")


def media_entries(files: tuple[OutputFile, ...]) -> tuple[tuple[str, str, str], ...]:
    """(relative path, MIME type, size name or "") per file: what metadata/tokens.py needs to name them.
    Empty for today's default (one PNG), so metadata options of earlier collections read the same."""
    entries = tuple((f.path, ANIM_MIME[f.format.name], FOLDER) if f.animated else
                    (f.path, MIME_TYPES[f.format.name], f.size.name if f.size else "") for f in files)
    return () if entries == (("{n}.png", "image/png", ""),) else entries


def render_files(rendered: np.ndarray | SizedPixels, files: tuple[OutputFile, ...], preset,
                 opaque_rgb: bool) -> list[bytes]:
    """The bytes of each still file (in `files` order) from one composite; each size is resized once,
    unless the backend handed it in already (SizedPixels: nearest copies made on the GPU)."""
    if isinstance(rendered, SizedPixels):
        pixels, resized = rendered.pixels, dict(rendered.copies)
    elif isinstance(rendered, np.ndarray):
        pixels, resized = rendered, {}
    else:
        raise TypeError(f"a backend returned {type(rendered).__name__}; expected pixels or SizedPixels")
    out = []
    for f in still_files(files):
        px = pixels
        if f.size is not None:
            if f.size.name not in resized:
                resized[f.size.name] = resize(pixels, f.size)
            px = resized[f.size.name]
        out.append(encode(px, f.format, preset, opaque_rgb))
    return out


DEFAULT_FILES = (OutputFile("{n}.png", OutputFormat("png"), None),)  # one PNG: what every earlier run made


def is_default(files: tuple[OutputFile, ...]) -> bool:
    """One PNG at the canvas size: the writer may take filtered rows or GPU-deflated streams."""
    return len(files) == 1 and files[0].format.name == "png" and files[0].size is None


def size_folders(files: tuple[OutputFile, ...]) -> tuple[str, ...]:
    """The folders under images/ the sized copies (and the animated files) go to."""
    return tuple(dict.fromkeys([*(f.size.name for f in files if f.size is not None),
                                *((FOLDER,) if any(f.animated for f in files) else ())]))


def write_others(images: Path, number: int, files: tuple[OutputFile, ...], blobs: list[bytes],
                 writeback=None) -> int:
    """Write every file but the primary (files[0]); the caller writes the primary after these, so
    that a journal record (made after the primary) implies every file was in place. Returns bytes."""
    for f, data in zip(files[1:], blobs[1:], strict=True):
        atomic_write_bytes(images / f.name(number), data, writeback=writeback)
    return sum(len(b) for b in blobs[1:])
