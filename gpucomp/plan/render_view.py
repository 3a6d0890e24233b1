"""Render layers: the plain stack the backends draw, for a stack whose traits have parts, z
positions or options of their own.

The plan, uniqueness, DNA and metadata work on user-facing traits, one per layer. A trait may
draw several images (nftchef parts), at other stacking positions (`z<N>,`, a trait's `z` in the
config) and with its own blend and opacity. The backends draw one trait per layer with one blend
per layer. So such a stack is expanded into *render layers*, one per drawing slot

    (z, user layer, k-th image of the trait at that z, blend, opacity)

sorted in that order (blend and opacity only separate slots that no item uses together), each
holding the images that can be drawn there plus an empty trait. A planned combination maps to a
render combination through one lookup table per render layer. nftchef draws a stable sort of all
files by z, ties in layer order, each layer's files in its own order: exactly this slot order.
Stacks without any of this have no view: the backends get the stack itself, unchanged.

Art Engine 2 edge cases (a trait drawing other images when another layer has a given value) are
more drawings of the same trait: their slots join the others, and each render layer carries
overrides `(trait, other layer, other trait) -> render trait` applied after its lookup table. The
planned combination, DNA and metadata stay the same; only the render combination differs. When
several edge cases of one trait apply to one item, the first (natural order of file names) wins.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpucomp.compositing import MODES
from gpucomp.errors import ConfigError
from gpucomp.layers.layerset import EMPTY_SHA256, Layer, LayerSet, Trait


@dataclass(eq=False)
class RenderView:
    """Render layers of one stack and how planned combinations map to them."""

    layerset: LayerSet  # render layers, bottom first
    owner: np.ndarray  # (R,) index of the user layer each render layer draws for
    luts: list[np.ndarray]  # per render layer: render trait index for each trait of its owner
    # per render layer: (k, 4) int64 rows (trait of the owner, other user layer, its trait, render trait),
    # edge cases, applied in row order (the first edge case of a trait is the last row: it wins)
    overrides: list[np.ndarray] | None = None

    def combos(self, user: np.ndarray) -> np.ndarray:
        """(n, L) planned trait indices -> (n, R) int32 render trait indices."""
        user = np.asarray(user)
        out = np.empty((user.shape[0], len(self.luts)), np.int32)
        for r, lut in enumerate(self.luts):
            own = user[:, self.owner[r]]
            out[:, r] = lut[own]
            for ti, other, oti, rti in (self.overrides[r] if self.overrides else ()):
                out[(own == ti) & (user[:, other] == oti), r] = rti
        return out


def _empty(height: int, width: int) -> Trait:
    return Trait("", 0.0, Path(), None, np.zeros((0, 0, 4), np.uint8), EMPTY_SHA256, (height, width), False)


def needs_view(layerset: LayerSet, options) -> bool:
    """True when some trait draws parts or has options of its own (empty traits are plain: transparent)."""
    return any(to.draws for o in options for _, to in o.traits) or any(t.parts or t.edge_cases for layer in
                                                                       layerset.layers for t in layer.traits)


def check_trait_options(layerset: LayerSet, options) -> None:
    """Every trait a layer's `traits` options name must be a trait of that layer."""
    for layer, o in zip(layerset.layers, options, strict=True):
        unknown = {name for name, _ in o.traits} - {t.name for t in layer.traits}
        if unknown:
            raise ConfigError(f"layer {o.folder!r}: traits {', '.join(sorted(map(repr, unknown)))} named in its "
                              f"`traits` options are not traits of this layer")


def _slots(t: Trait, li: int, layer_opts, trait_opts, parts=None) -> list[tuple[tuple, Trait]]:
    """(slot key, image) for every image the trait draws (or `parts` instead: an edge case), in its
    drawing order."""
    if parts is None:
        parts = t.parts
    parts = [(t, None, None, None)] if parts is None else [(p.image, p.z, p.blend, p.opacity) for p in parts]
    to = trait_opts.get(t.name)
    seen: Counter = Counter()
    out = []
    for image, z, blend, opacity in parts:
        z = z if z is not None else (to.z if to and to.z is not None else 0)
        blend = blend or (to.blend if to and to.blend else layer_opts.blend)
        if opacity is None:
            opacity = to.opacity if to and to.opacity is not None else layer_opts.opacity
        out.append(((z, li, seen[z], MODES.index(blend), float(opacity)), image))
        seen[z] += 1
    return out


def _edge_slots(layerset: LayerSet, li: int, t: Trait, o, trait_opts) -> list[tuple[int, int, list]]:
    """(other user layer, its trait, slots) for each edge case of t that this stack can meet, first first.
    One whose layer this stack lacks never applies here."""
    out = []
    for edge in t.edge_cases:
        other = next((k for k, la in enumerate(layerset.layers) if k != li and edge.layer in (la.name, la.folder)),
                     None)
        if other is None:
            continue
        oti = next(k for k, ot in enumerate(layerset.layers[other].traits) if ot.name == edge.value)
        out.append((other, oti, _slots(t, li, o, trait_opts, edge.parts)))
    return out


def _render_layer(layerset: LayerSet, key: tuple, drawn: dict, edges: dict) -> tuple[Layer, np.ndarray, np.ndarray]:
    """One render layer: its images (an empty one where a trait draws nothing here), the lookup
    table from its user layer's traits, and the edge-case overrides (RenderView.overrides)."""
    li = key[1]
    user = layerset.layers[li]
    images: dict[int, int] = {}
    traits: list[Trait] = []

    def index(slots) -> int:  # -1: draws nothing in this slot
        image = next((im for k, im in slots if k == key), None)
        if image is None:
            return -1
        if id(image) not in images:
            images[id(image)] = len(traits)
            traits.append(image)
        return images[id(image)]

    lut = np.array([index(drawn[li, ti]) for ti in range(len(user.traits))], np.int32)
    rows = [(ti, other, oti, index(slots)) for ti in range(len(user.traits))
            for other, oti, slots in reversed(edges.get((li, ti), ()))]
    rows = np.array([r for r in rows if r[3] != lut[r[0]]], np.int64).reshape(-1, 4)
    if (lut < 0).any() or (rows[:, 3] < 0).any():  # some traits draw nothing here
        lut[lut < 0] = len(traits)
        rows[rows[:, 3] < 0, 3] = len(traits)
        traits.append(_empty(layerset.height, layerset.width))
    return Layer(user.folder, user.name, traits, MODES[key[3]], key[4]), lut, rows


def render_view(layerset: LayerSet, options) -> RenderView | None:
    """The render layers of a stack (see the module doc), or None when it needs none."""
    if not needs_view(layerset, options):
        return None
    check_trait_options(layerset, options)
    drawn: dict[tuple[int, int], list[tuple[tuple, Trait]]] = {}
    edges: dict[tuple[int, int], list[tuple[int, int, list]]] = {}
    for li, (layer, o) in enumerate(zip(layerset.layers, options, strict=True)):
        trait_opts = dict(o.traits)
        for ti, t in enumerate(layer.traits):
            drawn[li, ti] = _slots(t, li, o, trait_opts)
            if t.edge_cases:
                edges[li, ti] = _edge_slots(layerset, li, t, o, trait_opts)
    keys = sorted({key for slots in [*drawn.values(), *(s for e in edges.values() for _, _, s in e)]
                   for key, _ in slots})
    layers, owner, luts, overrides = [], [], [], []
    for key in keys:
        layer, lut, rows = _render_layer(layerset, key, drawn, edges)
        layers.append(layer)
        owner.append(key[1])
        luts.append(lut)
        overrides.append(rows)
    view = LayerSet(layerset.root, layers, layerset.width, layerset.height)
    return RenderView(view, np.array(owner, np.int64), luts, overrides if any(len(r) for r in overrides) else None)


def trait_digest(folder: str, trait: Trait, stacks) -> str:
    """A trait's art digest for the manifest: its files' digest, combined with the options the
    config gives it (any stack), so changing a trait's z, blend or opacity re-renders its items."""
    given = [o.traits for _, opts in stacks for o in opts if o.folder == folder and o.traits]
    opts = [to.to_dict() for traits in given for name, to in traits if name == trait.name]
    if not opts:
        return trait.sha256
    text = json.dumps([trait.sha256, opts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
