"""Animated output: the settings ([output] animation, [output.animated]) and one encoder per format.

`[output] animation` names one animated format or a list of them: webp, apng, gif, mp4, webm. Each
item's frames (layers/frames.py) are fed to one encoder per format, frame by frame; `finish()` returns
the file's bytes. What each file decodes to (tests/test_animation_output.py):
- apng, and webp with [output.webp] lossless = true: exactly the frames (straight RGBA).
- webp (lossy): within the PSNR bound stated in the tests.
- gif: one palette per item (all its frames), no dithering unless gif_dither = true. Exact when the
  item's frames use at most 255 colours (256 when nothing is transparent) and alpha is only 0 or 255;
  otherwise the palette is a median cut of the item's colours. Alpha below 128 is transparent, the
  rest opaque (GIF has no partial transparency); frame times are stored in 1/100 s.
- mp4 (H.264) and webm (VP9): yuv420p video, frames flattened onto `background` first (no alpha),
  within the PSNR bound stated in the tests; they need an even canvas width and height (refused up
  front otherwise) and PyAV (`pip install gpucomp[video]`; its wheels carry FFmpeg). Video has no
  loop setting: players loop it.
Encoders store a frame identical to the one before it once, with the summed duration (playback is
the same; a decoder may report fewer frames for an item whose frames repeat).
The Pillow encoders hold one item's frames until finish(); PyAV encodes each frame as it comes.
"""
from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from PIL import Image, features

from gpucomp.encode.formats import flatten, hex_colour, name_list
from gpucomp.errors import ConfigError

ANIMATED = ("webp", "apng", "gif", "mp4", "webm")
EXTENSIONS = {"webp": "webp", "apng": "png", "gif": "gif", "mp4": "mp4", "webm": "webm"}
MIME_TYPES = {"webp": "image/webp", "apng": "image/apng", "gif": "image/gif", "mp4": "video/mp4", "webm": "video/webm"}
MAX_SIDE = {"webp": 16383, "apng": 65535, "gif": 65535, "mp4": 8192, "webm": 16384}
VIDEO = ("mp4", "webm")
FOLDER = "animation"  # animated files go to OUT/images/animation/<n>.<ext>
PALETTE_SAMPLE = 1 << 20  # GIF: pixels the palette of an item over 256 colours is cut from
# [output.animated] key -> (type, lowest, highest, default)
SETTINGS: dict[str, tuple[Any, Any, Any, Any]] = {
    "fps": ((int, float), 0.1, 100, 10),
    "frame_ms": (int, 10, 60_000, 0),  # 0: from fps
    "loop": (int, 0, 65535, 0),  # 0: forever
    "still_frame": (int, 0, 99_999, 0),
    "max_frames": (int, 1, 10_000, 1000),
    "gif_dither": (bool, None, None, False),
    "mp4_crf": (int, 0, 51, 20),
    "webm_crf": (int, 0, 63, 32),
    "background": (str, None, None, "#ffffff"),
}


@dataclass(frozen=True)
class Animation:
    """The animated outputs and their settings (defaults filled in); webp takes [output.webp]'s."""

    formats: tuple[str, ...]
    settings: dict = field(default_factory=dict, hash=False, compare=True)
    webp: dict = field(default_factory=dict, hash=False, compare=True)  # quality, method, lossless; {}: no webp

    @property
    def frame_ms(self) -> int:
        return self.settings["frame_ms"] or max(10, round(1000 / self.settings["fps"]))

    def to_dict(self) -> dict:
        """The settings as parse_animation reads them back (fps left out when frame_ms is given)."""
        settings = {k: v for k, v in self.settings.items() if not (k == "fps" and self.settings["frame_ms"])}
        return {"formats": list(self.formats), **settings, "webp": dict(self.webp)}

    def describe(self) -> str:
        s = self.settings
        return (f"{'+'.join(self.formats)} at {self.frame_ms} ms a frame, loop {s['loop']}, still frame "
                f"{s['still_frame']}, max_frames {s['max_frames']}")


def parse_animation(value: Any, table: Any, webp: dict, where: str) -> Animation:
    """`[output] animation` ("webp" or a list) and the [output.animated] table; `webp` is the parsed
    [output.webp] settings (formats.py). Raises ConfigError naming the key."""
    names = name_list(value, ANIMATED, f"{where}.animation", "animated format", "an animated format")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}.animated: must be a table, e.g. [output.animated] fps = 12")
    unknown = set(table) - set(SETTINGS)
    if unknown:
        raise ConfigError(f"{where}.animated: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(SETTINGS)}")
    if "fps" in table and table.get("frame_ms"):
        raise ConfigError(f"{where}.animated: give fps or frame_ms, not both")
    out = {}
    for key, (typ, lo, hi, default) in SETTINGS.items():
        v = table.get(key, default)
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise ConfigError(f"{where}.animated.{key}: expected {getattr(typ, '__name__', 'a number')}, got {v!r}")
        if lo is not None and not lo <= v <= hi and not (key == "frame_ms" and v == 0):
            raise ConfigError(f"{where}.animated.{key}: must be between {lo} and {hi}, got {v}")
        out[key] = v
    hex_colour(out["background"], f"{where}.animated.background")
    return Animation(tuple(names), out, dict(webp) if "webp" in names else {})


def animated_availability() -> dict[str, bool]:
    """Animated format -> whether this install writes it (video needs PyAV, WebP Pillow's WebP)."""
    video = importlib.util.find_spec("av") is not None
    return {name: (video if name in VIDEO else name != "webp" or bool(features.check("webp"))) for name in ANIMATED}


def check_available(anim: Animation | None, width: int, height: int, where: str = "config") -> None:
    """Refuse, before anything renders, an animated format this machine cannot write or a canvas it cannot hold."""
    if anim is None:
        return
    if "webp" in anim.formats and not features.check("webp"):
        raise ConfigError(f"{where}: animation 'webp' needs Pillow's WebP support; install a Pillow wheel with it")
    for name in anim.formats:
        if max(width, height) > MAX_SIDE[name]:
            raise ConfigError(f"{where}: animation {name!r} holds at most {MAX_SIDE[name]} pixels a side; the "
                              f"canvas is {width}x{height}")
    video = [n for n in anim.formats if n in VIDEO]
    if not video:
        return
    try:
        import av  # noqa: F401  (deferred: optional, the [video] extra; its import is the check that video can be written)
    except ImportError:
        raise ConfigError(f"{where}: animation {' and '.join(map(repr, video))} needs PyAV, which is not installed: "
                          f"`pip install 'gpucomp[video]'` (or `pip install av`; its wheels include FFmpeg), "
                          f"or drop {', '.join(video)}") from None
    if width % 2 or height % 2:
        raise ConfigError(f"{where}: animation {' and '.join(map(repr, video))} is yuv420p video, which needs an even "
                          f"width and height; the canvas is {width}x{height}: make the layers one pixel larger "
                          f"(or smaller), or drop {', '.join(video)}")


def rgba(frame: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 from a composite that may be opaque RGB."""
    if frame.shape[2] == 4:
        return frame
    out = np.empty(frame.shape[:2] + (4,), np.uint8)
    out[..., :3] = frame
    out[..., 3] = 255
    return out


class _PillowAnim:
    """Holds one item's frames; Pillow's animated writers take them all at once."""

    def __init__(self, anim: Animation, name: str):
        self.anim, self.name, self.frames = anim, name, []

    def add(self, frame: np.ndarray) -> None:
        self.frames.append(rgba(frame))

    def finish(self) -> bytes:
        s, ms = self.anim.settings, self.anim.frame_ms
        buf = io.BytesIO()
        if self.name == "gif":
            ims, transparent = gif_frames(self.frames, s["gif_dither"])
            extra = {"transparency": transparent} if transparent is not None else {}
            ims[0].save(buf, "GIF", save_all=True, append_images=ims[1:], duration=ms, loop=s["loop"],
                        disposal=2, optimize=False, **extra)
            return buf.getvalue()
        ims = [Image.fromarray(f, "RGBA") for f in self.frames]
        if self.name == "apng":
            ims[0].save(buf, "PNG", save_all=True, append_images=ims[1:], duration=ms, loop=s["loop"],
                        disposal=0, blend=0, compress_level=6)
        else:
            w = self.anim.webp
            opts = {"lossless": True, "exact": True} if w.get("lossless") else {}
            ims[0].save(buf, "WEBP", save_all=True, append_images=ims[1:], duration=ms, loop=s["loop"],
                        quality=w.get("quality", 90), method=w.get("method", 4), **opts)
        return buf.getvalue()


def gif_frames(frames: list[np.ndarray], dither: bool):
    """The frames as P images sharing one palette (the item's), and the transparent index (None: none)."""
    stack = np.stack(frames)
    clear = stack[..., 3] < 128
    rgb = stack[..., :3]
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    seen = np.zeros(1 << 24, bool)
    seen[packed[~clear]] = True
    colours = np.flatnonzero(seen).astype(np.uint32)
    room = 255 if clear.any() else 256
    if len(colours) <= room:  # exact: every colour has its own index
        index = np.searchsorted(colours, packed).astype(np.uint8)
        palette = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], 1).astype(np.uint8)
    else:
        index, palette = _quantized(rgb, clear, room, dither)
    transparent = None
    if clear.any():
        transparent = len(palette)
        index[clear] = transparent
        palette = np.concatenate([palette, np.zeros((1, 3), np.uint8)])
    flat = palette.ravel().tolist()
    out = []
    for k in range(len(frames)):
        im = Image.fromarray(index[k], "P")
        im.putpalette(flat)
        out.append(im)
    return out, transparent


def _quantized(rgb: np.ndarray, clear: np.ndarray, colours: int, dither: bool):
    """(indices, palette) for more colours than a GIF holds: a median cut over the item's frames (every
    k-th row of them, at most about 2^20 pixels: 8x faster at 24 frames of 512x512, the same mean error)."""
    L, H, W, _ = rgb.shape
    rows = rgb.reshape(L * H, W, 3)
    mosaic = Image.fromarray(np.ascontiguousarray(rows), "RGB")
    step = max(1, -(-(L * H * W) // PALETTE_SAMPLE))
    sample = Image.fromarray(np.ascontiguousarray(rows[::step]), "RGB")
    pal = sample.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    mapped = mosaic.quantize(palette=pal, dither=Image.Dither.FLOYDSTEINBERG if dither else Image.Dither.NONE)
    palette = np.array(pal.getpalette()[:3 * colours], np.uint8).reshape(-1, 3)
    return np.array(mapped, np.uint8).reshape(L, H, W), palette


class _VideoAnim:
    """Encodes each frame as it comes (PyAV): only the encoder's own buffers are held."""

    CODECS = {"mp4": ("mp4", "libx264", "mp4_crf"), "webm": ("webm", "libvpx-vp9", "webm_crf")}

    def __init__(self, anim: Animation, name: str):
        import av  # deferred: optional (the [video] extra)

        container, codec, crf = self.CODECS[name]
        self.bg = hex_colour(anim.settings["background"], "background")
        self.buf = io.BytesIO()
        self.out = av.open(self.buf, "w", format=container)
        self.stream = None
        self.codec, self.crf, self.rate = codec, anim.settings[crf], Fraction(1000, anim.frame_ms)
        self.count = 0

    def _open(self, width: int, height: int) -> None:
        options = {"crf": str(self.crf)}
        if self.codec == "libvpx-vp9":
            options.update({"b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "0"})
        else:
            options.update({"preset": "medium"})
        self.stream = self.out.add_stream(self.codec, rate=self.rate, options=options)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.codec_context.thread_count = 1  # the item workers run in parallel; and the bytes stay the same
        self.stream.codec_context.time_base = 1 / self.rate

    def add(self, frame: np.ndarray) -> None:
        import av  # deferred: optional (the [video] extra)

        if self.stream is None:
            self._open(frame.shape[1], frame.shape[0])
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(flatten(frame, self.bg)), format="rgb24")
        vf.pts = self.count
        self.count += 1
        for packet in self.stream.encode(vf):
            self.out.mux(packet)

    def finish(self) -> bytes:
        for packet in self.stream.encode():
            self.out.mux(packet)
        self.out.close()
        return self.buf.getvalue()


def encoder(anim: Animation, name: str):
    """A fresh encoder for one item's file of animated format `name`: add(frame) each frame, then finish()."""
    return _VideoAnim(anim, name) if name in VIDEO else _PillowAnim(anim, name)
