"""Read a layers folder (`layers/<Layer>/<Trait>#<weight>.png`) into a LayerSet.

Every trait is decoded once, converted to straight RGBA uint8 and cropped to the
bounding box of its non-zero alpha. Ordering is natural-sorted names, never the
directory listing, so a plan is the same on every machine.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from gpucomp._shared.safe_text import terminal_safe
from gpucomp.compositing import BLEND_MODES
from gpucomp.errors import LayerError, LayerProblems, LayerWarning
from gpucomp.layers.decode import decode_trait
from gpucomp.layers.found import Found
from gpucomp.layers.frames import check_frames
from gpucomp.layers.naming import EDGE_CASES_FOLDER, has_order, layer_display_name, natural_key, offset_of
from gpucomp.layers.scan import ScanLimit, Walk, list_layer_folders

MAX_PROBLEMS_SHOWN = 20  # a folder of broken files lists this many problems, then a count


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
    canvas: tuple[int, int] | None  # (height, width) of the uncropped image; None for a trait of parts
    opaque_full: bool  # covers the whole canvas with alpha 255 (a plain background)
    # None: a plain trait (these pixels, at its layer's place). Otherwise the images it draws together
    # (nftchef parts, `z<N>,`, `?blend=`), bottom first within its layer; () draws nothing (`NONE`).
    # Such a trait's own pixels are empty: collection.render_view stacks its parts for the backends.
    parts: tuple["TraitPart", ...] | None = None
    # Art Engine 2 edge cases: what the trait draws instead when another layer has a value (render_view.py)
    edge_cases: tuple["EdgeCase", ...] = ()
    # An animated image (layers/frames.py): its frames, each an image of its own (frame 0 has the same pixels
    # and box as this trait). None: a still image.
    frames: tuple["Trait", ...] | None = None
    dna: tuple[str, ...] = ()  # nftchef's DNA entries for it (found.Found.dna): how a `_dna.json` names it

    @property
    def empty(self) -> bool:
        return self.parts == ()


@dataclass(eq=False)
class TraitPart:
    """One image of a trait made of parts, with the options its file name gave (None: inherited)."""

    image: Trait
    z: int | None
    blend: str | None
    opacity: float | None


@dataclass(eq=False)
class EdgeCase:
    """An Art Engine 2 edge case of a trait: when layer `layer` (display or folder name) has the trait
    `value`, the trait draws `parts` instead of its own images. The metadata keeps the trait."""

    layer: str
    value: str
    parts: tuple[TraitPart, ...]


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
    render: "object | None" = None  # render_view.RenderView when traits draw parts (set per stack)

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


def _scan_layer(walk: Walk, folder: str, display_name: str | None) -> tuple[Layer, list[tuple[Layer, Found]]]:
    """One layer's traits by name, before decoding (scan.Walk.layer)."""
    layer = Layer(folder=folder, name=display_name or layer_display_name(folder))
    return layer, [(layer, t) for t in walk.layer(folder)]


def images_of(t: Trait) -> list[Trait]:
    """The decoded images a trait draws: itself, or its parts' images, and its edge cases' images."""
    own = [t] if t.parts is None else [part.image for part in t.parts]
    images = own + [part.image for edge in t.edge_cases for part in edge.parts]
    return images + [f for im in images for f in (im.frames or ())[1:]]


def _size_problems(layers: list[Layer]) -> tuple[tuple[int, int] | None, list[str]]:
    """The canvas most traits share (first seen wins a tie), and one problem per trait that differs:
    with one odd file out, the odd one is reported, not everything else."""
    images = [im for layer in layers for t in layer.traits for im in images_of(t)]
    traits = [im for im in images if im.canvas is not None]
    if not traits:
        return None, []
    size = Counter(t.canvas for t in traits).most_common(1)[0][0]
    ref = next(t for t in traits if t.canvas == size)
    return size, [
        f"{t.path}: size {t.canvas[1]}x{t.canvas[0]} differs from {ref.path} "
        f"({ref.canvas[1]}x{ref.canvas[0]}); every trait must share one canvas size"
        for t in traits if t.canvas != size
    ] + [
        f"{t.path}: placed at x={t.box[1]}, y={t.box[0]} (its visible part) it runs past the {size[1]}x{size[0]} "
        f"canvas to x={t.box[3]}, y={t.box[2]}; make it smaller or lower its __x/__y"
        for t in images if t.canvas is None and t.box is not None and (t.box[2] > size[0] or t.box[3] > size[1])
    ]


EMPTY_SHA256 = hashlib.sha256(b"gpucomp empty trait").hexdigest()


def _no_pixels() -> np.ndarray:
    return np.zeros((0, 0, 4), np.uint8)


def _build_trait(found: Found, decoded: dict[Path, Trait]) -> Trait:
    """The user-facing trait: a decoded image itself (plain), a folder of frames (layers/frames.py), or a
    trait of parts whose digest covers every part's bytes and options (so a changed part or `z<N>,`
    re-renders its items)."""
    if found.frames is not None:
        return _frames_trait(found, [decoded[p] for p in found.frames])
    if found.parts is None:
        im = decoded[found.path]
        return Trait(found.name, found.weight, found.path, im.box, im.pixels, im.sha256, im.canvas, im.opaque_full,
                     frames=im.frames)
    parts = tuple(TraitPart(decoded[p.path], p.z, p.blend, p.opacity) for p in found.parts)
    h = hashlib.sha256(b"parts")
    for part in parts:
        h.update(f"{part.image.sha256}:{part.z}:{part.blend}:{part.opacity}\0".encode())
    digest = h.hexdigest() if parts else EMPTY_SHA256
    return Trait(found.name, found.weight, found.path, None, _no_pixels(), digest, None, False, parts)


def _frames_trait(found: Found, frames: list[Trait]) -> Trait:
    """A folder of frames: frame 0's pixels, a digest over every frame's bytes in order."""
    if len(frames) == 1:
        im = frames[0]
        return Trait(found.name, found.weight, found.path, im.box, im.pixels, im.sha256, im.canvas, im.opaque_full)
    if first_canvas := frames[0].canvas:
        check_frames(found.path, len(frames), first_canvas[1], first_canvas[0])
    h = hashlib.sha256(b"frames")
    for im in frames:
        h.update(f"{im.sha256}\0".encode())
    first = frames[0]
    return Trait(found.name, found.weight, found.path, first.box, first.pixels, h.hexdigest(), first.canvas,
                 all(im.opaque_full for im in frames), frames=tuple(frames))


def _decoded_image(p: Path, result: tuple) -> Trait:
    """A decoded file as an image (Trait of weight 0), placed at its `__x`/`__y` offset plus its layer
    folder's (Art Engine 2 adds them) when either has one."""
    box, pixels, canvas, full, digest, frames = result
    folder = p.parent.parent if p.parent.name == EDGE_CASES_FOLDER else p.parent
    offsets = [o for o in (offset_of(p.stem), offset_of(folder.name)) if o is not None]
    if offsets:  # placed on the canvas at (x, y): its own size is not the canvas's
        x, y = sum(o[0] for o in offsets), sum(o[1] for o in offsets)  # a file's __x/__y add to its folder's

        def place(b):
            return None if b is None else (b[0] + y, b[1] + x, b[2] + y, b[3] + x)
        box, canvas, full = place(box), None, False
        frames = frames and [(place(b), px, False) for b, px, _ in frames]
    anim = None
    if frames:
        anim = tuple(Trait(f"{p.name}[{i}]", 0.0, p, b, px, digest, canvas, f) for i, (b, px, f) in enumerate(frames))
        full = all(f for _, _, f in frames)
    return Trait(name=p.name, weight=0.0, path=p, box=box, pixels=pixels, sha256=digest, canvas=canvas,
                 opaque_full=full, frames=anim)


def _attach_edge_cases(layers: list[Layer], found: dict[str, list], decoded: dict[Path, Trait],
                       unloaded: set[str]) -> list[str]:
    """Give each trait its Art Engine 2 edge cases (found.EdgeFound), checked against the layers: the
    option must be a trait of its layer, `__t` another layer (display or folder name), `__v` one of
    that layer's traits. The trait's digest then covers its edge cases' bytes and options, so a
    changed edge-case file is a changed trait (its items re-render). One naming a layer folder that
    this load leaves out (`unloaded`: folder and display names) can apply nowhere: it is dropped."""
    problems = []
    by_name = {name: layer for layer in layers for name in (layer.folder, layer.name)}
    for layer in layers:
        traits = {t.name: t for t in layer.traits}
        for e in found.get(layer.folder, ()):
            where = e.parts[0].path
            other = by_name.get(e.layer)
            if other is None and e.layer in unloaded:
                continue
            if e.option not in traits:
                problems.append(f"{where}: edge case for option {e.option!r}, which is not a trait of layer "
                                f"{layer.folder!r}; name the file after one of its traits")
            elif other is None or other is layer:
                problems.append(f"{where}: `__t{e.layer}` names no other layer; use a layer's name "
                                f"({', '.join(la.name for la in layers if la is not layer)})")
            elif e.value not in {t.name for t in other.traits}:
                problems.append(f"{where}: `__v{e.value}` is not a trait of layer {e.layer!r}; use one of "
                                f"{', '.join(repr(t.name) for t in other.traits[:8])}")
            elif all(p.path in decoded for p in e.parts):
                t = traits[e.option]
                parts = tuple(TraitPart(decoded[p.path], p.z, p.blend, p.opacity) for p in e.parts)
                t.edge_cases += (EdgeCase(e.layer, e.value, parts),)
                h = hashlib.sha256(f"edge:{t.sha256}:{e.layer}\0{e.value}\0".encode())
                for part in parts:
                    h.update(f"{part.image.sha256}:{part.z}:{part.blend}:{part.opacity}\0".encode())
                t.sha256 = h.hexdigest()
    return problems


def _unloaded(root: Path, folders: list[str]) -> set[str]:
    """Folder and display names of the layer folders in root that this load does not read."""
    try:
        rest = [f for f in list_layer_folders(root) if f not in folders]
    except LayerError:
        return set()
    return {n for f in rest for n in (f, layer_display_name(f))}


def _warn_others(root: Path, others: list[Path]) -> None:
    if not others:
        return
    others = sorted(others, key=lambda p: natural_key(str(p.relative_to(root))))
    shown = ", ".join(str(p.relative_to(root)) for p in others[:MAX_PROBLEMS_SHOWN])
    more = f" and {len(others) - MAX_PROBLEMS_SHOWN} more" if len(others) > MAX_PROBLEMS_SHOWN else ""
    warnings.warn(LayerWarning(f"{root}: {len(others)} file(s) in the layer folders are not images gpucomp reads "
                               f"(.png, .jpg, .jpeg, .webp; .gif in animated collections) and are left out: "
                               f"{shown}{more}"), stacklevel=3)


def warn_unordered(root: Path, folders: list[str]) -> None:
    """Layer folders stacked in name order because nothing says otherwise (no number in front, no
    `__z`, no [[layers]]): HashLips keeps its order in config.js's `layersOrder`, so its own example
    layers stack the eyeball over the eye colour here unless that order is imported. A warning that
    names the order used, and the config.js to import when one is beside or above the folder."""
    if len(folders) < 2 or all(has_order(f) for f in folders):
        return
    shown = ", ".join(folders[:12]) + (f", ... ({len(folders)} in all)" if len(folders) > 12 else "")
    found = _config_js_near(root)
    fix = (f"; {found} is beside it: `gpucomp import-config {shlex.quote(str(found))} --layers "
           f"{shlex.quote(str(root))} -o collection.toml` takes its layersOrder" if found else "")
    warnings.warn(LayerWarning(f"{root}: the layer folders carry no stacking order (no number in front such as "
                               f"`01-`, no `__z`, no [[layers]] in a config), so they stack in name order, bottom "
                               f"first: {shown}; number the folders or list them in [[layers]] if that is not the "
                               f"order{fix}"), stacklevel=3)


def _config_js_near(root: Path) -> Path | None:
    """A HashLips/nftchef config.js in the layers folder's project: beside it, or in src/ above it."""
    base = Path(os.path.abspath(root))
    for folder in (base, base.parent, base.parent.parent):
        for candidate in (folder / "config.js", folder / "src" / "config.js"):
            try:
                if candidate.is_file():
                    return candidate
            except OSError:
                continue
    return None


def _combined_error(root: Path, problems: list[str]) -> LayerError:
    """One error listing every problem, so an artist fixes the whole folder in one go; a project's
    root passed for its layers folder (`gpucomp validate .`) is asked about first."""
    inner = next((root / n for n in ("layers", "Layers") if (root / n).is_dir()), None)
    hint = f"{root} holds a layers folder: is {inner} the one meant?" if inner else ""
    if len(problems) == 1:
        return LayerError(problems[0] + (f"; {hint}" if hint else ""))
    lines = [f"{terminal_safe(root)}: {len(problems)} problems in the layers folder; fix them all, then run again:"]
    if hint:
        lines[0] = terminal_safe(hint) + f" ({len(problems)} problems reading {terminal_safe(root)} as one:)"
    lines += [f"  {terminal_safe(p)}" for p in problems[:MAX_PROBLEMS_SHOWN]]  # a newline in a name stays in its line
    if len(problems) > MAX_PROBLEMS_SHOWN:
        lines.append(f"  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more")
    return LayerProblems("\n".join(lines))


def load_layers(
    root: str | os.PathLike,
    order: Sequence[str] | None = None,
    display_names: dict[str, str] | None = None,
    delimiter: str = "#",
    workers: int | None = None,
    progress=None,
    empty_name: str = "NONE",
    animated: bool = False,
) -> LayerSet:
    """Read and validate a layers folder. `order` lists layer folder names bottom first;
    without it every sub-folder is used in natural order of its name. Every problem found
    (names, links, damaged files, sizes) is reported together in one LayerError. `animated`: read
    animated traits (folders of frames, animated PNG/GIF/WebP; layers/frames.py), else refuse them."""
    root = Path(root)
    if not root.is_dir():
        raise LayerError(f"{root}: layers folder not found; pass the folder that holds one sub-folder per layer")
    folders = list(order) if order else list_layer_folders(root)
    if not folders:
        raise LayerError(f"{root}: no layer folders inside; expected {root}/<Layer>/<Trait>#<weight>.png")
    display_names = display_names or {}
    problems: list[str] = []
    jobs: list[tuple[Layer, Found]] = []
    layers: list[Layer] = []
    walk = Walk(root, delimiter, problems, empty_name, BLEND_MODES, frames=animated)
    for folder in folders:
        try:
            layer, layer_jobs = _scan_layer(walk, folder, display_names.get(folder))
        except ScanLimit:
            raise
        except LayerError as err:
            problems.append(str(err))
            continue
        layers.append(layer)
        jobs.extend(layer_jobs)
    paths = list(dict.fromkeys([*(p for _, found in jobs if found.parts != () for p in found.files),
                                *(part.path for edges in walk.edge_cases.values() for e in edges for part in e.parts)]))

    # Each decode holds ~3 canvases of memory (file, Pillow image, array) until it is cropped: 16
    # at once is ~0.8 GB at 2048x2048, ~3 GB at 4096x4096.
    workers = workers or min(16, os.cpu_count() or 1)
    decoded: dict[Path, Trait] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow's decoders release the GIL
        results = pool.map(lambda p: decode_trait(p, animated), paths)
        for done, (p, result) in enumerate(zip(paths, results, strict=True), 1):
            if progress:
                progress(done, len(paths))
            if isinstance(result, LayerError):
                problems.append(str(result))
                continue
            decoded[p] = _decoded_image(p, result)
    for layer, found in jobs:
        if all(p in decoded for p in (found.files if found.parts != () else ())):
            layer.traits.append(replace(_build_trait(found, decoded), dna=found.dna))
    unloaded = _unloaded(root, folders) if walk.edge_cases else set()
    problems += _attach_edge_cases(layers, walk.edge_cases, decoded, unloaded)
    size, size_problems = _size_problems(layers)
    problems += size_problems
    if problems:
        raise _combined_error(root, problems)
    if size is None:
        raise LayerError(f"{root}: every trait is empty ({empty_name}); add at least one trait image")
    h, w = size
    _warn_others(root, walk.others)
    return LayerSet(root=root, layers=layers, width=w, height=h)
