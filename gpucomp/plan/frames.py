"""Animated collections as plans: the frame-count rule and frame f of an item as an ordinary combination.

Frame-count rule: the collection's animation has L frames, the least common multiple of the frame
counts of every animated trait it loads (static traits count 1). Each trait loops: frame f of a trait
of n frames is its frame f mod n; a static trait is drawn in every frame. L above `max_frames`
(default 1000) is refused, naming the traits and their counts.

Frames are composited with no compositing code of their own: `FrameView` expands a stack's render
layers so that each frame of an animated trait is a trait of its own, and maps an item's render
combination to L combinations, one per frame. The CPU kernel and the CUDA batch kernel composite
those like any other items, so the pixel contract and CPU/GPU byte identity hold by construction.
(Decoding the frames of a trait: layers/frames.py.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gpucomp.encode.animated import check_available
from gpucomp.errors import ConfigError, LayerError
from gpucomp.layers.layerset import Layer, LayerSet, images_of


@dataclass(frozen=True)
class FrameCount:
    frames: int  # L: the least common multiple of the animated traits' frame counts (1: none)
    animated: tuple[tuple[str, int], ...]  # ("layer/trait", frame count) of every animated trait


def animated_traits(layerset) -> list[tuple[str, int]]:
    """("layer folder/trait", frames) for each animated image a loaded layer set draws."""
    out = {}
    for layer in layerset.layers:
        for t in layer.traits:
            for im in images_of(t):
                if im.frames is not None:
                    out.setdefault(f"{layer.folder}/{t.name}", len(im.frames))
    return list(out.items())


def frame_count(layerset, max_frames: int, where: str = "layers") -> FrameCount:
    """The collection's frame count (the module doc's rule), or a LayerError above `max_frames`."""
    animated = animated_traits(layerset)
    frames = 1
    for _, n in animated:
        frames = math.lcm(frames, n)
        if frames > max_frames:
            shown = ", ".join(f"{name} ({n})" for name, n in animated[:12]) + (" ..." if len(animated) > 12 else "")
            raise LayerError(
                f"{where}: the animated traits' frame counts need an animation of "
                f"{'at least ' if len(animated) > 1 else ''}"
                f"{frames} frames (the least common multiple of {shown}), more than max_frames = {max_frames}; "
                f"give the traits frame counts that divide each other (e.g. 8 and 24), or raise "
                f"[output.animated] max_frames")
    return FrameCount(frames, tuple(animated))


@dataclass(eq=False)
class FrameView:
    """A stack's render layers with each frame of each animated trait as a trait of its own.

    `tables[r]` is (L, T_r): the trait of expanded layer r drawn in frame f for render trait t. A static
    trait keeps its index in every frame; an animated one is itself (its frame 0) at f mod n == 0 and one
    of the traits appended after the layer's own traits otherwise."""

    layerset: object  # LayerSet: the expanded render layers
    tables: list[np.ndarray]
    frames: int

    def combos(self, render_combos: np.ndarray) -> np.ndarray:
        """(n, R) render combinations -> (n * L, R) int32, item-major: row i * L + f is frame f of item i."""
        rc = np.asarray(render_combos)
        n = rc.shape[0]
        out = np.empty((n, self.frames, rc.shape[1]), np.int32)
        for r, table in enumerate(self.tables):
            out[:, :, r] = table[:, rc[:, r]].T
        return out.reshape(n * self.frames, rc.shape[1])


def frame_view(layerset, frames: int) -> FrameView:
    """The expanded layer set (see FrameView) of a stack's render layers, for an animation of `frames`."""
    layers, tables = [], []
    for layer in layerset.layers:
        traits = list(layer.traits)
        table = np.empty((frames, len(traits)), np.int32)
        for ti, t in enumerate(layer.traits):
            table[:, ti] = ti
            if t.frames is not None:
                n = len(t.frames)
                base = len(traits) - 1
                traits.extend(t.frames[1:])
                f = np.arange(frames) % n
                table[f > 0, ti] = base + f[f > 0]
        layers.append(Layer(layer.folder, layer.name, traits, layer.blend, layer.opacity))
        tables.append(table)
    return FrameView(LayerSet(layerset.root, layers, layerset.width, layerset.height), tables, frames)


def plan_frames(cfg, layerset, where: str = "config") -> int:
    """The collection's frame count for a config with animated output (1 without), after checking
    that its formats can be written here, that max_frames holds it and that still_frame is one of them."""
    anim = cfg.animation
    if anim is None:
        return 1
    check_available(anim, layerset.width, layerset.height, where)
    frames = frame_count(layerset, anim.settings["max_frames"], str(layerset.root)).frames
    still = anim.settings["still_frame"]
    if still >= frames:
        raise ConfigError(f"{where}: output.animated.still_frame = {still}, but the animation has {frames} frames "
                          f"(0 to {frames - 1}); choose one of those")
    return frames
