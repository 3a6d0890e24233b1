"""Decoding one trait file: the PNG checks made before any decoder runs (signature, chunk CRCs,
declared size and bytes), then PNG (png_read.py's fast path, else Pillow), JPEG, WebP or GIF to
straight RGBA uint8, cropped to the box of its non-zero alpha."""
from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import threading
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gpucomp.errors import LayerError
from gpucomp.layers import png_read
from gpucomp.layers.frames import decode_frames
from gpucomp.layers.scan import why

_WARNINGS_LOCK = threading.Lock()  # warnings.catch_warnings is not thread-safe
MAX_PIXELS = 16384 * 16384  # refuse larger declared sizes before decoding (decompression bombs)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class _PngHeader:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    trns: bytes | None  # body of the tRNS chunk, if any
    interlace: int = 0
    idat: tuple = ()  # the IDAT bodies in order (views of the file's bytes): png_read inflates them
    animated: bool = False  # an acTL chunk (APNG)


def _pixel_limit() -> int:
    """The stricter of ours and Pillow's: a file Pillow would refuse gets our specific message instead."""
    pil = Image.MAX_IMAGE_PIXELS
    return min(MAX_PIXELS, pil) if pil else MAX_PIXELS


def _read_ihdr(path: Path, data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) straight from the bytes, so a hostile size is
    refused before Pillow allocates anything."""
    if len(data) < 33 or data[12:16] != b"IHDR" or data[8:12] != b"\0\0\0\x0d":
        raise LayerError(f"{path}: malformed PNG (no valid IHDR header chunk); the file is damaged, re-export it")
    w, h, depth, ctype = struct.unpack(">IIBB", data[16:26])
    if w == 0 or h == 0:
        raise LayerError(f"{path}: declared size {w}x{h} has no pixels; the file is damaged, re-export it")
    if w * h > _pixel_limit():
        raise LayerError(
            f"{path}: declared size {w}x{h} is larger than gpucomp accepts ({_pixel_limit()} pixels); "
            f"this looks like a broken or hostile file, re-export it at the collection's canvas size"
        )
    return w, h, depth, ctype


def _walk_chunks(path: Path, data: bytes) -> tuple[bytes | None, tuple, bool]:
    """Check every chunk's CRC up to IEND; return the tRNS body, the IDAT bodies and whether there is
    an acTL chunk. Pillow skips the CRCs of IDAT and of chunks after it, so a damaged file could
    otherwise decode to wrong pixels. Bytes after IEND are ignored, as every decoder does."""
    view, pos, trns, idat, animated = memoryview(data), 8, None, [], False
    while True:
        if pos + 12 > len(data):
            raise LayerError(f"{path}: file ends at byte {len(data)} before the IEND chunk (truncated); re-export it")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise LayerError(f"{path}: chunk {kind!r} at byte {pos} runs past the end of the file (truncated); re-export it")
        if zlib.crc32(view[pos + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            raise LayerError(f"{path}: chunk {kind!r} at byte {pos} has a bad checksum (CRC); "
                             "the file is damaged, re-export it")
        if kind == b"tRNS":
            trns = bytes(view[pos + 8:end - 4])
        elif kind == b"IDAT":
            idat.append(view[pos + 8:end - 4])
        elif kind == b"acTL":
            animated = True
        elif kind == b"IEND":
            return trns, tuple(idat), animated
        pos = end


_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def _max_png_bytes(w: int, h: int, depth: int, ctype: int) -> int:
    """The most bytes a PNG of this header can sensibly need: twice its rows stored uncompressed (room
    for any deflate and chunk overhead) plus 64 MiB of other chunks (colour profiles, text, XMP)."""
    bits = w * _CHANNELS.get(ctype, 4) * (depth if depth in (1, 2, 4, 8, 16) else 16)
    return 2 * h * (1 + (bits + 7) // 8) + (64 << 20)


_NO_WAIT = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)  # POSIX; Windows has no named pipes in folders


def _read_png(path: Path) -> bytes:
    """The file's bytes, after checking from its type, size and first 33 bytes that it is a regular
    file, a PNG, not a bomb and not larger than its declared size allows."""
    with _open_trait(path, "a PNG file") as f:
        size = os.fstat(f.fileno()).st_size
        _check_head(path, f.read(33), size)
        f.seek(0)
        data = f.read(size + 1)  # never more than the size checked; one more shows a file that grew
    if len(data) != size:
        raise LayerError(f"{path}: the file changed while it was read; run again when nothing is writing to it")
    return data


@contextmanager
def _open_trait(path: Path, what: str):
    """A trait file opened for reading. Stat never blocks, and the open is non-blocking: a file
    swapped for a named pipe after the stat is refused (checked again on the open file), not
    waited on."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise LayerError(f"{path}: not a regular file; replace it with {what}")
        fd = os.open(path, os.O_RDONLY | _NO_WAIT)
    except OSError as err:
        raise LayerError(f"{path}: cannot read ({why(err)}); replace it with {what}") from None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise LayerError(f"{path}: not a regular file; replace it with {what}")
        yield f


def _check_head(path: Path, head: bytes, size: int) -> None:
    if size == 0 or not head:
        raise LayerError(f"{path}: the file is empty (0 bytes); re-export it as a PNG")
    if not head.startswith(PNG_SIGNATURE):
        raise LayerError(f"{path}: not a PNG file (wrong signature); re-export it as a PNG")
    w, h, depth, ctype = _read_ihdr(path, head)
    limit = _max_png_bytes(w, h, depth, ctype)
    if size > limit:
        raise LayerError(f"{path}: {size} bytes is more than a {w}x{h} PNG can need ({limit}); this looks like a "
                         f"broken or hostile file, re-export it")


def _check_png(path: Path, data: bytes) -> _PngHeader:
    if not data:
        raise LayerError(f"{path}: the file is empty (0 bytes); re-export it as a PNG")
    if not data.startswith(PNG_SIGNATURE):
        raise LayerError(f"{path}: not a PNG file (wrong signature); re-export it as a PNG")
    w, h, depth, ctype = _read_ihdr(path, data)
    trns, idat, animated = _walk_chunks(path, data)
    header = _PngHeader(w, h, depth, ctype, trns, data[28], idat, animated)
    if depth == 16 and ctype == 2 and header.trns is not None:
        # Pillow reduces 16-bit RGB to 8 bits and then compares that with the 16-bit key: wrong pixels go clear.
        raise LayerError(f"{path}: 16-bit RGB with a transparent colour key (tRNS) cannot be read exactly; "
                         f"re-export it as RGBA (with an alpha channel)")
    return header


MAX_OTHER_BYTES = 256 << 20  # a JPEG or WebP trait; far above any real one at 16384x16384


OTHER_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".gif": "GIF"}


def _read_regular(path: Path, limit: int) -> bytes:
    """A regular file's bytes (non-blocking open, type checked on the open file, at most `limit`)."""
    with _open_trait(path, "an image file") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise LayerError(f"{path}: {size} bytes is more than a trait image needs ({limit}); re-export it")
        data = f.read(limit + 1)
    if not data:
        raise LayerError(f"{path}: the file is empty (0 bytes); re-export it")
    return data


ANIMATION_HINT = ("animated traits are read when the collection has animated output ([output] animation = "
                  "\"webp\", docs/outputs.md, \"Animated collections\"); otherwise export a single still frame")


def _frames_or_refuse(im, path: Path, animated: bool, what: str):
    """None for a still image; when it is animated and animation is on, its frames (a list), or its
    one frame's pixels (a single-frame GIF); refused when animation is off."""
    if im.format != "GIF" and getattr(im, "n_frames", 1) <= 1:
        return None
    if not animated:
        raise LayerError(f"{path}: {what} with {im.n_frames} frames; {ANIMATION_HINT}")
    frames = decode_frames(im, path)
    return frames if len(frames) > 1 else frames[0]


def _decode_other(path: Path, animated: bool = False) -> tuple[np.ndarray | list[np.ndarray], str]:
    """A JPEG (read as opaque: it has no alpha) or WebP trait to (H, W, 4) uint8 straight RGBA. The
    declared size is checked from the header before any pixel is decoded."""
    want = OTHER_FORMATS[path.suffix.lower()]
    data = _read_regular(path, MAX_OTHER_BYTES)
    if want == "GIF" and not animated:
        raise LayerError(f"{path}: a GIF trait; {ANIMATION_HINT}")
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=[want])
        with opened as im:
            w, h = im.size
            if w * h > _pixel_limit():
                raise LayerError(f"{path}: declared size {w}x{h} is larger than gpucomp accepts ({_pixel_limit()} "
                                 f"pixels); re-export it at the collection's canvas size")
            frames = _frames_or_refuse(im, path, animated, "animated image") if want != "JPEG" else None
            if frames is not None:
                return frames, hashlib.sha256(data).hexdigest()
            im.load()
            rgba = im.convert("RGB").convert("RGBA") if want == "JPEG" else im.convert("RGBA")
            arr = np.array(rgba, dtype=np.uint8)
    except LayerError:
        raise
    except Exception as err:  # Pillow raises many types for broken files
        raise LayerError(f"{path}: cannot decode it as {want} ({type(err).__name__}: {err}); the file is damaged "
                         f"or not a {want} file, re-export it") from err
    return arr, hashlib.sha256(data).hexdigest()


def _decode(path: Path, animated: bool = False) -> tuple[np.ndarray | list[np.ndarray] | png_read.Decoded, str]:
    """Decode one trait image to (H, W, 4) uint8 straight RGBA (a list of them: an animated image's
    frames, when `animated`; png_read.Decoded, already cropped, from the fast PNG reader); errors
    name the file and the fix."""
    if path.suffix.lower() in OTHER_FORMATS:
        return _decode_other(path, animated)
    data = _read_png(path)
    header = _check_png(path, data)
    digest = hashlib.sha256(data).hexdigest()
    fast = png_read.decode(header)  # the common PNGs; None: Pillow below
    if fast is not None:
        return fast, digest
    try:
        # catch_warnings swaps the process-wide filter list and is not thread-safe: decodes run in
        # a thread pool, so overlapping enter/exit pairs used to leave the "error" filter installed
        # for the caller. Hold a lock around it and keep it to Image.open (where Pillow checks the size).
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
        with opened as im:
            frames = _frames_or_refuse(im, path, animated, "animated PNG")
            if frames is not None:
                return frames, digest
            im.load()
            arr = _to_rgba(im, header)
    except LayerError:
        raise
    except Exception as err:  # Pillow raises many types for broken files
        raise LayerError(f"{path}: cannot decode PNG ({type(err).__name__}: {err}); "
                         "the file is damaged, re-export it") from err
    return arr, digest


def decode_trait(path: Path, animated: bool = False):
    """(box, cropped pixels, canvas shape, opaque_full, sha256, frames), or the error instead of raising
    it, so one bad file does not hide the others. Cropping runs here, in the worker thread: on
    the main thread it was ~6 ms a 2048x2048 trait, serial (measured on the 2-core box). `frames` is
    None for a still image, else (box, cropped pixels, opaque_full) per frame (frame 0 is the image's own)."""
    try:
        arr, digest = _decode(path, animated)
    except LayerError as err:
        return err
    if isinstance(arr, png_read.Decoded):  # cropped while it was unfiltered
        return arr.box, arr.pixels, arr.shape, arr.opaque_full, digest, None
    frames = [_cropped(a) for a in arr] if isinstance(arr, list) else None
    box, pixels, full = frames[0] if frames else _cropped(arr)
    shape = (arr[0] if frames else arr).shape[:2]
    return box, pixels, shape, full, digest, frames


def _cropped(arr: np.ndarray) -> tuple:
    box, pixels = _crop(arr)
    return box, pixels, box == (0, 0, arr.shape[0], arr.shape[1]) and bool((pixels[..., 3] == 255).all())


def _to_rgba(im, header: _PngHeader | None = None) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: scale to 8 bits rather than clip (Pillow's convert clips).
        a = np.asarray(im, dtype=np.uint32)
        g = ((a * 255 + 32767) // 65535).clip(0, 255).astype(np.uint8)
        out = np.empty(g.shape + (4,), np.uint8)
        out[..., :3] = g[..., None]
        out[..., 3] = 255
        key = im.info.get("transparency")  # tRNS colour key: this grey level is fully transparent
        if isinstance(key, int):
            out[a == key, 3] = 0
        return out
    if im.mode == "L" and header and header.colour_type == 0 and header.bit_depth in (2, 4) and header.trns:
        return _low_depth_grey(im, header)
    if im.mode != "RGBA":
        im = im.convert("RGBA")
    return np.array(im, dtype=np.uint8)


def _low_depth_grey(im, header: _PngHeader) -> np.ndarray:
    """2- and 4-bit grey with a colour key: Pillow scales the pixels to 8 bits but not the key, so the
    key never matches. Scaling is exact (x * 255 / (2**d - 1)), so compare with the scaled key."""
    g = np.asarray(im, dtype=np.uint8)
    raw_key = int.from_bytes(header.trns[:2], "big")
    top = (1 << header.bit_depth) - 1
    out = np.empty(g.shape + (4,), np.uint8)
    out[..., :3] = g[..., None]
    out[..., 3] = 255
    if raw_key <= top:
        out[g == raw_key * (255 // top), 3] = 0
    return out


def _crop(arr: np.ndarray) -> tuple[tuple[int, int, int, int] | None, np.ndarray]:
    alpha = arr[..., 3]
    rows = np.flatnonzero(alpha.any(axis=1))
    if rows.size == 0:
        return None, np.zeros((0, 0, 4), np.uint8)
    cols = np.flatnonzero(alpha.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return (y0, x0, y1, x1), np.ascontiguousarray(arr[y0:y1, x0:x1])
