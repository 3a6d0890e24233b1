"""From layer weights to N unique trait combinations, fully determined by the seed.

Drawing unique combinations by rejecting repeats is the same distribution as drawing
without replacement proportionally to the product of trait weights. We do it in two
equivalent ways: vectorised rejection while repeats are rare, and, when N is a large
share of all combinations, exact weighted sampling without replacement over the
enumerated combinations (Gumbel top-k). Either way N <= total always succeeds.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from gpucomp.errors import PlanError
from gpucomp.plan.rules import Names, analyse, as_rule, check_contradictions, check_exact

ENUMERATE_LIMIT = 4_000_000  # combinations we are willing to enumerate (~100 MB of temporaries)


@dataclass
class Plan:
    """`combos[i]` is the trait index per layer of item number `start + i`."""

    combos: np.ndarray  # (N, L) int32
    seed: int
    start: int = 1

    def __len__(self) -> int:
        return int(self.combos.shape[0])

    def number(self, i: int) -> int:
        return self.start + i


def count_combinations(weights: list[np.ndarray]) -> int:
    total = 1
    for w in weights:
        total *= int(np.count_nonzero(w > 0))
    return total


def _check_weights(weights: list[np.ndarray], names=None) -> None:
    """Finite weights of 0 or more, a finite sum, and no positive weight whose share of the sum
    rounds to 0 (it would be counted as a combination but never drawn). The layers loader refuses such
    files by name; this guards callers of the API."""
    for li, w in enumerate(weights):
        w = np.asarray(w, np.float64)
        layer = repr(names[0][li]) if names else str(li + 1)
        with np.errstate(over="ignore", invalid="ignore"):  # an infinite sum is the error reported below
            total = float(np.sum(w)) if w.size else 0.0
        if w.ndim != 1 or not np.isfinite(w).all() or (w < 0).any() or not np.isfinite(total):
            raise PlanError(f"layer {layer}: weights must be finite numbers of 0 or more with a finite sum, "
                            f"got {w.tolist()[:8]}")
        if total > 0 and ((w > 0) & (w / total < np.finfo(np.float64).tiny)).any():
            smallest = w.min(where=w > 0, initial=np.inf)
            raise PlanError(f"layer {layer}: a weight above 0 is so small next to the others ({smallest:g} "
                            f"against a sum of {total:g}) that it could never be picked; use weights closer together")


def _probabilities(weights: list[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(w, np.float64) / float(np.sum(w)) for w in weights]


def _enumerate(probs: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Weighted sampling without replacement over all combinations, in draw order."""
    choices = [np.flatnonzero(p > 0) for p in probs]
    sizes = [len(c) for c in choices]
    total = int(np.prod(sizes))
    logp = np.zeros(total, np.float64)
    digits = np.indices(sizes).reshape(len(sizes), -1)  # (L, total) mixed-radix digits
    for li, p in enumerate(probs):
        logp += np.log(p[choices[li]])[digits[li]]
    keys = logp + rng.gumbel(size=total)
    top = np.argpartition(-keys, n - 1)[:n] if n < total else np.arange(total)
    top = top[np.argsort(-keys[top], kind="stable")]
    return np.stack([choices[li][digits[li, top]] for li in range(len(probs))], axis=1).astype(np.int32)


def _draw_or_enumerate(total: int, n: int, draw, enumerate_, what: str) -> np.ndarray:
    """Draw with repeats rejected while repeats are rare; enumerate every combination (exact
    weighted sampling without replacement) when N is a large share of them or drawing stalls."""
    combos = None
    if not (total <= ENUMERATE_LIMIT and n * 4 > total):
        combos = draw()
    if combos is None:
        if total > ENUMERATE_LIMIT:
            raise PlanError(f"the weights are so uneven that {n} unique items out of {what} cannot be drawn "
                            f"efficiently; lower the size or even out the weights")
        combos = enumerate_()
    return combos


def _unique_rows(draw, n: int, sizes: list[int], total: int) -> np.ndarray | None:
    """Rows from `draw(size)` with repeats discarded (first occurrence wins), until n are found.
    None if it stalls (fewer than 1% of a round new: too many repeats, enumerate instead).
    Keys are int64 mixed-radix numbers kept in a sorted array (8 bytes an item, not a Python set)."""
    if total >= 2**62:
        return _unique_rows_bytes(draw, n, sizes)
    radix = np.cumprod([1] + sizes[:-1], dtype=np.int64)
    out = np.empty((n, len(sizes)), np.int32)
    have = 0
    seen = np.empty(0, np.int64)  # sorted
    while have < n:
        size = max(1024, 2 * (n - have))
        draws = draw(size)
        keys = draws.astype(np.int64) @ radix
        _, first = np.unique(keys, return_index=True)
        first.sort()  # first occurrences, in draw order
        if seen.size:
            pos = np.minimum(np.searchsorted(seen, keys[first]), seen.size - 1)
            first = first[seen[pos] != keys[first]]
        take = first[:n - have]
        out[have:have + len(take)] = draws[take]
        have += len(take)
        seen = np.union1d(seen, keys[take])
        if len(take) < size // 100 and have < n:
            return None
    return out


def _unique_rows_bytes(draw, n: int, sizes: list[int]) -> np.ndarray | None:
    """_unique_rows for combination counts past int64: rows as bytes in a set."""
    out = np.empty((n, len(sizes)), np.int32)
    have = 0
    seen: set = set()
    while have < n:
        size = max(1024, 2 * (n - have))
        draws = draw(size)
        before = have
        for row in draws:
            key = row.tobytes()
            if key not in seen:
                seen.add(key)
                out[have] = row
                have += 1
                if have == n:
                    break
        if have - before < size // 100 and have < n:
            return None
    return out


def _reject(probs: list[np.ndarray], n: int, total: int, rng: np.random.Generator) -> np.ndarray | None:
    """Vectorised independent draws per layer, unique rows kept. None if it stalls."""
    cdfs = [np.cumsum(p) for p in probs]
    # A draw at or above a cdf that sums to just under 1 runs off its end: clamp it to the last trait
    # that can be picked, not the last trait (which may have weight 0).
    last = [int(np.flatnonzero(p > 0)[-1]) for p in probs]

    def draw(size: int) -> np.ndarray:
        return np.stack([np.minimum(np.searchsorted(c, rng.random(size), side="right"), top)
                         for c, top in zip(cdfs, last, strict=True)], axis=1).astype(np.int32)

    return _unique_rows(draw, n, [len(p) for p in probs], total)


def make_plan(weights: list[np.ndarray], n: int, seed: int, start: int = 1, rules=(), exact=None,
              names=None) -> Plan:
    """Plan `n` unique combinations from per-layer weight arrays.

    `rules` (gpucomp.plan.rules.Rule or (kind, a, b) tuples) and `exact` ({(layer, trait): count}) are
    optional; `names=(layer_names, trait_names)` only improves messages. Without rules and exact
    counts the plan is exactly what it always was for the same seed.
    """
    if n < 1:
        raise PlanError(f"collection size must be at least 1, got {n}")
    _check_weights(weights, names)
    if rules or exact:
        return _make_ruled_plan(weights, n, seed, start, rules, exact, names)
    total = count_combinations(weights)
    if n > total:
        raise PlanError(
            f"cannot make {n} unique items: the layers allow only {total} distinct combinations "
            f"(traits per layer: {' x '.join(str(int(np.count_nonzero(w > 0))) for w in weights)}); "
            f"lower the size or add traits"
        )
    rng = np.random.default_rng(seed)
    probs = _probabilities(weights)
    combos = _draw_or_enumerate(total, n, lambda: _reject(probs, n, total, rng),
                                lambda: _enumerate(probs, n, np.random.default_rng([seed, 1])), str(total))
    return Plan(combos=combos, seed=seed, start=start)


# --- rules and exact counts ------------------------------------------------------------------------
#
# Rules only couple the layers of one connected component (gpucomp.plan.rules), so a combination is a
# product of independent factors: each free layer, and each component over its allowed cells. The
# product-of-weights distribution conditioned on the rules is then drawn exactly by drawing every
# factor from its own conditioned distribution: a component by rejection of its product draws when
# at least REJECT_SHARE of them are allowed, else from the cdf over its allowed cells. Repeats are
# discarded as before (first occurrence wins), and a stall or a large share falls back to Gumbel
# top-k over every allowed combination, so n <= the allowed count always succeeds.
#
# Exact counts: the layers with exact counts split the items into classes (one class per exact
# trait, plus "any other trait" for the rest of the layer). Each layer's classes are dealt to the
# n items in a uniformly random order, independently per layer, then the class table is repaired
# by margin-preserving swaps until no cell holds more items than the rules allow distinct
# combinations in it (retried with derived seeds, EXACT_TRIES times). Each cell is then filled
# with that many unique combinations by the conditioned sampler above, the "other" traits
# following their weights, and the items are shuffled.

REJECT_SHARE = 0.125
EXACT_TRIES = 8
SIGNATURE_LIMIT = 100_000  # cells of the exact-count class table


def _masked_sum(mask: np.ndarray, probs: list[np.ndarray]) -> float:
    """Sum over the True cells of mask of the product of per-axis probabilities, in bounded memory."""
    if mask.ndim == 1 or mask.size <= 1 << 22:
        x = mask.astype(np.float64)
        for p in reversed(probs):
            x = x @ p
        return float(x)
    return float(sum(probs[0][i] * _masked_sum(mask[i], probs[1:]) for i in range(len(probs[0]))))


class _Factor:
    """One independent part of a combination: a free layer (mask None), or the layers of one
    rule component with `mask` over their `keep` traits. Weights must be > 0."""

    def __init__(self, layers, keep, weights, mask=None):
        self.layers = list(layers)
        self.keep = [np.asarray(k, np.int64) for k in keep]
        self.probs = [np.asarray(w, np.float64) / float(np.sum(w)) for w in weights]
        self.mask = mask
        self.count = len(self.keep[0]) if mask is None else int(np.count_nonzero(mask))
        self.share = 1.0 if mask is None else (_masked_sum(mask, self.probs) if self.count else 0.0)
        self._cdfs = [np.cumsum(p) for p in self.probs]
        self._cells = None

    def _axes(self, size: int, rng) -> list[np.ndarray]:
        return [np.minimum(np.searchsorted(c, rng.random(size), side="right"), len(c) - 1) for c in self._cdfs]

    def draw(self, size: int, rng) -> np.ndarray:
        """(size, len(layers)) trait indices, independent draws from the conditioned distribution."""
        if self.mask is None:
            pos = self._axes(size, rng)
        elif self.share >= REJECT_SHARE:
            flat_mask = self.mask.reshape(-1)
            strides = [int(np.prod(self.mask.shape[i + 1:])) for i in range(self.mask.ndim)]
            parts, have = [], 0
            while have < size:
                axes = self._axes(int((size - have) / self.share * 1.2) + 64, rng)
                ok = flat_mask[sum(a * s for a, s in zip(axes, strides, strict=True))]
                parts.append([a[ok] for a in axes])
                have += int(ok.sum())
            pos = [np.concatenate([p[i] for p in parts])[:size] for i in range(len(self.layers))]
        else:
            if self._cells is None:
                cells = np.flatnonzero(self.mask)
                w = np.ones(len(cells))
                for p, d in zip(self.probs, np.unravel_index(cells, self.mask.shape), strict=True):
                    w *= p[d]
                self._cells = (cells, np.cumsum(w))
            cells, cdf = self._cells
            k = np.minimum(np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right"), len(cdf) - 1)
            pos = np.unravel_index(cells[k], self.mask.shape)
        return np.stack([keep[p] for keep, p in zip(self.keep, pos, strict=True)], axis=1)

    def options(self) -> tuple[np.ndarray, np.ndarray]:
        """Every allowed (traits, log weight) of this factor."""
        if self.mask is None:
            digits = [np.arange(len(self.keep[0]))]
        else:
            digits = np.unravel_index(np.flatnonzero(self.mask), self.mask.shape)
        logp = sum(np.log(p)[d] for p, d in zip(self.probs, digits, strict=True))
        return np.stack([k[d] for k, d in zip(self.keep, digits, strict=True)], axis=1), logp


def _factors(an, box: dict, cache: dict | None = None) -> list[_Factor]:
    """Factors of the allowed combinations; `box` limits some layers to (traits, weights, tag),
    and `cache` reuses factors by the tags of the layers they cover."""
    out = []
    for ci, comp in enumerate(an.comps):
        key = ("c", ci, tuple(box[li][2] if li in box else None for li in comp.layers))
        if cache is not None and key in cache:
            out.append(cache[key])
            continue
        keep, weights, pos = [], [], []
        for i, li in enumerate(comp.layers):
            if li in box:
                traits, w = box[li][0], box[li][1]
                pos.append(np.searchsorted(comp.keep[i], traits))
            else:
                traits, w = comp.keep[i], an.weights[li][comp.keep[i]]
                pos.append(np.arange(len(traits)))
            keep.append(traits)
            weights.append(w)
        mask = comp.mask[np.ix_(*pos)] if any(li in box for li in comp.layers) else comp.mask
        f = _Factor(comp.layers, keep, weights, mask)
        if cache is not None:
            cache[key] = f
        out.append(f)
    for li in an.free:
        key = ("f", li, box[li][2] if li in box else None)
        if cache is not None and key in cache:
            out.append(cache[key])
            continue
        if li in box:
            traits, w = box[li][0], box[li][1]
        else:
            traits = np.flatnonzero(an.avail[li])
            w = an.weights[li][traits]
        f = _Factor([li], [traits], [w])
        if cache is not None:
            cache[key] = f
        out.append(f)
    return out


def _draw_unique(factors: list[_Factor], sizes: list[int], n: int, rng) -> np.ndarray | None:
    """Like _reject, over independent factors. None if repeats make it stall."""
    def draw(size: int) -> np.ndarray:
        draws = np.empty((size, len(sizes)), np.int32)
        for f in factors:
            draws[:, f.layers] = f.draw(size, rng)
        return draws

    return _unique_rows(draw, n, sizes, math.prod(sizes))


def _enumerate_factors(factors: list[_Factor], n_layers: int, n: int, rng) -> np.ndarray:
    """Weighted sampling without replacement over every allowed combination, in draw order."""
    opts = [f.options() for f in factors]
    counts = [len(lp) for _, lp in opts]
    total = math.prod(counts)
    digits = np.indices(counts).reshape(len(counts), -1)
    logp = np.zeros(total, np.float64)
    for (_, lp), d in zip(opts, digits, strict=True):
        logp += lp[d]
    keys = logp + rng.gumbel(size=total)
    top = np.argpartition(-keys, n - 1)[:n] if n < total else np.arange(total)
    top = top[np.argsort(-keys[top], kind="stable")]
    out = np.empty((n, n_layers), np.int32)
    for f, (traits, _), d in zip(factors, opts, digits, strict=True):
        out[:, f.layers] = traits[d[top]]
    return out


def _sample(factors: list[_Factor], sizes: list[int], n: int, rng, rng_enum) -> np.ndarray:
    allowed = math.prod(f.count for f in factors)
    return _draw_or_enumerate(allowed, n, lambda: _draw_unique(factors, sizes, n, rng),
                              lambda: _enumerate_factors(factors, len(sizes), n, rng_enum),
                              f"the {allowed} the rules allow")


def _make_ruled_plan(weights, n, seed, start, rules, exact, names) -> Plan:
    weights = [np.asarray(w, np.float64) for w in weights]
    rules = tuple(as_rule(r) for r in rules)
    an = analyse(weights, rules, exact)
    check_contradictions(an, names)
    allowed = an.count(names=names)
    if n > allowed:
        what = "the rules allow" if rules else "the layers allow"
        raise PlanError(
            f"cannot make {n} unique items: {what} only {allowed} distinct combinations "
            f"(traits per layer: {' x '.join(str(int(p.sum())) for p in an.pickable)}); "
            f"lower the size, add traits{' or relax the rules' if rules else ''}"
        )
    want = {x: c for x, c in an.exact.items() if c > 0}
    if not want:
        combos = _sample(_factors(an, {}), an.sizes, n, np.random.default_rng(seed), np.random.default_rng([seed, 1]))
        return Plan(combos=combos, seed=seed, start=start)
    check_exact(an, n, names)
    return Plan(combos=_exact_plan(an, want, n, seed, Names(names)), seed=seed, start=start)


def _exact_plan(an, want: dict, n: int, seed: int, N) -> np.ndarray:
    layers = sorted({x[0] for x in want})
    classes: dict[int, list[tuple]] = {}  # layer -> [(exact trait or None, traits, weights, target)]
    for li in layers:
        xs = sorted(x for x in want if x[0] == li)
        cl = [(x, np.array([x[1]], np.int64), np.ones(1), want[x]) for x in xs]
        rest = n - sum(want[x] for x in xs)
        if rest > 0:
            others = np.array([t for t in np.flatnonzero(an.avail[li]) if (li, int(t)) not in want], np.int64)
            cl.append((None, others, an.weights[li][others], rest))
        classes[li] = cl
    dims = [len(classes[li]) for li in layers]
    if math.prod(dims) > SIGNATURE_LIMIT:
        raise PlanError(
            f"the exact counts in {', '.join(N.layer(li) for li in layers)} split the items into "
            f"{' x '.join(map(str, dims))} = {math.prod(dims):,} classes, more than {SIGNATURE_LIMIT:,}; "
            f"give fewer traits exact counts"
        )
    cap = _class_caps(an, layers, classes, dims, n)
    targets = [np.array([c[3] for c in classes[li]], np.int64) for li in layers]
    stuck = None
    for attempt in range(EXACT_TRIES):
        table, stuck = _arrange(targets, cap, dims, np.random.default_rng([seed, 2, attempt]))
        if table is not None:
            break
    else:
        sig = np.unravel_index(stuck, dims)
        parts = [N.trait(classes[li][c][0]) if classes[li][c][0] is not None
                 else f"another trait of {N.layer(li)}" for li, c in zip(layers, map(int, sig), strict=True)]
        there = "the rules allow" if an.rules else "there are"
        raise PlanError(
            f"cannot meet the exact counts together: after {EXACT_TRIES} tries, the items with {' + '.join(parts)} "
            f"still outnumber the {int(cap[stuck])} distinct combinations {there} for them; the exact counts "
            f"conflict with {'the rules or ' if an.rules else ''}each other or with the collection size; loosen them"
        )
    rng = np.random.default_rng([seed, 3])
    cache: dict = {}
    parts = []
    for code in np.flatnonzero(table):
        sig = np.unravel_index(code, dims)
        box = {li: (*classes[li][int(c)][1:3], int(c)) for li, c in zip(layers, sig, strict=True)}
        parts.append(_sample(_factors(an, box, cache), an.sizes, int(table[code]), rng, rng))
    combos = np.concatenate(parts)
    return combos[rng.permutation(n)]


def _class_caps(an, layers: list[int], classes: dict, dims: list[int], n: int) -> np.ndarray:
    """Distinct allowed combinations in each cell of the class table (C order), capped at n."""
    cap = np.ones(dims, np.float64)
    const = 1
    for comp in an.comps:
        if comp.mask is None:
            raise an.too_big(comp)
        mine = [li for li in comp.layers if li in classes]
        rest_axes = tuple(i for i, li in enumerate(comp.layers) if li not in classes)
        t = comp.mask.sum(axis=rest_axes, dtype=np.int64) if rest_axes else comp.mask.astype(np.int64)
        for j, li in enumerate(mine):
            keep = comp.keep[comp.layers.index(li)]
            t = np.stack([t.take(np.searchsorted(keep, c[1]), axis=j).sum(axis=j) for c in classes[li]], axis=j)
        if not mine:
            const = min(const * int(t), n)
        else:
            shape = [dims[k] if li in mine else 1 for k, li in enumerate(layers)]
            cap = np.minimum(cap * t.reshape(shape), n)
    for li in an.free:
        if li in classes:
            shape = [dims[k] if m == li else 1 for k, m in enumerate(layers)]
            cap = np.minimum(cap * np.array([len(c[1]) for c in classes[li]], np.float64).reshape(shape), n)
        else:
            const = min(const * int(an.avail[li].sum()), n)
    return np.minimum(cap * const, n).reshape(-1).astype(np.int64)


def _arrange(targets: list[np.ndarray], cap: np.ndarray, dims: list[int], rng) -> tuple[np.ndarray | None, int]:
    """Class table with the given per-layer margins and no cell over its cap: random independent
    columns, then greedy margin-preserving swaps (plateau moves allowed). (None, a stuck cell) on failure."""
    strides = np.array([math.prod(dims[j + 1:]) for j in range(len(dims))], np.int64)
    code = np.zeros(int(targets[0].sum()), np.int64)
    for t, s in zip(targets, strides, strict=True):
        code += rng.permutation(np.repeat(np.arange(len(t)), t)) * s
    m = np.bincount(code, minlength=len(cap)).astype(np.int64)
    stuck = -1
    for _ in range(2000 + 20 * int(np.maximum(m - cap, 0).sum())):
        over = np.flatnonzero(m > cap)
        if not len(over):
            return m, -1
        s1 = int(over[rng.integers(len(over))])
        stuck = s1
        d1 = np.unravel_index(s1, dims)
        nz = np.flatnonzero(m)
        digits = np.unravel_index(nz, dims)
        full = m >= cap
        over2 = (m[nz] > cap[nz]).astype(np.int64)
        cands = []
        for j in range(len(dims)):
            step = (digits[j] - d1[j]) * strides[j]
            s1p, s2p = s1 + step, nz - step
            ok = (step != 0) & (nz - s1 != step)
            delta = -1 - over2 + full[s1p] + full[s2p]
            cands.append((delta[ok], nz[ok], s1p[ok], s2p[ok]))
        delta, s2, s1p, s2p = (np.concatenate(c) for c in zip(*cands, strict=True))
        if not len(delta) or delta.min() > 0:
            return None, s1
        pick = rng.choice(np.flatnonzero(delta == delta.min()))
        a, b, c = int(s2[pick]), int(s1p[pick]), int(s2p[pick])
        k = 1
        if m[b] < cap[b] and m[c] < cap[c]:
            k = int(min(m[s1] - cap[s1], m[a], cap[b] - m[b], cap[c] - m[c]))
        m[s1] -= k
        m[a] -= k
        m[b] += k
        m[c] += k
    return None, stuck


def dna(names: list[str]) -> str:
    """Stable identity of a combination (HashLips-style sha1 of the trait names in layer order)."""
    return hashlib.sha1("-".join(f"{i}:{name}" for i, name in enumerate(names)).encode()).hexdigest()
