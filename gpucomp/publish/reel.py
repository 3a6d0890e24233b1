"""The collection reel: a short animated preview of a finished collection, one item after the
other (default: the first 30 items, 1 s each), written beside the contact sheets as
OUT/preview/collection.webp (animated WebP) or .gif: the clip to post before a mint.

Each frame is the item's thumbnail (the same one `preview` tiles: its primary image, or a smaller
sized copy of it, centred on a `size` x `size` dark square, transparency over a checkerboard).
Memory holds the frames only: at most MAX_FRAMES of at most MAX_SIZE pixels a side (RGB), read in
threads like the sheets.
"""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from gpucomp._shared.files import atomic_write_bytes
from gpucomp._shared.threads import thread_count
from gpucomp.errors import ConfigError, OutputError
from gpucomp.publish.itemfiles import collection_files
from gpucomp.publish.thumbs import SHEET_BACKGROUND, check_int, list_numbers, sheet_folder, thumbnail, thumbnail_files

MAX_FRAMES = 600  # 10 minutes at 1 s an item: a preview, not the collection
MIN_SIZE, MAX_SIZE = 16, 1024
FORMATS = {"webp": "WEBP", "gif": "GIF"}
REEL_NAME = "collection"


def _frame(path: Path, size: int) -> Image.Image:
    tile = thumbnail(path, size)
    frame = Image.new("RGB", (size, size), SHEET_BACKGROUND)
    frame.paste(tile, ((size - tile.width) // 2, (size - tile.height) // 2))
    return frame


def _encode(frames: list[Image.Image], fmt: str, ms: int, lossless: bool) -> bytes:
    buf = io.BytesIO()
    extra = {"lossless": lossless, "quality": 100 if lossless else 85, "method": 4} if fmt == "webp" else \
        {"optimize": False}
    frames[0].save(buf, format=FORMATS[fmt], save_all=True, append_images=frames[1:], duration=ms, loop=0,
                   **extra)
    return buf.getvalue()


def make_reel(out_dir, *, items: int = 30, seconds: float = 1.0, size: int = 256, fmt: str = "webp",
              lossless: bool = False, dest=None, workers: int | None = None) -> Path:
    """Write the reel of the collection in `out_dir` (its first `items` items in number order, each
    shown `seconds`) and return its path: DEST/collection.<fmt>, DEST defaulting to OUT/preview."""
    items = check_int("reel items", items, 1, MAX_FRAMES)
    size = check_int("reel size", size, MIN_SIZE, MAX_SIZE)
    if fmt not in FORMATS:
        raise ConfigError(f"reel format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0.02 <= seconds <= 60:
        raise ConfigError(f"reel seconds must be a number from 0.02 to 60 (each item's time on screen), got {seconds!r}")
    out = Path(out_dir)
    if not out.is_dir():
        raise OutputError(f"{out}: not a folder; pass a gpucomp output folder (it holds images/)")
    ext = collection_files(out)[0].format.ext
    numbers = list_numbers(out / "images", ext)[:items]
    if not numbers:
        raise OutputError(f"{out / 'images'}: no numbered images (<n>.{ext}) for a reel; generate the collection first")
    source = thumbnail_files(out, numbers, size)
    workers = thread_count(check_int("workers", workers if workers is not None else 0, 0))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpucomp-reel") as pool:
        frames = list(pool.map(lambda n: _frame(out / "images" / source.name(n), size), numbers))
    data = _encode(frames, fmt, max(20, round(seconds * 1000)), lossless)
    path = sheet_folder(out, dest) / f"{REEL_NAME}.{fmt}"
    try:
        atomic_write_bytes(path, data)
    except OSError as err:
        raise OutputError(f"{path}: cannot write the reel ({err.strerror or err})") from err
    return path
