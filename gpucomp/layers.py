"""Read a layers folder (`layers/<Layer>/<Trait>#<weight>.png`) into a LayerSet.

Every trait is decoded once, converted to straight RGBA uint8 and cropped to the
bounding box of its non-zero alpha. Ordering is natural-sorted names, never the
directory listing, so a plan is the same on every machine.
"""
from __future__ import annotations

import hashlib
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import LayerError
from .naming import layer_display_name, natural_key, parse_trait_name

IMAGE_SUFFIXES = (".png",)
MAX_PIXELS = 16384 * 16384  # refuse larger declared sizes before decoding (decompression bombs)
_WARNINGS_LOCK = threading.Lock()


@dataclass(eq=False)
class Trait:
    """One trait image: `pixels` is (h, w, 4) uint8 straight RGBA cropped to `box`.

    `box` is (y0, x0, y1, x1) on the canvas, or None when the trait is fully transparent.
    """

    name: str
    weight: float
    path: Path
    box: tuple[int, int, int, int] | None
    pixels: np.ndarray
    sha256: str
    canvas: tuple[int, int]  # (height, width) of the uncropped image
    opaque_full: bool  # covers the whole canvas with alpha 255 (a plain background)


@dataclass(eq=False)
class Layer:
    folder: str
    name: str  # display name used in metadata
    traits: list[Trait] = field(default_factory=list)
    blend: str = "normal"  # how the layer meets what is below it (compositing.py)
    opacity: float = 1.0

    @property
    def weights(self) -> np.ndarray:
        return np.array([t.weight for t in self.traits], dtype=np.float64)


@dataclass(eq=False)
class LayerSet:
    root: Path
    layers: list[Layer]
    width: int
    height: int

    @property
    def combinations(self) -> int:
        """Number of distinct trait combinations (traits of weight 0 excluded)."""
        total = 1
        for layer in self.layers:
            total *= int(np.count_nonzero(layer.weights > 0))
        return total

    @property
    def fingerprint(self) -> str:
        """SHA-256 over layer order, names, weights and pixel files: changes iff the plan or art can."""
        h = hashlib.sha256()
        for layer in self.layers:
            h.update(f"L{layer.folder}\0{layer.name}\0".encode())
            for t in layer.traits:
                h.update(f"T{t.name}\0{t.weight!r}\0{t.sha256}\0".encode())
        return h.hexdigest()

    @property
    def trait_count(self) -> int:
        return sum(len(layer.traits) for layer in self.layers)


def list_layer_folders(root: Path) -> list[str]:
    return sorted((p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)


def _decode(path: Path) -> tuple[np.ndarray, str]:
    """Decode one PNG to (H, W, 4) uint8 straight RGBA; errors name the file and the fix."""
    from PIL import Image

    try:
        data = path.read_bytes()
    except OSError as err:
        raise LayerError(f"{path}: cannot read ({err.strerror or err})") from err
    if not data:
        raise LayerError(f"{path}: the file is empty (0 bytes); re-export it as a PNG")
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise LayerError(f"{path}: not a PNG file (wrong signature); re-export it as a PNG")
    digest = hashlib.sha256(data).hexdigest()
    import io

    try:
        # catch_warnings swaps the process-wide filter list and is not thread-safe: decodes run in
        # a thread pool, so overlapping enter/exit pairs used to leave the "error" filter installed
        # for the caller. Hold a lock around it and keep it to Image.open (where Pillow checks the size).
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
        with opened as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise LayerError(
                    f"{path}: declared size {w}x{h} is larger than gpucomp accepts "
                    f"({MAX_PIXELS} pixels); this looks like a broken or hostile file"
                )
            if getattr(im, "n_frames", 1) > 1:
                raise LayerError(f"{path}: animated PNG with {im.n_frames} frames; export a single still frame")
            im.load()
            arr = _to_rgba(im)
    except LayerError:
        raise
    except Exception as err:  # Pillow raises many types for broken files
        raise LayerError(f"{path}: cannot decode PNG ({type(err).__name__}: {err}); the file is damaged, re-export it") from err
    return arr, digest


def _to_rgba(im) -> np.ndarray:
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
    if im.mode != "RGBA":
        im = im.convert("RGBA")
    return np.array(im, dtype=np.uint8)


def _crop(arr: np.ndarray) -> tuple[tuple[int, int, int, int] | None, np.ndarray]:
    alpha = arr[..., 3]
    rows = np.flatnonzero(alpha.any(axis=1))
    if rows.size == 0:
        return None, np.zeros((0, 0, 4), np.uint8)
    cols = np.flatnonzero(alpha.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return (y0, x0, y1, x1), np.ascontiguousarray(arr[y0:y1, x0:x1])


def load_layers(
    root: str | os.PathLike,
    order: Sequence[str] | None = None,
    display_names: dict[str, str] | None = None,
    delimiter: str = "#",
    workers: int | None = None,
    progress=None,
) -> LayerSet:
    """Read and validate a layers folder. `order` lists layer folder names bottom first;
    without it every sub-folder is used in natural order of its name."""
    root = Path(root)
    if not root.is_dir():
        raise LayerError(f"{root}: layers folder not found; pass the folder that holds one sub-folder per layer")
    folders = list(order) if order else list_layer_folders(root)
    if not folders:
        raise LayerError(f"{root}: no layer folders inside; expected {root}/<Layer>/<Trait>#<weight>.png")
    display_names = display_names or {}
    root_resolved = root.resolve()
    jobs: list[tuple[Layer, Path, str, float]] = []
    layers: list[Layer] = []
    for folder in folders:
        d = root / folder
        if not d.is_dir():
            raise LayerError(f"{d}: layer folder named in the layer order does not exist")
        layer = Layer(folder=folder, name=display_names.get(folder, layer_display_name(folder)))
        files = sorted((p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
                       key=lambda p: natural_key(p.name))
        if not files:
            raise LayerError(f"{d}: empty layer folder, no .png traits; add at least one trait image or drop the layer")
        seen: dict[str, Path] = {}
        for p in files:
            if not p.resolve().is_relative_to(root_resolved):
                raise LayerError(f"{p}: links outside the layers folder ({p.resolve()}); copy the file in instead")
            name, weight = parse_trait_name(p.stem, delimiter, str(p))
            if name in seen:
                raise LayerError(f"{p}: trait name {name!r} is used twice in layer {folder!r} (also {seen[name].name}); rename one")
            seen[name] = p
            jobs.append((layer, p, name, weight))
        if not any(w > 0 for (lay, _, _, w) in jobs if lay is layer):
            raise LayerError(f"{d}: every trait has weight 0, so nothing can be picked; give at least one a weight above 0")
        layers.append(layer)

    workers = workers or min(8, os.cpu_count() or 1)
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow's PNG decoder releases the GIL
        for (layer, p, name, weight), (arr, digest) in zip(jobs, pool.map(lambda j: _decode(j[1]), jobs)):
            box, pixels = _crop(arr)
            full = box == (0, 0, arr.shape[0], arr.shape[1]) and bool((pixels[..., 3] == 255).all())
            trait = Trait(name=name, weight=weight, path=p, box=box, pixels=pixels, sha256=digest,
                          canvas=arr.shape[:2], opaque_full=full)
            layer.traits.append(trait)
            done += 1
            if progress:
                progress(done, len(jobs))
    sizes = {t.canvas for layer in layers for t in layer.traits}
    if len(sizes) > 1:
        first = layers[0].traits[0]
        for layer in layers:
            for t in layer.traits:
                if t.canvas != first.canvas:
                    raise LayerError(
                        f"{t.path}: size {t.canvas[1]}x{t.canvas[0]} differs from {first.path} "
                        f"({first.canvas[1]}x{first.canvas[0]}); every trait must share one canvas size"
                    )
    h, w = sizes.pop()
    return LayerSet(root=root, layers=layers, width=w, height=h)
