"""Procedural, seeded trait layers for the demo, the tests and the benchmarks.

Layer 0 is an opaque textured background; the others are mostly transparent with
anti-aliased shapes (opaque or semi-transparent, flat or textured) covering 5-40% of
the canvas, like real trait art. With `animated` frames, the top two layers are animated: each
trait of the top layer a folder of frames (`<Trait>#<w>/000.png ...`), each of the one below an
animated PNG of half as many frames (when even); their shapes move along a small circle and pulse
in opacity. Output depends only on the arguments.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from gpucomp._shared.files import atomic_write_bytes
from gpucomp.encode.png import encode_png
from gpucomp.errors import ConfigError

LAYER_NAMES = ["Background", "Body", "Clothes", "Eyes", "Mouth", "Head", "Accessory", "Aura",
               "Glasses", "Earring", "Badge", "Halo"]
COLOR_NAMES = ["Red", "Blue", "Green", "Gold", "Night Sky", "Rose-Pink", "Ash", "Teal", "Amber",
               "Violet", "Mint", "Coral", "Slate", "Ivory", "Plum", "Sand", "Crimson", "Olive"]
SHAPES = ["Circle", "Ring", "Box", "Ellipse", "Blob", "Bar"]


def _texture(rng: np.random.Generator, h: int, w: int, yy, xx) -> np.ndarray:
    """(h, w, 3) float32 in [0, 1]: a colour with stripes or waves, per pixel."""
    base = rng.random(3, dtype=np.float32) * 0.8 + 0.1
    kind = rng.integers(0, 3)
    if kind == 0:
        return np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    f1, f2 = rng.random(2) * 0.05 + 0.005
    wave = np.sin(xx * f1 + yy * f2 * (kind == 2)) * np.cos(yy * f2) if kind == 2 else np.sin((xx + yy) * f1)
    amp = rng.random(3, dtype=np.float32) * 0.3
    return np.clip(base + wave[..., None].astype(np.float32) * amp, 0, 1)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c0, c1 = rng.random(3, dtype=np.float32), rng.random(3, dtype=np.float32)
    t = ((yy + xx) / (2 * size))[..., None]
    img = c0 * (1 - t) + c1 * t + _texture(rng, size, size, yy, xx) * 0.25
    noise = rng.random((size, size, 1), dtype=np.float32) * 0.06
    rgb = np.clip(img + noise, 0, 1)
    out = np.empty((size, size, 4), np.uint8)
    out[..., :3] = np.rint(rgb * 255)
    out[..., 3] = 255
    return out


def shape_trait(rng: np.random.Generator, size: int) -> np.ndarray:
    """One mostly transparent trait: an anti-aliased shape covering 5-40% of the canvas."""
    coverage = rng.uniform(0.05, 0.40)
    shape = SHAPES[rng.integers(len(SHAPES))]
    area = coverage * size * size
    aspect = rng.uniform(0.5, 2.0) if shape in ("Ellipse", "Box", "Bar") else 1.0
    if shape == "Bar":
        aspect = rng.uniform(3, 6)
    if shape in ("Box", "Bar"):
        hh = math.sqrt(area / aspect) / 2
        hw = hh * aspect
    elif shape == "Ring":
        hh = hw = math.sqrt(area / (math.pi * 0.75))  # ring of inner radius r/2
    else:
        hh = math.sqrt(area / (math.pi * aspect))
        hw = hh * aspect
    hh, hw = min(hh, size / 2 - 2), min(hw, size / 2 - 2)
    cy = rng.uniform(hh + 1, size - hh - 1)
    cx = rng.uniform(hw + 1, size - hw - 1)
    y0, y1 = int(cy - hh - 2), int(math.ceil(cy + hh + 2))
    x0, x1 = int(cx - hw - 2), int(math.ceil(cx + hw + 2))
    y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, size), min(x1, size)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy + 0.5 - cy, xx + 0.5 - cx
    if shape in ("Box", "Bar"):
        sdf = np.maximum(np.abs(dy) - hh, np.abs(dx) - hw)
    else:
        r = np.sqrt((dy / hh) ** 2 + (dx / hw) ** 2)
        if shape == "Blob":
            ang = np.arctan2(dy, dx)
            r = r * (1 + 0.12 * np.sin(ang * rng.integers(3, 7) + rng.uniform(0, 6)))
        sdf = (r - 1) * min(hh, hw)
        if shape == "Ring":
            sdf = np.maximum(sdf, (0.5 - r) * min(hh, hw))
    cov = np.clip(0.5 - sdf, 0, 1)  # one-pixel anti-aliased edge
    opacity = 1.0 if rng.random() < 0.7 else rng.uniform(0.35, 0.85)
    rgb = _texture(rng, y1 - y0, x1 - x0, yy, xx)
    out = np.zeros((size, size, 4), np.uint8)
    out[y0:y1, x0:x1, :3] = np.rint(rgb * 255)
    out[y0:y1, x0:x1, 3] = np.rint(cov * opacity * 255)
    return out


def trait_counts(layers: int, traits: int) -> list[int]:
    base, extra = divmod(traits, layers)
    return [base + (1 if i < extra else 0) for i in range(layers)]


MAX_LAYERS = 64
MAX_TRAITS = 10_000
MIN_SIZE, MAX_SIZE = 8, 4096  # smaller leaves no room for a shape; larger needs GBs of scratch memory


def check_args(layers: int, traits: int, size: int, seed: int) -> None:
    """A ConfigError naming the option (the CLI's `demo --layers/--traits/--image-size/--layer-seed`) and
    its allowed range."""
    for flag, value, low, high in (("--layers", layers, 1, MAX_LAYERS),
                                   ("--traits", traits, max(layers, 1), MAX_TRAITS),
                                   ("--image-size", size, MIN_SIZE, MAX_SIZE),
                                   ("--layer-seed", seed, 0, 2**63 - 1)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            more = " (at least one trait per layer)" if flag == "--traits" else ""
            raise ConfigError(f"demo {flag} must be a whole number from {low} to {high}{more}, got {value!r}")


def moving_frames(pixels: np.ndarray, frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`frames` frames of a trait: its pixels shifted around a circle (wrapping at the canvas edges),
    alpha pulsing between 60% and 100%. Frame f differs from frame f + 1 whenever frames > 1."""
    size = pixels.shape[0]
    radius = max(2.0, size / 16)
    phase = rng.uniform(0, 2 * math.pi)
    out = []
    for f in range(frames):
        t = 2 * math.pi * f / frames + phase
        moved = np.roll(pixels, (round(radius * math.sin(t)), round(radius * math.cos(t))), axis=(0, 1))
        scale = 0.8 + 0.2 * math.cos(2 * math.pi * f / frames)
        frame = moved.copy()
        frame[..., 3] = np.rint(moved[..., 3] * scale)
        out.append(frame)
    return out


MAX_FRAMES = 240


def _write_trait(folder: Path, stem: str, pixels: np.ndarray, frames: int, kind: str, rng, preset: str) -> None:
    """One trait: a PNG (frames 0), a folder of numbered PNG frames, or an animated PNG."""
    if not frames:
        atomic_write_bytes(folder / f"{stem}.png", encode_png(pixels, preset=preset, opaque_rgb=False))
        return
    seq = moving_frames(pixels, frames, rng)
    if kind == "folder":
        (folder / stem).mkdir(exist_ok=True)
        for f, frame in enumerate(seq):
            atomic_write_bytes(folder / stem / f"{f:03d}.png", encode_png(frame, preset=preset, opaque_rgb=False))
        return
    ims = [Image.fromarray(x, "RGBA") for x in seq]
    buf = io.BytesIO()
    ims[0].save(buf, "PNG", save_all=True, append_images=ims[1:], duration=100, disposal=0, blend=0)
    atomic_write_bytes(folder / f"{stem}.png", buf.getvalue())


def make_layers(out: str | Path, layers: int = 5, traits: int = 30, size: int = 256, seed: int = 0,
                preset: str = "fast", animated: int = 0) -> Path:
    """Write a layers folder `out/<NN-Layer>/<Trait>#<weight>.png` and return its path.

    Deterministic in (layers, traits, size, seed, animated). Each layer needs at least one trait; arguments
    outside the ranges of check_args are a ConfigError, before anything is written. `animated` > 0: the
    top layer's traits are folders of that many frames, the next layer's animated PNGs of half as many
    (when even; the module doc), so the collection's animation has `animated` frames.
    """
    check_args(layers, traits, size, seed)
    if isinstance(animated, bool) or not isinstance(animated, int) or not 0 <= animated <= MAX_FRAMES \
            or (animated and layers < 3):
        raise ConfigError(f"demo --animated frames must be a whole number from 1 to {MAX_FRAMES}, with at least "
                          f"3 layers; got {animated!r} with {layers} layers")
    out = Path(out)
    rng = np.random.default_rng(seed)
    for li, count in enumerate(trait_counts(layers, traits)):
        lname = LAYER_NAMES[li % len(LAYER_NAMES)] + ("" if li < len(LAYER_NAMES) else f" {li}")
        folder = out / f"{li + 1:02d}-{lname}"
        folder.mkdir(parents=True, exist_ok=True)
        for ti in range(count):
            pixels = background(rng, size) if li == 0 else shape_trait(rng, size)
            color = COLOR_NAMES[ti % len(COLOR_NAMES)]
            tname = f"{color} {SHAPES[ti % len(SHAPES)] if li else 'Plain'}" + (f" {ti}" if ti >= len(COLOR_NAMES) else "")
            weight = int(rng.integers(1, 50))
            frames = 0
            if animated and li == layers - 1:
                frames, kind = animated, "folder"
            elif animated and li == layers - 2:
                frames, kind = (animated // 2 if animated % 2 == 0 and animated > 2 else animated), "apng"
            _write_trait(folder, f"{tname}#{weight}", pixels, frames, kind if frames else "", rng, preset)
    return out
