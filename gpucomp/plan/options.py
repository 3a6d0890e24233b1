"""The options a collection's plan is made from: layers, trait options, stacks, rules and links, as
frozen dataclasses. config.py reads them from TOML; plan/ and outdir/ use them."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class TraitOption:
    """Options of one trait (`traits = { "Gold Crown" = { z = 1, blend = "screen", opacity = 0.5 } }`):
    None keeps what the file name or the layer says."""

    z: int | None = None  # stacking position: drawn after every part of a lower z, in all layers
    blend: str | None = None
    opacity: float | None = None
    value: str | None = None  # the metadata value instead of the trait's name (nftchef traitValueOverrides)

    @property
    def draws(self) -> bool:
        """Whether it changes how the trait is drawn (a `value` changes only its metadata)."""
        return (self.z, self.blend, self.opacity) != (None, None, None)

    def to_dict(self) -> dict:
        return {k: v for k, v in (("z", self.z), ("blend", self.blend), ("opacity", self.opacity),
                                  ("value", self.value)) if v is not None}


@dataclass(frozen=True)
class LayerOption:
    folder: str  # sub-folder of the layers folder
    name: str | None = None  # display name in metadata (default: folder without its order prefix)
    blend: str = "normal"  # W3C compositing blend mode
    opacity: float = 1.0
    dna: bool = True  # False: left out of uniqueness and the DNA (HashLips bypassDNA); drawn per item
    metadata: bool = True  # False: left out of the attributes
    none: str | None = None  # a trait name meaning "nothing here": left out of the attributes
    exact: tuple[tuple[str, int], ...] = ()  # (trait name, exact number of items)
    traits: tuple[tuple[str, TraitOption], ...] = ()  # per-trait z, blend, opacity, metadata value

    @cached_property
    def values(self) -> dict[str, str]:
        """Trait name -> the metadata value its `value` option gives (only those that have one)."""
        return {name: to.value for name, to in self.traits if to.value is not None}

    def value_of(self, trait: str) -> str:
        """What the metadata says for `trait`: its `value` option, else its name (per item: one lookup)."""
        return self.values.get(trait, trait)


@dataclass(frozen=True)
class Stack:
    """One layer configuration (HashLips layerConfigurations): `size` items from these layers."""

    size: int
    layers: tuple[LayerOption, ...] = ()


@dataclass(frozen=True)
class RuleOption:
    kind: str  # "never" (a and b never together) | "always" (a only together with b)
    a: tuple[str, str]  # (layer folder or display name, trait name)
    b: tuple[str, str]

    @property
    def text(self) -> str:
        return f"{self.a[0]}/{self.a[1]} {self.kind} with {self.b[0]}/{self.b[1]}"


@dataclass(frozen=True)
class LinkOption:
    """Layers whose traits are chosen together by name (`[[links]] layers = ["Body", "Arms"]`)."""

    layers: tuple[str, ...]  # layer folders or display names; the first one's weights decide

    @property
    def text(self) -> str:
        return " + ".join(self.layers)
