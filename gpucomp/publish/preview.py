"""Preview contact sheets: thumbnails of each item's image tiled into OUT/preview/sheet-0001.png, ...

The image is the collection's primary one, images/<n>.<ext> of its first format (PNG, WebP, JPEG or
AVIF, from the manifest; images/<n>.png in a folder without one), or a sized copy of it when one is
smaller and still large enough for the thumbnail (itemfiles.py).

Streaming and bounded in memory, so it works the same for 20 items or 100k: one sheet canvas
exists at a time, and at most `2 * workers` thumbnails are in flight (submitted to the thread pool
but not yet pasted). Decoding and resampling run in Pillow's C code, which releases the GIL, so the
threads work in parallel. A collection bigger than one sheet gives several sheets, never one giant
canvas; one sheet is never larger than MAX_SHEET_SIDE pixels on a side.

Layout: `columns` x `rows` cells per sheet, each a `thumb` x `thumb` box (the thumbnail centred in
it, aspect kept) with an optional number label under it; `gap` pixels around every cell. The last
sheet keeps the full width but only the rows it uses.
"""
from __future__ import annotations

import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gpucomp._shared.files import atomic_write_bytes
from gpucomp._shared.testhooks import fault
from gpucomp._shared.threads import thread_count
from gpucomp.encode.png import encode_png
from gpucomp.errors import ConfigError, OutputError
from gpucomp.outdir.layout import PROVENANCE
from gpucomp.outdir.update import finished_numbers
from gpucomp.publish.itemfiles import collection_files
from gpucomp.publish.thumbs import SHEET_BACKGROUND, check_int, list_numbers, sheet_folder, thumbnail, thumbnail_files

MIN_THUMB, MAX_THUMB = 8, 1024
MAX_SHEET_SIDE = 8192
LABEL_COLOUR = (235, 235, 235)
SHEET_NAME = re.compile(r"^sheet-([0-9]+)\.png$")


def _new_canvas(size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", size, SHEET_BACKGROUND)


def _font():
    return ImageFont.load_default()


def _label_metrics(font) -> tuple[int, int]:
    """(top offset of digits as drawn at y=0, height of the label strip)."""
    box = font.getbbox("0123456789")
    return box[1], box[3] - box[1] + 4


def sheet_geometry(thumb: int, columns: int, rows: int, label: bool) -> dict:
    """Pixel layout of a full sheet; raises ConfigError if it would exceed MAX_SHEET_SIDE."""
    gap = max(2, thumb // 32)
    label_top, label_h = _label_metrics(_font()) if label else (0, 0)
    cell_w, cell_h = thumb + gap, thumb + label_h + gap
    width, height = gap + columns * cell_w, gap + rows * cell_h
    if width > MAX_SHEET_SIDE or height > MAX_SHEET_SIDE:
        raise ConfigError(
            f"preview sheet would be {width}x{height} pixels ({columns} columns x {rows} rows of {thumb}px "
            f"thumbnails); the limit is {MAX_SHEET_SIDE}x{MAX_SHEET_SIDE}: lower --columns, --rows or --thumb "
            f"(more sheets are written instead)")
    return {"gap": gap, "label_h": label_h, "label_top": label_top, "cell_w": cell_w, "cell_h": cell_h,
            "width": width, "height": height}


def _collection_numbers(out: Path) -> list[int] | None:
    """Every item of a finished collection (its provenance.json lists them, in item order), sorted by
    number; None while it has none (an unfinished run: its sheets show what is there)."""
    if not (out / PROVENANCE).exists():
        return None
    return sorted(finished_numbers(out, "run `gpucomp resume` on the folder to finish it"))


def _check_present(images: Path, source, numbers: list[int]) -> None:
    """Say which items are missing before any sheet is written, instead of sheets with holes."""
    missing = [n for n in numbers if not (images / source.name(n)).is_file()]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise OutputError(f"{images / source.name(missing[0])}: image missing ({len(missing)} of the {len(numbers)} "
                          f"items to show have none: {shown}); `gpucomp resume` on the output folder renders "
                          f"missing items again")


def make_sheets(out_dir, *, thumb: int = 128, columns: int = 10, rows: int = 10, numbers=None, dest=None,
                label: bool = True, workers: int | None = None, progress=None) -> list[Path]:
    """Write contact sheets of the collection in `out_dir` and return their paths, in order.

    numbers: the items to show, in that order (default: every item's primary image OUT/images/<n>.<ext>,
    numeric order).
    dest: folder for the sheets (default OUT/preview); sheet-NNNN.png files left there by an
    earlier, longer run are removed once the new sheets are written.
    workers: decoding threads (default/0: one per CPU core). progress: callable(done, total).
    Sheets are written atomically. A missing or unreadable image raises OutputError naming it.
    """
    thumb = check_int("thumb", thumb, MIN_THUMB, MAX_THUMB)
    columns = check_int("columns", columns, 1)
    rows = check_int("rows", rows, 1)
    workers = thread_count(check_int("workers", workers if workers is not None else 0, 0))
    geo = sheet_geometry(thumb, columns, rows, label)

    out = Path(out_dir)
    if not out.is_dir():
        raise OutputError(f"{out}: not a folder; pass a gpucomp output folder (it holds images/<n>.png)")
    images = out / "images"
    ext = collection_files(out)[0].format.ext
    if numbers is None:
        numbers = _collection_numbers(out) or list_numbers(images, ext)
        if not numbers:
            raise OutputError(f"{images}: no numbered images (<n>.{ext}) to preview; generate the collection first")
    else:
        numbers = list(numbers)
        for n in numbers:
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ConfigError(f"preview numbers must be whole numbers >= 0, got {n!r}")
        if not numbers:
            raise ConfigError("preview numbers is empty; give at least one item number (or None for all)")

    source = thumbnail_files(out, numbers, thumb)
    _check_present(images, source, numbers)
    dest = sheet_folder(out, dest)

    per_sheet = columns * rows
    total = len(numbers)
    n_sheets = -(-total // per_sheet)
    digits = max(4, len(str(n_sheets)))
    font = _font() if label else None
    gap, cell_w, cell_h = geo["gap"], geo["cell_w"], geo["cell_h"]
    window = 2 * workers  # thumbnails in flight at most
    written: list[Path] = []
    canvas = draw = None

    def finish_sheet() -> None:
        nonlocal canvas, draw
        path = dest / f"sheet-{len(written) + 1:0{digits}d}.png"
        data = encode_png(np.asarray(canvas), "fast")
        canvas = draw = None  # drop the canvas before the next one is made
        try:
            atomic_write_bytes(path, data)
        except OSError as err:
            raise OutputError(f"{path}: cannot write preview sheet ({err.strerror or err})") from err
        written.append(path)
        fault(f"preview:{len(written)}")

    pending: deque = deque()
    items = iter(enumerate(numbers))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpucomp-preview")
    try:
        def fill() -> None:
            while len(pending) < window:
                nxt = next(items, None)
                if nxt is None:
                    return
                i, n = nxt
                pending.append((i, n, pool.submit(thumbnail, images / source.name(n), thumb)))

        fill()
        while pending:
            i, n, fut = pending.popleft()
            tile = fut.result()
            fill()
            slot = i % per_sheet
            if slot == 0:
                used_rows = min(rows, -(-(total - i) // columns))
                canvas = _new_canvas((geo["width"], gap + used_rows * cell_h))
                draw = ImageDraw.Draw(canvas) if label else None
            x0, y0 = gap + (slot % columns) * cell_w, gap + (slot // columns) * cell_h
            canvas.paste(tile, (x0 + (thumb - tile.width) // 2, y0 + (thumb - tile.height) // 2))
            del tile
            if label:
                _draw_label(canvas, draw, font, str(n), x0, y0 + thumb + 2 - geo["label_top"], thumb)
            if slot == per_sheet - 1 or i == total - 1:
                finish_sheet()
            if progress:
                progress(i + 1, total)
    finally:
        for _, _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)

    keep = {p.name for p in written}
    for p in dest.iterdir():  # sheets of an earlier, longer run would otherwise look like part of this one
        if SHEET_NAME.match(p.name) and p.name not in keep:
            try:
                p.unlink()
            except OSError:
                pass
    return written


def _draw_label(canvas, draw, font, text: str, x0: int, y: int, width: int) -> None:
    """Draw `text` at height y, centred over [x0, x0 + width); clipped to that span if too wide."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tw = right - left
    if tw <= width:
        draw.text((x0 + (width - tw) // 2 - left, y), text, fill=LABEL_COLOUR, font=font)
        return
    strip = Image.new("RGB", (width, max(1, bottom)), SHEET_BACKGROUND)
    ImageDraw.Draw(strip).text((-left, 0), text, fill=LABEL_COLOUR, font=font)
    canvas.paste(strip, (x0, y))


__all__ = ["make_sheets", "list_numbers", "sheet_geometry",
           "MAX_SHEET_SIDE"]
