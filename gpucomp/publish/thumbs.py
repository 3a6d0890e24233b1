"""Thumbnails of a finished collection's items, and the checks and folders the contact sheets
(preview.py) and the reel (reel.py) share."""
from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw

from gpucomp._shared.files import ensure_folder, open_regular, remove_temporaries
from gpucomp.encode.media import OutputFile
from gpucomp.errors import ConfigError, OutputError
from gpucomp.publish.itemfiles import collection_files, thumbnail_source

CHECKER = ((204, 204, 204), (153, 153, 153))  # shown through transparent pixels


SHEET_BACKGROUND = (40, 40, 40)


_ITEM_NUMBER = r"^(0|[1-9][0-9]*)\."  # as gpucomp writes them: no leading zeros


LOAD_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def list_numbers(images_dir: Path, ext: str = "png") -> list[int]:
    """Every `<n>.<ext>` in `images_dir`, in numeric order (2 before 10)."""
    try:
        names = os.listdir(images_dir)
    except OSError as err:
        raise OutputError(f"{images_dir}: cannot list images ({err.strerror or err}); "
                          f"pass a finished gpucomp output folder that holds images/<n>.{ext}") from err
    item = re.compile(_ITEM_NUMBER + re.escape(ext) + "$")
    return sorted(int(m.group(1)) for m in map(item.match, names) if m)


def thumbnail_files(out: Path, numbers: list[int], box: int) -> OutputFile:
    """The file of each item to make `box`-pixel thumbnails from (itemfiles.thumbnail_source), by the
    size of the first item's primary image; the primary itself when that cannot be read (the
    thumbnail then names the problem)."""
    files = collection_files(out)
    try:
        with open_regular(out / "images" / files[0].name(numbers[0])) as f, Image.open(f) as im:
            width, height = im.size
    except LOAD_ERRORS:
        return files[0]
    return thumbnail_source(files, width, height, box)


@lru_cache(maxsize=64)
def _checker(w: int, h: int, square: int) -> Image.Image:
    """An RGBA checkerboard (shared read-only; Image.alpha_composite returns a new image)."""
    im = Image.new("RGBA", (w, h), CHECKER[0] + (255,))
    draw = ImageDraw.Draw(im)
    for y in range(0, h, square):
        for x in range((y // square % 2) * square, w, 2 * square):
            draw.rectangle((x, y, x + square - 1, y + square - 1), fill=CHECKER[1] + (255,))
    return im


def thumb_size(w: int, h: int, thumb: int) -> tuple[int, int]:
    """Size of the thumbnail of a w x h image in a thumb x thumb box, aspect kept. Larger images
    are scaled down; smaller ones are scaled up by a whole factor only (pixel art stays crisp)."""
    if w <= thumb and h <= thumb:
        k = min(thumb // w, thumb // h)
        return w * k, h * k
    scale = min(thumb / w, thumb / h)
    return max(1, min(thumb, round(w * scale))), max(1, min(thumb, round(h * scale)))


def decode_image(path: Path, draft: int | None = None) -> Image.Image:
    """One of the collection's images decoded as RGBA (if it has any transparency) or RGB. A link,
    FIFO or device is refused (NotRegularFile), never waited on; `draft` lets decoders that can
    (JPEG) decode at a lower scale. Raises what LOAD_ERRORS lists."""
    with open_regular(path) as f, Image.open(f) as im:
        if draft:
            im.draft("RGB", (draft, draft))
        im.load()
        transparent = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
        return im.convert("RGBA" if transparent else "RGB")


def thumbnail(path: Path, thumb: int) -> Image.Image:
    """Decode `path` and return its RGB thumbnail (transparent pixels shown over a checkerboard)."""
    try:
        im = decode_image(path, thumb)
    except FileNotFoundError:
        raise OutputError(f"{path}: image missing; regenerate the collection or pass numbers= that exist") from None
    except LOAD_ERRORS as err:
        raise OutputError(f"{path}: cannot be read as an image ({type(err).__name__}: {err}); "
                          f"regenerate or remove this item") from err
    size = thumb_size(im.width, im.height, thumb)
    if size != im.size:
        if size[0] >= im.width:  # whole-factor enlargement
            im = im.resize(size, Image.Resampling.NEAREST)
        else:  # integer pre-reduction (Image.reduce), then Lanczos; RGBA is resampled premultiplied
            im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if im.mode == "RGBA":
        im = Image.alpha_composite(_checker(im.width, im.height, max(4, thumb // 16)), im).convert("RGB")
    return im


def check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"preview {name} must be a whole number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"preview {name} must be {rng}, got {value}")
    return value


def sheet_folder(out: Path, dest) -> Path:
    """The folder for the sheets, cleaned of what a killed earlier preview left. OUT/preview (the
    default) must be a real folder: a link there would send the sheets outside OUT."""
    if dest is None:
        folder = ensure_folder(out / "preview")
    else:
        folder = Path(dest)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{folder}: cannot create the preview folder ({err.strerror or err})") from err
    try:
        remove_temporaries(folder)
    except OSError as err:
        raise OutputError(f"{folder}: cannot remove temporary files there ({err.strerror or err})") from err
    return folder
