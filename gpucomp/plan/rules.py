"""Trait rules and exact counts: validation, contradiction checks, exact counting.

Everything is in index space: a trait is `(layer, trait)`, both 0-based. Callers map names to
indices and may pass `names=(layer_names, trait_names)` (trait_names[layer][trait]) so messages
read `"Hat/Gold Crown"` instead of `layer 2 trait 5`.

- `Rule("never", a, b)`: no item has both a and b.
- `Rule("always", a, b)`: every item with a also has b (directional: b does not force a).
- exact counts `{(layer, trait): count}`: that trait is in exactly `count` items. An exact count
  overrides the weight both ways: a weight-0 trait with a positive exact count can be picked,
  and a trait with exact count 0 is never picked whatever its weight.

A trait "can be picked" when its weight is > 0 (or its exact count is > 0). Rules link layers into
connected components; the combinations a component allows are enumerated as one boolean array
(at most `COUNT_LIMIT` cells), layers outside every rule multiply in freely.
"""
from __future__ import annotations

import math
import operator
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from gpucomp.errors import PlanError

COUNT_LIMIT = 20_000_000  # cells of one component we are willing to enumerate (20 MB of booleans)
KINDS = ("never", "always")

Trait = tuple[int, int]


@dataclass(frozen=True)
class Rule:
    """`kind` is "never" (a and b never together) or "always" (a always comes with b)."""

    kind: str
    a: tuple[int, int]
    b: tuple[int, int]

    def __post_init__(self):
        if self.kind not in KINDS:
            raise PlanError(f"a rule's kind must be 'never' or 'always', got {self.kind!r}")
        for field in ("a", "b"):
            value = getattr(self, field)
            try:
                layer, trait = value
                pair = (operator.index(layer), operator.index(trait))
            except (TypeError, ValueError):
                raise PlanError(f"a rule's {field} must be a (layer, trait) pair of integers, got {value!r}") from None
            object.__setattr__(self, field, pair)


def as_rule(rule) -> Rule:
    """A Rule, or a (kind, a, b) tuple made into one."""
    if isinstance(rule, Rule):
        return rule
    try:
        kind, a, b = rule
    except (TypeError, ValueError):
        raise PlanError(f"a rule must be Rule(kind, a, b) or a (kind, a, b) tuple, got {rule!r}") from None
    return Rule(kind, a, b)


class Names:
    """Formats layers and traits for messages, by name when names were given."""

    def __init__(self, names=None):
        self.layers, self.traits = names if names is not None else (None, None)

    def layer(self, li: int) -> str:
        try:
            return f'layer "{self.layers[li]}"'
        except (TypeError, IndexError):
            return f"layer {li}"

    def trait(self, x: Trait) -> str:
        li, t = x
        try:
            return f'"{self.layers[li]}/{self.traits[li][t]}"'
        except (TypeError, IndexError):
            return f"layer {li} trait {t}"

    def rule(self, r: Rule) -> str:
        return f"{self.trait(r.a)} {r.kind} with {self.trait(r.b)}"

    def chain(self, parent: dict, end: Trait) -> str:
        path = [end]
        while parent[path[-1]] is not None:
            path.append(parent[path[-1]])
        return " -> ".join(self.trait(x) for x in reversed(path))


# --- analysis -------------------------------------------------------------------------------------


@dataclass
class Component:
    """Layers linked by rules. Axis i of `mask` runs over `keep[i]` (the pickable traits of
    `layers[i]`); `mask` is True for the combinations every rule allows, None when the grid is
    larger than COUNT_LIMIT."""

    layers: tuple[int, ...]
    keep: list[np.ndarray]
    mask: np.ndarray | None
    grid: int
    rules: list[Rule]


@dataclass
class Analysis:
    sizes: list[int]
    weights: list[np.ndarray]
    rules: tuple[Rule, ...]
    exact: dict[Trait, int]
    pickable: list[np.ndarray]  # per layer bool: weight > 0 or exact > 0, and exact != 0
    avail: list[np.ndarray]  # pickable, less traits that a single rule excludes on its own
    comps: list[Component]
    free: list[int]  # layers in no component

    def too_big(self, comp: Component, names=None) -> PlanError:
        N = Names(names)
        dims = " x ".join(str(len(k)) for k in comp.keep)
        return PlanError(
            f"the rules link {', '.join(N.layer(li) for li in comp.layers)}, whose {dims} = {comp.grid:,} "
            f"combinations are too many to count (limit {COUNT_LIMIT:,}); use fewer rules across these layers"
        )

    def count(self, restrict: Mapping[int, Sequence[int]] | None = None, names=None) -> int:
        """Allowed combinations, optionally with some layers limited to the given traits."""
        restrict = restrict or {}
        total = 1
        for li in self.free:
            traits = np.flatnonzero(self.avail[li])
            if li in restrict:
                traits = np.intersect1d(traits, np.asarray(restrict[li], np.int64))
            total *= len(traits)
        for comp in self.comps:
            if comp.mask is None:
                raise self.too_big(comp, names)
            sub = comp.mask
            for i, li in enumerate(comp.layers):
                if li in restrict:
                    sub = sub.take(np.flatnonzero(np.isin(comp.keep[i], np.asarray(restrict[li], np.int64))), axis=i)
            total *= int(np.count_nonzero(sub))
        return total


def _check_index(x: Trait, sizes: list[int], what: str) -> None:
    li, t = x
    if not 0 <= li < len(sizes):
        raise PlanError(f"{what} refers to layer {li}, but there are only {len(sizes)} layers (0-{len(sizes) - 1})")
    if not 0 <= t < sizes[li]:
        raise PlanError(f"{what} refers to trait {t} of layer {li}, which has only {sizes[li]} traits")


def normalise_exact(exact, sizes: list[int]) -> dict[Trait, int]:
    out: dict[Trait, int] = {}
    for key, count in dict(exact or {}).items():
        try:
            li, t = key
            key = (operator.index(li), operator.index(t))
        except (TypeError, ValueError):
            raise PlanError(f"exact counts are keyed by (layer, trait) pairs of integers, got {key!r}") from None
        _check_index(key, sizes, f"the exact count for {key}")
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise PlanError(f"the exact count for layer {key[0]} trait {key[1]} must be a whole number >= 0, got {count!r}")
        out[key] = int(count)
    return out


def analyse(weights: Sequence, rules: Iterable = (), exact=None) -> Analysis:
    """Validate indices, drop rules that cannot matter, group the rest into components and
    enumerate each component's allowed combinations (when it is small enough)."""
    weights = [np.asarray(w, np.float64) for w in weights]
    sizes = [len(w) for w in weights]
    rules = tuple(as_rule(r) for r in rules)
    for i, r in enumerate(rules):
        for x in (r.a, r.b):
            _check_index(x, sizes, f"rule {i + 1} ({r.kind})")
    exact = normalise_exact(exact, sizes)
    pickable = [w > 0 for w in weights]
    for (li, t), c in exact.items():
        pickable[li][t] = c > 0
    avail = [p.copy() for p in pickable]

    def ok(x: Trait) -> bool:
        return bool(avail[x[0]][x[1]])

    # A trait a rule rules out on its own (never with itself, always with another trait of its own
    # layer, always with an unpickable trait) is removed; repeat, since that can strand others.
    changed = True
    while changed:
        changed = False
        for r in rules:
            if not ok(r.a):
                continue
            same = r.a[0] == r.b[0]
            if (r.kind == "never" and r.a == r.b) or (r.kind == "always" and (same and r.a != r.b or not ok(r.b))):
                avail[r.a[0]][r.a[1]] = False
                changed = True
    live = [r for r in rules if r.a[0] != r.b[0] and ok(r.a) and ok(r.b)]

    parent = list(range(len(sizes)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for r in live:
        parent[find(r.a[0])] = find(r.b[0])
    groups: dict[int, list[int]] = {}
    for r in live:
        for li in (r.a[0], r.b[0]):
            members = groups.setdefault(find(li), [])
            if li not in members:
                members.append(li)
    comps = []
    for root, members in sorted(groups.items(), key=lambda kv: min(kv[1])):
        layers = tuple(sorted(members))
        crules = [r for r in live if find(r.a[0]) == root]
        keep = [np.flatnonzero(avail[li]) for li in layers]
        shape = tuple(len(k) for k in keep)
        grid = math.prod(shape)
        mask = None
        if grid <= COUNT_LIMIT:
            mask = np.ones(shape, bool)
            axis = {li: i for i, li in enumerate(layers)}
            pos = {}
            for li, k in zip(layers, keep, strict=True):
                pos[li] = np.full(sizes[li], -1, np.int64)
                pos[li][k] = np.arange(len(k))
            for r in crules:
                idx: list = [slice(None)] * len(layers)
                idx[axis[r.a[0]]] = int(pos[r.a[0]][r.a[1]])
                if r.kind == "never":
                    idx[axis[r.b[0]]] = int(pos[r.b[0]][r.b[1]])
                else:
                    others = np.flatnonzero(np.arange(shape[axis[r.b[0]]]) != pos[r.b[0]][r.b[1]])
                    if not len(others):
                        continue
                    idx[axis[r.b[0]]] = others
                mask[tuple(idx)] = False
        comps.append(Component(layers, keep, mask, grid, crules))
    linked = {li for c in comps for li in c.layers}
    free = [li for li in range(len(sizes)) if li not in linked]
    return Analysis(sizes, weights, rules, exact, pickable, avail, comps, free)


def closures(rules: Sequence[Rule], pickable: list[np.ndarray]) -> dict[Trait, dict[Trait, Trait | None]]:
    """For each pickable trait that starts an "always" rule: every trait it forces, as a BFS
    parent map (the trait itself maps to None) so chains can be printed."""
    edges: dict[Trait, list[Trait]] = {}
    for r in rules:
        if r.kind == "always" and r.a != r.b and r.a[0] != r.b[0]:
            edges.setdefault(r.a, []).append(r.b)
    out = {}
    for a in sorted(edges):
        if not pickable[a[0]][a[1]]:
            continue
        parent: dict[Trait, Trait | None] = {a: None}
        queue = deque([a])
        while queue:
            u = queue.popleft()
            for v in edges.get(u, ()):
                if v not in parent:
                    parent[v] = u
                    queue.append(v)
        out[a] = parent
    return out


def _unpickable_reason(exact: dict, x: Trait) -> str:
    return "has exact count 0" if exact.get(x) == 0 else "has weight 0"


def check_contradictions(an: Analysis, names=None) -> None:
    N = Names(names)
    rules = an.rules
    for r in rules:
        if r.kind == "never" and r.a == r.b:
            raise PlanError(f"rule {N.rule(r)}: a trait never with itself could never be picked")
        if r.kind == "always" and r.a[0] == r.b[0] and r.a != r.b:
            raise PlanError(
                f"rule {N.rule(r)}: both traits are in {N.layer(r.a[0])} and an item has one trait per layer, "
                f"so {N.trait(r.a)} could never be picked"
            )
    never = {frozenset((r.a, r.b)): r for r in rules if r.kind == "never"}
    for r in rules:
        if r.kind == "always" and frozenset((r.a, r.b)) in never:
            raise PlanError(f"rules contradict each other: {N.rule(never[frozenset((r.a, r.b))])}, but also {N.rule(r)}")
    for li in range(len(an.sizes)):
        if not an.pickable[li].any():
            why = "weight 0 or exact count 0" if any(k[0] == li for k in an.exact) else "weight 0"
            raise PlanError(f"{N.layer(li)} has no trait that can be picked: every trait has {why}")
    for a, parent in closures(rules, an.pickable).items():
        by_layer: dict[int, Trait] = {a[0]: a}
        for f in parent:
            if f == a:
                continue
            if not an.pickable[f[0]][f[1]]:
                raise PlanError(
                    f"{N.trait(a)} can never be picked: {N.chain(parent, f)} forces {N.trait(f)}, "
                    f"which {_unpickable_reason(an.exact, f)}"
                )
            g = by_layer.setdefault(f[0], f)
            if g != f:
                first = N.chain(parent, g) if g != a else f"{N.trait(a)} itself"
                raise PlanError(
                    f"{N.trait(a)} can never be picked: it forces two traits of {N.layer(f[0])} "
                    f"({first}; {N.chain(parent, f)})"
                )
        for pair, r in never.items():
            x, y = tuple(pair)
            if x in parent and y in parent:
                shown = "; ".join(N.chain(parent, z) for z in (x, y) if z != a)
                raise PlanError(f"{N.trait(a)} can never be picked: it forces {shown}, but {N.rule(r)}")
    for comp in an.comps:
        if comp.mask is None:
            continue
        if not comp.mask.any():
            shown = "; ".join(N.rule(r) for r in comp.rules[:4])
            raise PlanError(
                f"the rules leave no pickable trait in {N.layer(comp.layers[0])}: no combination of "
                f"{', '.join(N.layer(li) for li in comp.layers)} satisfies them ({shown})"
            )
        for i, li in enumerate(comp.layers):
            others = tuple(j for j in range(len(comp.layers)) if j != i)
            ok = comp.mask.any(axis=others) if others else comp.mask
            for t in comp.keep[i][~ok]:
                x = (li, int(t))
                on = [r for r in comp.rules if x in (r.a, r.b)] or comp.rules
                raise PlanError(
                    f"{N.trait(x)} can never be picked: every combination with it breaks a rule "
                    f"(rules on it: {'; '.join(N.rule(r) for r in on[:4])})"
                )


def check_rules(rules: Iterable, sizes: Sequence[int], weights: Sequence | None = None, names=None,
                exact=None) -> None:
    """Raise PlanError for rules that contradict themselves or each other, or that make a trait
    that could otherwise be picked (or a whole layer) impossible. A component too large to
    enumerate skips the last, exhaustive check (counting it then fails in `count_allowed`)."""
    sizes = [operator.index(s) for s in sizes]
    if weights is None:
        weights = [np.ones(s) for s in sizes]
    if len(weights) != len(sizes) or any(len(w) != s for w, s in zip(weights, sizes, strict=True)):
        raise PlanError(f"weights ({[len(w) for w in weights]} traits) do not match the layer sizes {sizes}")
    check_contradictions(analyse(weights, rules, exact), names)


def count_allowed(weights: Sequence, rules: Iterable = (), exact=None, names=None) -> int:
    """Exact number of distinct combinations of pickable traits that satisfy every rule.
    With `exact`, a positive count makes a weight-0 trait pickable and a 0 count removes it."""
    return analyse(weights, rules, exact).count(names=names)


def check_exact(an: Analysis, n: int, names=None) -> None:
    """Up-front feasibility of exact counts for `n` items under the rules (`an` already passed the
    rule checks and n <= the allowed count). Necessary conditions, each with its own message;
    the arrangement in plan/sampler.py can still fail on subtler conflicts and then says so."""
    N = Names(names)
    want = {x: c for x, c in an.exact.items() if c > 0}
    by_layer: dict[int, list[Trait]] = {}
    for x in sorted(want):
        by_layer.setdefault(x[0], []).append(x)
    rest: dict[int, int] = {}
    for li, xs in by_layer.items():
        s = sum(want[x] for x in xs)
        listed = ", ".join(f"{N.trait(x)}: {want[x]}" for x in xs)
        if s > n:
            raise PlanError(f"the exact counts in {N.layer(li)} add up to {s} ({listed}), more than the {n} items")
        others = [t for t in np.flatnonzero(an.pickable[li]) if (li, int(t)) not in want]
        if not others and s != n:
            raise PlanError(
                f"every trait of {N.layer(li)} that can be picked has an exact count, and they add up to {s} "
                f"({listed}), not to the {n} items; make them add up to {n} or leave one trait without an exact count"
            )
        rest[li] = n - s
    forced = closures(an.rules, an.pickable)
    for a in want:
        parent = forced.get(a, {a: None})
        for f in parent:
            if f == a:
                continue
            if f in want and want[a] > want[f]:
                raise PlanError(
                    f"{N.chain(parent, f)}: every item with {N.trait(a)} has {N.trait(f)}, but {N.trait(a)} "
                    f"is asked for {want[a]} items and {N.trait(f)} for only {want[f]}"
                )
            if f not in want and f[0] in rest and want[a] > rest[f[0]]:
                raise PlanError(
                    f"{N.chain(parent, f)}: every item with {N.trait(a)} has {N.trait(f)}, but {N.trait(a)} is "
                    f"asked for {want[a]} items and the exact counts in {N.layer(f[0])} leave only {rest[f[0]]} "
                    f"items for its other traits"
                )
    never = [r for r in an.rules if r.kind == "never" and r.a[0] != r.b[0]]
    xs = sorted(want)
    for i, a in enumerate(xs):
        for b in xs[i + 1:]:
            if a[0] == b[0] or want[a] + want[b] <= n:
                continue
            fa, fb = forced.get(a, {a: None}), forced.get(b, {b: None})
            both = set(fa) | set(fb)
            layers: dict[int, Trait] = {}
            clash = next((r for r in never if r.a in both and r.b in both), None)
            if clash is None:
                for x in both:
                    if layers.setdefault(x[0], x) != x:
                        clash = x
                        break
            if clash is not None:
                why = N.rule(clash) if isinstance(clash, Rule) else f"they force different traits of {N.layer(clash[0])}"
                raise PlanError(
                    f"{N.trait(a)} and {N.trait(b)} can never be in the same item ({why}), but they are asked for "
                    f"{want[a]} + {want[b]} = {want[a] + want[b]} items, more than the {n} items"
                )
    there = "the rules allow" if an.rules else "there are"
    for a in xs:
        allowed = an.count({a[0]: [a[1]]}, names)
        if allowed < want[a]:
            raise PlanError(
                f"{N.trait(a)} is asked for {want[a]} items, but {there} only {allowed} distinct "
                f"combinations with it"
            )
    for li, r in rest.items():
        if r == 0:
            continue
        others = [int(t) for t in np.flatnonzero(an.pickable[li]) if (li, int(t)) not in want]
        allowed = an.count({li: others}, names)
        if allowed < r:
            raise PlanError(
                f"the exact counts in {N.layer(li)} leave {r} items for its other traits, but {there} "
                f"only {allowed} distinct combinations with one of them"
            )
