"""A whole collection's plan: one or more layer stacks ("layer configurations"), each with its
own layers and options, numbered in order or shuffled, plus later extensions.

Each stack is a segment of items. Uniqueness and the DNA cover the stack's `dna` layers only
(HashLips' bypassDNA leaves a layer out); those layers go through `plan.make_plan` with the
stack's rules and exact counts, the others are drawn independently by weight. Items of
different segments never repeat each other either.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpucomp.errors import ConfigError, PlanError
from gpucomp.interop.itemlist import check_unique, list_combos, list_stacks, read_list
from gpucomp.interop.oneofones import generated_numbers, manifest_entry, place, read_one_of_ones
from gpucomp.layers.layerset import Layer, LayerSet
from gpucomp.layers.naming import layer_display_name
from gpucomp.plan.options import LayerOption
from gpucomp.plan.render_view import check_trait_options, render_view
from gpucomp.plan.rules import Rule, count_allowed
from gpucomp.plan.sampler import make_plan


@dataclass(eq=False)
class Segment:
    """Items `offset .. offset + len(combos) - 1` (global indices) drawn from one stack."""

    stack: int  # index into the config's stacks
    layerset: LayerSet  # this stack's layers, bottom first, with their display names
    options: list  # LayerOption per layer
    combos: np.ndarray  # (n, L) int32 trait index per layer
    offset: int = 0

    def names(self, row: int) -> list[str]:
        return [t.name for t in self.traits(row)]

    def traits(self, row: int) -> list:
        return [layer.traits[j] for layer, j in zip(self.layerset.layers, self.combos[row].tolist(), strict=True)]

    @property
    def render_layerset(self) -> LayerSet:
        """The layers the backend draws (render_view.py): the stack itself unless traits draw parts."""
        return self.layerset.render.layerset if self.layerset.render is not None else self.layerset

    def render_combos(self, rows) -> np.ndarray:
        """Trait indices into render_layerset for local rows `rows` (an index array)."""
        combos = self.combos[rows]
        return combos if self.layerset.render is None else self.layerset.render.combos(combos)

    def render_combo(self, row: int) -> np.ndarray:
        return self.combos[row] if self.layerset.render is None else self.render_combos([row])[0]

    def dna_names(self, row: int) -> list[str]:
        return [n for n, o in zip(self.names(row), self.options, strict=True) if o.dna]

    def attributes(self, row: int) -> list[tuple[str, str]]:
        """(trait_type, value) for metadata: hidden layers, 'none' and empty traits left out."""
        return [(layer.name, o.value_of(t.name))
                for layer, o, t in zip(self.layerset.layers, self.options, self.traits(row), strict=True)
                if o.metadata and t.name != o.none and not t.empty]

    def identity(self, row: int) -> tuple:
        return tuple((layer.name, n)
                     for layer, o, n in zip(self.layerset.layers, self.options, self.names(row), strict=True) if o.dna)


ONE_OF_ONE = "1/1"  # the layer (and trait_type) of the one-of-ones' own segment


@dataclass(frozen=True)
class FinishedImage:
    """A one-of-one as the trait of the "1/1" layer: written by copying its file, never composited."""

    name: str
    path: object
    sha256: str
    metadata: dict | None
    weight: float = 1.0
    empty: bool = False


@dataclass(eq=False)
class OneOfOneSegment(Segment):
    """The one-of-ones (oneofones.py): one item per finished image, row k = image k."""

    @property
    def render_layerset(self) -> LayerSet:
        raise TypeError("one-of-ones are copied, not rendered")

    def image(self, row: int) -> FinishedImage:
        return self.layerset.layers[0].traits[row]


def one_of_one_segment(ones, offset: int, width: int, height: int) -> OneOfOneSegment:
    traits = [FinishedImage(o.name, o.path, o.sha256, o.metadata) for o in ones]
    ls = LayerSet(root=Path("."), layers=[Layer(folder=ONE_OF_ONE, name=ONE_OF_ONE, traits=traits)],
                  width=width, height=height)
    return OneOfOneSegment(-1, ls, [LayerOption(ONE_OF_ONE, name=ONE_OF_ONE)],
                           np.arange(len(ones), dtype=np.int32)[:, None], offset)


@dataclass(eq=False)
class CollectionPlan:
    segments: list[Segment]
    numbers: np.ndarray  # (N,) item number of each global index
    start: int
    seed: int
    sizes: list[int] = field(default_factory=list)
    given: dict | None = None  # `--from` list: {"kind", "sha256", "items"} (the manifest's plan.from)
    one_of_ones: list | None = None  # the manifest's one_of_ones (oneofones.manifest_entry), when there are any

    def __len__(self) -> int:
        return int(self.numbers.shape[0])

    def one_render_layerset(self) -> bool:
        """Whether every rendered segment draws the same layers (one-of-ones are copied, not drawn)."""
        return len({id(s.render_layerset) for s in self.segments if not isinstance(s, OneOfOneSegment)}) == 1

    def locate(self, g: int) -> tuple[Segment, int]:
        for seg in self.segments:
            if g < seg.offset + len(seg.combos):
                return seg, g - seg.offset
        raise IndexError(g)

    def digest(self, segments: int | None = None) -> str:
        """SHA-256 of the plan (of its first `segments` segments: the plan before an extension)."""
        h = hashlib.sha256()
        segs = self.segments[:segments]
        for seg in segs:
            h.update(f"{seg.stack}:{seg.combos.shape}".encode())
            h.update(np.ascontiguousarray(seg.combos, dtype="<i4").tobytes())
        end = segs[-1].offset + len(segs[-1].combos)
        h.update(np.ascontiguousarray(self.numbers[:end], dtype="<i8").tobytes())
        return h.hexdigest()


def metadata_layers(stacks) -> list[tuple[str, list[str]]]:
    """(trait_type, trait names that can appear in metadata) of every stack, for metadata checks."""
    return [(layer.name, [o.value_of(t.name) for t in layer.traits if t.name != o.none and not t.empty])
            for sl, lopts in stacks for layer, o in zip(sl.layers, lopts, strict=True) if o.metadata]


class Identities:
    """Set of item identities ((layer display name, trait name) per dna layer) as compact keys:
    each pair gets a small integer, an identity is the bytes of their int32 array."""

    def __init__(self):
        self.ids: dict[tuple[str, str], int] = {}
        self.keys: set[bytes] = set()

    def key(self, pairs) -> bytes:
        return np.array([self.ids.setdefault(p, len(self.ids)) for p in pairs], np.int32).tobytes()

    def add(self, pairs) -> None:
        self.keys.add(self.key(pairs))

    def __contains__(self, pairs) -> bool:
        return self.key(pairs) in self.keys

    def __len__(self) -> int:
        return len(self.keys)

    def copy(self) -> "Identities":
        other = Identities()
        other.ids, other.keys = self.ids, set(self.keys)
        return other


def derived_seed(seed: int, *salt) -> int:
    """A 63-bit seed for one purpose (stack k, shuffling, an extension) from the collection seed."""
    text = ":".join(str(x) for x in (seed, *salt))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def stack_layerset(loaded: dict[str, Layer], root, width: int, height: int, options) -> LayerSet:
    """A LayerSet view of one stack: the loaded layers in its order, with its display names and
    blend options; trait objects (and their pixels) are shared between stacks."""
    layers = []
    for o in options:
        src = loaded[o.folder]
        if o.none is not None and all(t.name != o.none for t in src.traits):
            raise ConfigError(f"layer {o.folder!r}: none = {o.none!r} names no trait of this layer; "
                              f"use one of its trait names ({', '.join(t.name for t in src.traits[:5])}...)")
        layers.append(Layer(folder=o.folder, name=o.name or layer_display_name(o.folder), traits=src.traits,
                            blend=o.blend, opacity=o.opacity))
    stack = LayerSet(root=root, layers=layers, width=width, height=height)
    stack.render = render_view(stack, options)
    return stack


def _rules_for(stack_rules, layerset: LayerSet, options, dna_index: dict[int, int], where: str):
    """Map config rules ('Layer/Trait' pairs) to planner rules in the dna-layer index space.
    Returns (rules, banned): a rule whose layers this stack lacks does not apply, except
    `a always with b` where only b's layer is missing: then a cannot be picked here (banned)."""
    if not stack_rules:
        return (), set()
    out, banned = [], set()
    for r in stack_rules:
        ends = []
        for ref in (r.a, r.b):
            li = _find_layer(layerset, ref[0])
            if li is None:
                ends.append(None)
                continue
            ti = next((k for k, t in enumerate(layerset.layers[li].traits) if t.name == ref[1]), None)
            if ti is None:
                raise PlanError(f"{where}: rule {r.text}: layer {ref[0]!r} has no trait {ref[1]!r}")
            if li not in dna_index:
                raise PlanError(f"{where}: rule {r.text}: layer {ref[0]!r} has dna = false; rules apply to dna layers only")
            ends.append((dna_index[li], ti))
        if None not in ends:
            out.append(Rule(r.kind, ends[0], ends[1]))
        elif r.kind == "always" and ends[0] is not None:
            banned.add(ends[0])
    return tuple(out), banned


def check_rule_layers(rules, stacks, source: str, links=()) -> None:
    """A rule or link naming a layer no stack has is a typo, not one for another stack."""
    named = [(f"rule {r.text}", ref[0]) for r in rules for ref in (r.a, r.b)]
    named += [(f"link {link.text}", ref) for link in links for ref in link.layers]
    for what, ref in named:
        if all(_find_layer(ls, ref) is None for ls, _ in stacks):
            known = ", ".join(dict.fromkeys(x for ls, _ in stacks for layer in ls.layers
                                            for x in (layer.folder, layer.name)))
            raise PlanError(f"{source}: {what}: no layer is named {ref!r} (by folder or display name); known: {known}")
    for link in links:
        for ls, _ in stacks:
            found = [_find_layer(ls, ref) for ref in link.layers]
            twice = [ref for ref, li in zip(link.layers, found, strict=True) if li is not None and found.count(li) > 1]
            if twice:
                raise PlanError(f"{source}: link {link.text}: {' and '.join(map(repr, twice))} name the same layer")


# --- links -----------------------------------------------------------------------------------------
#
# A link makes same-named traits of its layers come together: in the planner's terms, "always"
# rules both ways between every two same-named traits. Counting, contradiction checks, exact counts
# and sampling then stay those of rules (exact). A trait whose name another linked layer lacks
# goes with that layer's traits whose names this layer lacks. The first layer listed decides the
# chances: the other layers' weights of traits it also has are set to 1 (0 still leaves them out).


def _link_layers(link, layerset: LayerSet, dna_index: dict[int, int], where: str) -> list[int]:
    """Indices in `layerset` of the link's layers this stack has (in the link's order)."""
    out = []
    for ref in link.layers:
        li = _find_layer(layerset, ref)
        if li is None:
            continue
        if li not in dna_index:
            raise PlanError(f"{where}: link {link.text}: layer {ref!r} has dna = false; links apply to dna layers only")
        out.append(li)
    return out


def _links_for(links, layerset: LayerSet, dna_index: dict[int, int], weights: list[np.ndarray]) -> tuple:
    """Planner rules (dna-layer index space) for the links; sets the followers' weights in place."""
    out = []
    for _link, idx in links:
        index = [{t.name: k for k, t in enumerate(layerset.layers[li].traits)} for li in idx]
        for j in range(1, len(idx)):
            w = weights[dna_index[idx[j]]]
            for name, k in index[j].items():
                if w[k] > 0 and any(name in index[i] for i in range(j)):
                    w[k] = 1.0
        for i in range(len(idx)):
            for j in range(i + 1, len(idx)):
                for name in index[i].keys() & index[j].keys():
                    a, b = (dna_index[idx[i]], index[i][name]), (dna_index[idx[j]], index[j][name])
                    out += [Rule("always", a, b), Rule("always", b, a)]
    return tuple(out)


def _check_links(links, layerset: LayerSet, dna_index: dict[int, int], pickable: list[np.ndarray], where: str) -> None:
    """The contradictions a link makes on its own, named in its terms (the rule checks find the rest)."""
    for link, idx in links:
        traits = [{t.name: bool(pickable[dna_index[li]][k]) for k, t in enumerate(layerset.layers[li].traits)}
                  for li in idx]
        for i in range(len(idx)):
            for j in range(len(idx)):
                if i == j:
                    continue
                mine, other = traits[i], traits[j]
                li, lj = (layerset.layers[x].folder for x in (idx[i], idx[j]))
                for name, ok in mine.items():
                    if ok and name in other and not other[name]:
                        raise PlanError(f"{where}: link {link.text}: {li}/{name} can never be picked: it comes with "
                                        f"{lj}/{name}, which has weight 0 or exact count 0; give both weight 0 "
                                        f"or both a weight")
                alone = [n for n, ok in mine.items() if ok and n not in other]
                partners = [n for n, ok in other.items() if ok and n not in mine]
                if alone and not partners:
                    raise PlanError(f"{where}: link {link.text}: {li}/{alone[0]} can never be picked: layer {lj!r} has "
                                    f"no trait named {alone[0]!r}, and each of its traits comes with the {li} trait of "
                                    f"its own name; add {lj}/{alone[0]} (an empty image will do) or give "
                                    f"{li}/{alone[0]} weight 0")


def _repair(combos: np.ndarray, bad: list[int], weights, fixed: list[set], rules, taken: set, key, rng,
            tries: int = 500) -> bool:
    """Redraw rows `bad` in place, keeping each row's exact-count traits (so every exact count
    still holds) and redrawing its other layers by weight until the row is new and obeys the
    rules. False when some row finds no such redraw."""
    free = [np.array([w if t not in fixed[li] else 0.0 for t, w in enumerate(ws)]) for li, ws in enumerate(weights)]
    for i in bad:
        row = combos[i].copy()
        movable = [li for li in range(len(row)) if row[li] not in fixed[li] and free[li].sum() > 0]
        for _ in range(tries):
            for li in movable:
                row[li] = rng.choice(len(free[li]), p=free[li] / free[li].sum())
            r = row.tolist()
            if key(r) not in taken and all(_obeys(rule, r) for rule in rules):
                combos[i] = row
                taken.add(key(r))
                break
        else:
            return False
    return True


def _obeys(rule, row) -> bool:
    has_a = row[rule.a[0]] == rule.a[1]
    has_b = row[rule.b[0]] == rule.b[1]
    return not (has_a and has_b) if rule.kind == "never" else (not has_a or has_b)


def _find_layer(layerset: LayerSet, ref: str) -> int | None:
    for li, layer in enumerate(layerset.layers):
        if layer.folder == ref:
            return li
    for li, layer in enumerate(layerset.layers):
        if layer.name == ref:
            return li
    return None


def _exact_for(layer: Layer, option, where: str) -> dict[int, int]:
    index = {t.name: k for k, t in enumerate(layer.traits)}
    out = {}
    for name, count in option.exact:
        if name not in index:
            raise PlanError(f"{where}: exact count for {layer.folder}/{name}: no such trait in layer {layer.folder!r}")
        out[index[name]] = count
    return out


def _independent(layer: Layer, exact: dict[int, int], n: int, rng: np.random.Generator, where: str) -> np.ndarray:
    """A dna = false layer: each item's trait drawn by weight; exact counts fill their slots first."""
    fixed = sum(exact.values())
    if fixed > n:
        raise PlanError(f"{where}: exact counts in layer {layer.folder!r} add up to {fixed}, more than the {n} items")
    w = layer.weights.copy()
    w[list(exact)] = 0
    rest = n - fixed
    if rest and w.sum() <= 0:
        raise PlanError(f"{where}: layer {layer.folder!r}: exact counts cover {fixed} of {n} items "
                        "and no other trait has a weight")
    col = np.concatenate([np.full(c, k, np.int32) for k, c in sorted(exact.items())] +
                         [rng.choice(len(w), size=rest, p=w / w.sum()).astype(np.int32) if rest else np.empty(0, np.int32)])
    return rng.permutation(col).astype(np.int32)


def plan_stack(stack_index: int, layerset: LayerSet, options, size: int, seed: int, rules, where: str,
               exclude: "Identities | None" = None, extension: bool = False, links=()) -> np.ndarray:
    """(size, L) combos for one stack. With `exclude` (identities already used by other segments)
    the stack draws extra unique items and keeps the first `size` that are new, which is the
    same distribution conditioned on not repeating them; with exact counts, which extra items
    would break, colliding items are redrawn around their exact traits instead. An `extension`
    adds no item with an exact-count trait, so every exact count holds for the whole collection.
    `links` (LinkOptions) become rules between same-named traits (see _links_for)."""
    dna_layers = [li for li, o in enumerate(options) if o.dna]
    if not dna_layers:
        raise PlanError(f"{where}: every layer has dna = false; uniqueness needs at least one dna layer")
    dna_index = {li: k for k, li in enumerate(dna_layers)}
    weights = [layerset.layers[li].weights.copy() for li in dna_layers]
    names = [[t.name for t in layerset.layers[li].traits] for li in dna_layers]
    plan_rules, banned = _rules_for(rules, layerset, options, dna_index, where)
    linked = [(link, idx) for link in links if len(idx := _link_layers(link, layerset, dna_index, where)) > 1]
    plan_rules += _links_for(linked, layerset, dna_index, weights)
    for k, t in banned:
        weights[k][t] = 0.0
    exact, free_exact = {}, {}
    for li, o in enumerate(options):
        e = _exact_for(layerset.layers[li], o, where)
        if extension:
            e = {t: 0 for t in e}
        if li in dna_index:
            exact.update({(dna_index[li], t): c for t, c in e.items()})
        else:
            free_exact[li] = e
    if linked:
        pickable = [w > 0 for w in weights]
        for (k, t), c in exact.items():
            pickable[k][t] = c > 0
        _check_links(linked, layerset, dna_index, pickable, where)
    label = ([layerset.layers[li].name for li in dna_layers], names)
    kwargs = dict(rules=plan_rules, exact=exact or None, names=label) if plan_rules or exact else {}

    def key(row):
        return tuple((layerset.layers[li].name, names[k][j]) for k, (li, j) in enumerate(zip(dna_layers, row, strict=True)))

    want = size
    while True:
        try:
            combos = make_plan(weights, want, seed, **kwargs).combos
        except PlanError as err:
            raise (PlanError(f"{where}: {err}") if where != "plan" else err) from None
        if not exclude:
            break
        keep = [i for i, row in enumerate(combos.tolist()) if key(row) not in exclude]
        if len(keep) >= size or exact:
            break
        total = count_allowed(weights, plan_rules, exact or None, names=label)  # only when drawing more
        if want >= total:
            raise PlanError(f"{where}: only {len(keep)} new items can be drawn that differ from the collection's "
                            f"other items, {size} asked; lower the number or add traits")
        want = min(total, want + (size - len(keep)) * 2)
    if exclude and exact:
        kept = set(keep)  # once: a set per row made this quadratic (minutes for 100k items)
        bad = [i for i in range(len(combos)) if i not in kept]
        fixed = [{t for (k, t) in exact if k == kk} for kk in range(len(dna_layers))]
        taken = exclude.copy()
        for r in combos[keep].tolist():
            taken.add(key(r))
        if bad and not _repair(combos, bad, weights, fixed, plan_rules, taken, key,
                               np.random.default_rng(derived_seed(seed, "repair"))):
            raise PlanError(f"{where}: cannot draw items that differ from the collection's other items while keeping "
                            f"this stack's exact counts; give the stacks different layers or traits")
    elif exclude:
        combos = combos[keep[:size]]
    n = len(combos)
    full = np.zeros((n, len(options)), np.int32)
    full[:, dna_layers] = combos
    rng = np.random.default_rng(derived_seed(seed, "free"))
    for li, o in enumerate(options):
        if not o.dna:
            full[:, li] = _independent(layerset.layers[li], free_exact.get(li, {}), n, rng, where)
    return full


def plan_collection(cfg, stacks: list[tuple[LayerSet, list]], extensions=(), source: str = "plan") -> CollectionPlan:
    """Plan every stack, then any extensions ({stack, size, seed} dicts, numbered after the rest)."""
    links = cfg.links
    check_rule_layers(cfg.rules, stacks, source, links)
    for layerset, options in stacks:
        check_trait_options(layerset, options)
    segments: list[Segment] = []
    seen = Identities() if len(stacks) > 1 or extensions else None
    offset = 0

    def add(k: int, combos: np.ndarray) -> None:
        nonlocal offset
        ls, options = stacks[k]
        seg = Segment(k, ls, options, combos, offset)
        segments.append(seg)
        offset += len(combos)
        if seen is not None:
            for i in range(len(combos)):
                seen.add(seg.identity(i))

    given = None
    if cfg.from_list:
        given = _given_items(cfg, stacks)
        for k, combos in given[0]:
            add(k, combos)
    ones, placed = _one_of_ones(cfg, source)
    sizes = list(cfg.stack_sizes)
    if len(ones) > sizes[0]:
        raise ConfigError(f"{source}: {len(ones)} one-of-ones, but the {'first stack' if len(sizes) > 1 else 'collection'} "
                          f"has only {sizes[0]} items; they take the place of generated items")
    sizes[0] -= len(ones)
    for k, ((ls, options), size) in enumerate(zip(stacks, sizes, strict=True)):
        if given is not None:
            break
        where = source if len(stacks) == 1 else f"{source}: stack {k + 1}"
        seed = cfg.seed if k == 0 else derived_seed(cfg.seed, "stack", k)
        add(k, plan_stack(k, ls, options, size, seed, cfg.rules, where, exclude=seen or None, links=links))
    made = offset
    numbers = np.arange(cfg.start, cfg.start + made, dtype=np.int64)
    if cfg.shuffle:
        numbers = cfg.start + np.random.default_rng(derived_seed(cfg.seed, "shuffle")).permutation(made)
    for one in ones:
        if one.size != (stacks[0][0].width, stacks[0][0].height):
            raise ConfigError(f"one-of-ones: {one.path}: {one.size[0]}x{one.size[1]}, but the canvas is "
                              f"{stacks[0][0].width}x{stacks[0][0].height}; a one-of-one is copied as it is, so it must "
                              f"have the collection's size")
    if ones:  # generated items keep their order over the numbers the one-of-ones leave
        numbers = np.concatenate([generated_numbers(placed, cfg.size, cfg.start)[numbers - cfg.start], placed])
        segments.append(one_of_one_segment(ones, offset, stacks[0][0].width, stacks[0][0].height))
        offset += len(ones)
    base = offset
    for e in extensions:
        k = int(e.get("stack", 0))
        ls, options = stacks[k]
        add(k, plan_stack(k, ls, options, int(e["size"]), int(e["seed"]), cfg.rules, f"{source}: extension",
                          exclude=seen, extension=True, links=links))
    numbers = np.concatenate([numbers, np.arange(cfg.start + base, cfg.start + offset, dtype=np.int64)])
    entry = None
    if ones:
        entry = manifest_entry(ones, placed)
    return CollectionPlan(segments, numbers.astype(np.int64), cfg.start, cfg.seed,
                          given=given[1] if given is not None else None, one_of_ones=entry)


def _one_of_ones(cfg, source: str) -> tuple[list, np.ndarray]:
    """The config's one-of-ones and their numbers (seeded apart from the generated items' plan)."""
    if not cfg.one_of_ones:
        return [], np.empty(0, np.int64)
    if [f.name for f in cfg.formats] != ["png"] or cfg.sizes:
        raise ConfigError(f"{source}: one-of-ones are copied as they are, so the output must be one PNG at the "
                          f"canvas size; leave [output] format and sizes out, or the [one_of_ones] table")
    ones = read_one_of_ones(cfg.one_of_ones, dict(cfg.one_of_ones_numbers))
    return ones, place(ones, cfg.size, cfg.start, derived_seed(cfg.seed, "one-of-ones"))


def _given_items(cfg, stacks) -> tuple[list[tuple[int, np.ndarray]], dict]:
    """The items of a `--from` list as (stack, combos) runs in the list's order, and its record for
    the manifest. The list is the plan: weights, rules, links and exact counts apply to extensions
    only. With several stacks each item goes to the stack whose layers it names (itemlist.list_stacks)."""
    items = read_list(cfg.from_list)
    if len(items) != cfg.size:
        raise PlanError(f"--from {items.path}: lists {len(items)} items, but the collection size is {cfg.size}; "
                        f"leave the size out (the list decides it)")
    choice = np.zeros(len(items), np.int64) if len(stacks) == 1 else list_stacks(items, stacks)
    combos = {}
    for k, (layerset, options) in enumerate(stacks):
        mine = choice == k
        if mine.any():
            combos[k] = list_combos(items, layerset, options, cfg.delimiter, mine)
            check_unique(items, combos[k], options, np.flatnonzero(mine))
    starts = np.flatnonzero(np.diff(choice, prepend=-1))  # runs of consecutive items of one stack
    runs, taken = [], dict.fromkeys(combos, 0)
    for a, b in zip(starts, [*starts[1:], len(items)], strict=True):
        k = int(choice[a])
        runs.append((k, combos[k][taken[k]:taken[k] + b - a]))
        taken[k] += b - a
    return runs, {"kind": items.kind, "sha256": items.sha256, "items": len(items)}
