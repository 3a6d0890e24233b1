"""OpenRarity's information-content score and rank (the ranking OpenSea and other marketplaces show),
computed from the attributes as an item's metadata states them.

Definition (OpenRarity v0.7.5, `open_rarity/scoring` and `rarity_ranker.py`; see
/work/shared/notes/openrarity.md), reimplemented here on NumPy arrays so a million items take
seconds, not the per-token Python of the reference:

- Trait names and string values are lower-cased and stripped ("Red " and "red" are one value).
  A later attribute of the same name replaces an earlier one, as OpenRarity's dict does.
- Every item gets the string meta-trait `meta_trait:trait_count`: how many traits it has whose
  value is not "none" or "" (numeric traits count too). It is scored like any other trait.
- Only string traits are scored. Numeric ones (a display_type makes them numbers) only count in
  trait_count.
- An item without trait t takes the pseudo-value "null", whose count is the number of items
  without t.
- information content IC = sum over every trait name (sorted) of log2(N / count of the item's
  value); entropy H = -sum p log2 p over every (trait, value) pair and null entry, p = count / N;
  score = IC / H (IC / 1 when H is 0: one item, or all items alike, score 0).
- Rank: sort by (number of the item's traits no other item has, score), both descending, ties in
  item order; rank = position, except that a score within 1e-9 (relative) of the one before it
  takes that one's rank (1, 2, 2, 4).

The float operations follow the reference's order, so scores match its published ones bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

META = "meta_trait:trait_count"
NO_VALUES = ("none", "")  # values trait_count does not count
REL_TOL = 1e-9  # math.isclose's default, which the reference uses


@dataclass(frozen=True)
class Column:
    """One attribute as the items' metadata states it."""

    name: str  # trait_type
    values: Sequence[str]  # the value of each code
    codes: np.ndarray  # (N,) int: index into values; -1 = the item does not have this attribute
    numeric: bool = False  # written as a number (display_type): counted in trait_count, not scored


@dataclass(frozen=True)
class Result:
    scores: np.ndarray  # (N,) float64
    ranks: np.ndarray  # (N,) int64, 1 = rarest
    unique: np.ndarray  # (N,) int64: how many of the item's traits (meta-trait included) no other item has
    entropy: float  # H of the collection (before the divide-by-1 for H = 0)


def _merge(columns: Sequence[Column], n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(string traits, numeric traits): normalized name -> (N,) codes into the normalized values
    (-1 absent). String codes index a per-name value list; numeric codes are only tested for >= 0."""
    strings: dict[str, tuple[list[str], np.ndarray]] = {}
    numbers: dict[str, np.ndarray] = {}
    for col in columns:
        codes = np.asarray(col.codes, np.int64).reshape(-1)
        if codes.shape[0] != n:
            raise ValueError(f"column {col.name!r}: {codes.shape[0]} codes for {n} items")
        name = col.name.lower().strip()
        if name == META:
            continue  # the reference overwrites an existing meta-trait
        if col.numeric:
            old = numbers.get(name, np.full(n, -1, np.int64))
            numbers[name] = np.where(codes >= 0, codes, old)
            continue
        values, old = strings.get(name, ([], np.full(n, -1, np.int64)))
        index = {v: k for k, v in enumerate(values)}
        lut = np.array([index.setdefault(str(v).lower().strip(), len(index)) for v in col.values] or [0], np.int64)
        values = list(index)
        strings[name] = (values, np.where(codes >= 0, lut[np.maximum(codes, 0)], old))
    counted = {name: codes for name, codes in numbers.items()}
    out = {}
    for name, (values, codes) in strings.items():
        out[name] = codes
        skip = np.array([v in NO_VALUES for v in values] + [True], bool)  # [-1] -> absent
        counted[name] = np.where(skip[codes], -1, codes)
    trait_count = sum((c >= 0).astype(np.int64) for c in counted.values()) if counted else np.zeros(n, np.int64)
    _, meta = np.unique(trait_count, return_inverse=True)
    out[META] = meta.reshape(-1).astype(np.int64)
    return out, numbers


def score(columns: Sequence[Column], n: int) -> Result:
    """Scores, ranks and unique-trait counts of n items (in item order) with these attributes."""
    if n == 0:
        empty = np.zeros(0, np.int64)
        return Result(np.zeros(0), empty, empty, 0.0)
    strings, _ = _merge(columns, n)
    names = sorted(strings)
    ratios = np.empty((n, len(names)), np.float64)
    unique = np.zeros(n, np.int64)
    spread: dict[str, list[float]] = {}
    for j, name in enumerate(names):
        codes = strings[name]
        present = codes >= 0
        counts = np.bincount(codes[present])
        missing = n - int(present.sum())
        count = np.where(present, counts[np.maximum(codes, 0)], missing)
        ratios[:, j] = n / count
        unique += present & (count == 1)
        spread[name] = [c / n for c in counts[_first_seen(codes[present])].tolist()] + ([missing / n] if missing else [])
    ic = -np.sum(np.log2(np.reciprocal(ratios)), axis=1)
    # the reference's order (names and values as first met, item by item), for bit-identical sums
    probabilities = [p for name in _name_order(strings) for p in spread[name]]
    entropy = float(-np.dot(probabilities, np.log2(probabilities)))
    scores = ic / (entropy if entropy else 1) + 0.0  # + 0.0: no -0.0 when IC is 0
    return Result(scores, rank(scores, unique), unique, entropy)


def _first_seen(codes: np.ndarray) -> np.ndarray:
    """The distinct codes in the order the items first show them."""
    values, first = np.unique(codes, return_index=True)
    return values[np.argsort(first, kind="stable")]


def _name_order(strings: dict[str, np.ndarray]) -> list[str]:
    """Trait names as first met scanning items in order, each item's attributes in column order
    and its meta-trait last."""
    def key(k_name):
        k, name = k_name
        present = np.flatnonzero(strings[name] >= 0)
        return (int(present[0]) if present.size else 1 << 62, name == META, k)
    return [name for _, name in sorted(enumerate(strings), key=key)]


def rank(scores: np.ndarray, unique: np.ndarray) -> np.ndarray:
    """Rank per item: by (unique, score) descending, ties in item order; a score isclose to the
    one ranked before it shares that one's rank."""
    scores = np.asarray(scores, np.float64)
    n = scores.shape[0]
    order = np.lexsort((np.arange(n), -scores, -np.asarray(unique)))
    s = scores[order]
    same = np.zeros(n, bool)
    same[1:] = np.abs(s[1:] - s[:-1]) <= REL_TOL * np.maximum(np.abs(s[1:]), np.abs(s[:-1]))
    by_position = np.maximum.accumulate(np.where(same, 0, np.arange(1, n + 1)))
    ranks = np.empty(n, np.int64)
    ranks[order] = by_position
    return ranks


def from_dicts(items: Sequence[dict]) -> tuple[list[Column], int]:
    """Columns of items given as {trait_type: value} dicts (str values; int/float are numeric).
    For tests and for collections read back from metadata files."""
    names = list(dict.fromkeys(k for item in items for k in item))
    columns = []
    for name in names:
        numeric = any(isinstance(item.get(name), (int, float)) and not isinstance(item.get(name), bool)
                      for item in items)
        values: dict = {}
        codes = np.array([values.setdefault(item[name], len(values)) if name in item else -1 for item in items],
                         np.int64)
        columns.append(Column(name, [str(v) for v in values], codes, numeric))
    return columns, len(items)


def metadata_columns(segments, order: np.ndarray, display_types: dict) -> list[Column]:
    """The attributes the items' metadata states, as columns in item-number order: one per layer
    of each stack (collection.Segment) that is written to metadata; the layer's 'none' trait is
    left out of the metadata, so it is absent here too. `order[p]` is the plan index of the item
    at position p (number - start); display-typed layers are numeric."""
    n = sum(len(seg.combos) for seg in segments)
    columns = []
    for seg in segments:
        for li, (layer, o) in enumerate(zip(seg.layerset.layers, seg.options, strict=True)):
            if not o.metadata:
                continue
            names = [t.name for t in layer.traits]
            lut = np.array([-1 if name == o.none else k for k, name in enumerate(names)], np.int64)
            codes = np.full(n, -1, np.int64)
            codes[seg.offset:seg.offset + len(seg.combos)] = lut[seg.combos[:, li]]
            columns.append(Column(layer.name, names, codes[order], layer.name in display_types))
    return columns
