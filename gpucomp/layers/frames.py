"""Animated traits' frames: which folders are frame folders, decoding an animated PNG, GIF or WebP,
and the limits on frames a trait may have.

A trait is animated when it is a folder of frames (`Flame#10/000.png, 001.png ...`, frames in natural
order of their names, every name a frame number, optionally after one shared prefix: `frame_000.png`)
or an animated PNG, GIF or WebP file. Its frames are read only when the collection has animated output
([output] animation); without it an animated file is refused, naming the setting (layers/decode.py).
The collection's frame count and frame f of an item: plan/frames.py.
"""
from __future__ import annotations

import re

import numpy as np

from gpucomp.errors import LayerError

MAX_TRAIT_FRAMES = 10_000  # frames one trait file or folder may have (a hostile GIF claims 100k)
MAX_TRAIT_FRAME_BYTES = 2 << 30  # decoded RGBA of one animated trait (frames x width x height x 4)
_FRAME = re.compile(r"(.*?)([0-9]+)")  # a frame file's stem: a prefix, then its frame number


def check_frames(path, frames: int, width: int, height: int) -> None:
    """Refuse an animated trait with more frames, or more decoded bytes, than gpucomp reads."""
    limit = MAX_TRAIT_FRAMES
    if frames > limit:
        raise LayerError(f"{path}: more than {limit} frames; gpucomp reads at most {limit} frames a trait "
                         f"(a real animated trait has tens): this looks like a broken or hostile file, re-export it")
    need = frames * width * height * 4
    if need > MAX_TRAIT_FRAME_BYTES:
        raise LayerError(f"{path}: {frames} frames of {width}x{height} decode to {need >> 20} MiB, more than gpucomp "
                         f"holds for one trait ({MAX_TRAIT_FRAME_BYTES >> 20} MiB); use fewer frames or a smaller "
                         f"canvas")


def decode_frames(im, path) -> list[np.ndarray]:
    """Every frame of an opened animated PNG, GIF or WebP as (H, W, 4) uint8 straight RGBA, as the
    format composites it (Pillow applies APNG and GIF disposal and blending when it seeks, WebP's
    decoder composites its frames). Frames are counted while decoding: a GIF's count is not in its
    header, and one claiming 100k frames stops at MAX_TRAIT_FRAMES, not after reading them all."""
    w, h = im.size
    declared = getattr(im, "n_frames", 1) if im.format != "GIF" else 1  # APNG acTL, WebP: from the header
    check_frames(path, declared, w, h)
    frames: list[np.ndarray] = []
    for i in range(MAX_TRAIT_FRAMES + 1):
        try:
            im.seek(i)
        except EOFError:
            break
        check_frames(path, i + 1, w, h)
        frames.append(np.array(im.convert("RGBA"), dtype=np.uint8))
    return frames


def frame_folder_names(names: list[str], delimiter: str = "#") -> bool:
    """Whether a folder's file stems name frames: each a frame number (`000`, `001` ... or `0`, `1` ...)
    after one prefix shared by all (`frame_000`, `frame_001` ...) that holds no weight delimiter."""
    split = [_FRAME.fullmatch(n) for n in names]
    if not names or not all(split):
        return False
    prefixes = {m.group(1) for m in split}
    return len(prefixes) == 1 and delimiter not in next(iter(prefixes))


