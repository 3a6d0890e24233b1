"""What a walk of a layers folder finds, before anything is decoded: traits (Found) and the files
they draw (Part), Art Engine 2 edge cases, and the leaves a walk picks on its way, with the two
engines' rules for them: nftchef's drawing order within a layer and Art Engine 2's options (files
sharing a name, offsets and z added to their folder's)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpucomp.errors import LayerError
from gpucomp.layers.naming import DEFAULT_WEIGHT, EntryName


@dataclass(frozen=True)
class Part:
    """One file a trait draws, with the options its name carries: `z` (None: no `z<N>,` on it or
    on a folder above it), `blend` and `opacity` (None: the trait's or the layer's)."""

    path: Path
    z: int | None = None
    blend: str | None = None
    opacity: float | None = None


@dataclass(frozen=True)
class Found:
    """A trait before decoding: its file (its folder, for a trait made of parts), its name in the
    metadata and its weight. `parts` is None for a plain trait (its file, drawn at its layer's
    place); otherwise the files it draws together, bottom first within its layer, () for an empty
    trait (nftchef's `NONE`)."""

    path: Path
    name: str
    weight: float
    parts: tuple[Part, ...] | None = None
    frames: tuple[Path, ...] | None = None  # a folder of frames (layers/frames.py): its frame files, in order
    dna: tuple[str, ...] = ()  # nftchef's DNA entries (`0.2.1:z1,eye.png`: layer as 0, pick ids, z flag, file)

    @property
    def files(self) -> tuple[Path, ...]:
        if self.frames is not None:
            return self.frames
        return (self.path,) if self.parts is None else tuple(p.path for p in self.parts)


@dataclass(frozen=True)
class EdgeFound:
    """An Art Engine 2 edge case before decoding: option `option` of this layer draws `parts` instead
    of its own files when layer `layer` (a display or folder name) has the value `value`."""

    option: str
    layer: str
    value: str
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Where:
    """A picked folder during the walk: nftchef's address of it, its inherited z, its label
    (`Long` or `Long/Inner`) and the folders above it."""

    address: str
    z: int | None
    label: str
    chain: tuple[Path, ...]


@dataclass(frozen=True)
class Drawn:
    address: str  # nftchef's DNA entry for the file: `<address>:<z flag><file name>`
    part: Part


@dataclass(frozen=True)
class Leaf:
    path: Path
    name: str
    weight: float
    sub: str  # label of the folders above (names a trait whose name is used twice)
    seq: tuple[Drawn, ...] | None  # None: a plain trait
    empty: bool
    engine2: bool = False  # a top-level file named the Art Engine 2 way (`__w`, `__z`, `__x`, `__y`)


def drawn_file(p: Path, e: EntryName, address: str, at: "Where | None") -> Drawn:
    z = e.z if e.z is not None else (at.z if at else None)
    flag = f"z{z}," if z is not None else ""
    return Drawn(f"{address}:{flag}{p.name}", Part(p, z, e.blend, e.opacity))


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")  # JavaScript compares strings by UTF-16 code units


def nftchef_order(seq: tuple[Drawn, ...]) -> tuple[Part, ...]:
    """The order nftchef draws one layer's files in (its `sortLayers`): shorter addresses first
    (stable over the walk order), then negative z by z, z = 0 in string order of the DNA entries
    (so `1.10` before `1.2`), positive z by z."""
    by_depth = sorted(seq, key=lambda d: len(d.address.split(":")[0]))
    z = [(d, d.part.z or 0) for d in by_depth]
    front = sorted((x for x in z if x[1] < 0), key=lambda x: x[1])
    normal = sorted((x for x in z if x[1] == 0), key=lambda x: _utf16(x[0].address))
    end = sorted((x for x in z if x[1] > 0), key=lambda x: x[1])
    return tuple(d.part for d, _ in (*front, *normal, *end))


def merge_engine2(leaves: list[Leaf], ids: dict[str, int], z: int | None, engine2_folder: bool) -> list[Leaf]:
    """Art Engine 2 at a layer's top level, where a file or the folder is named its way: files sharing
    the name before their first `__` (`Backpack.png`, `Backpack__z-35__w10.png`) are one option
    drawing them all, weighted by the one `__w` given (_group_weight); a file's `__z` adds to its
    folder's (the engine's z = folder z + file z); a file without one takes the folder's."""
    engine2 = engine2_folder or any(leaf.engine2 for leaf in leaves if not leaf.sub)
    groups: dict[str, list[Leaf]] = {}
    for leaf in leaves if engine2 else ():
        if not leaf.sub and not leaf.empty:
            groups.setdefault(leaf.name, []).append(leaf)
    out = []
    for leaf in leaves:
        group = groups.get(leaf.name) if not leaf.sub and not leaf.empty else None
        if group and len(group) > 1:
            if leaf is not group[0]:
                continue
            seq = tuple(d for g in group for d in (g.seq or (plain_drawn(g, ids),)))
            leaf = Leaf(leaf.path, leaf.name, _group_weight(group), "", seq, False, True)
        if z is not None and not leaf.empty:
            seq = leaf.seq or (plain_drawn(leaf, ids),)
            seq = tuple(Drawn(d.address, Part(d.part.path, z if d.part.z is None else z + d.part.z if engine2
                                               else d.part.z, d.part.blend, d.part.opacity)) for d in seq)
            leaf = Leaf(leaf.path, leaf.name, leaf.weight, leaf.sub, seq, False, leaf.engine2)
        out.append(leaf)
    return out


def plain_drawn(leaf: Leaf, ids: dict[str, int]) -> Drawn:
    """A plain file trait as the one file it draws (nftchef's entry `0.<id>:<file>`)."""
    return Drawn(f"0.{ids.get(leaf.path.name, 0)}:{leaf.path.name}", Part(leaf.path))


def _group_weight(group: list[Leaf]) -> float:
    """An Art Engine 2 option's weight: the one `__w` its files give, else 1."""
    weighted = [g for g in group if "__w" in g.path.stem]
    if len(given := {g.weight for g in weighted}) > 1:
        raise LayerError(f"{group[0].path.parent}: option {group[0].name!r} is given different weights by its files "
                         f"({', '.join(g.path.name for g in weighted)}); Art Engine 2 refuses that too: keep one __w")
    return given.pop() if given else DEFAULT_WEIGHT
