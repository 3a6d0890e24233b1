"""From layer weights to N unique trait combinations, fully determined by the seed.

Drawing unique combinations by rejecting repeats is the same distribution as drawing
without replacement proportionally to the product of trait weights. We do it in two
equivalent ways: vectorised rejection while repeats are rare, and, when N is a large
share of all combinations, exact weighted sampling without replacement over the
enumerated combinations (Gumbel top-k). Either way N <= total always succeeds.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .errors import PlanError

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


def _reject(probs: list[np.ndarray], n: int, total: int, rng: np.random.Generator) -> np.ndarray | None:
    """Vectorised draws with repeats discarded (first occurrence wins). None if it stalls."""
    sizes = [len(p) for p in probs]
    radix = np.cumprod([1] + sizes[:-1], dtype=np.int64) if total < 2**62 else None
    cdfs = [np.cumsum(p) for p in probs]
    # A draw at or above a cdf that sums to just under 1 runs off its end: clamp it to the last trait
    # that can be picked, not the last trait (which may have weight 0).
    last = [int(np.flatnonzero(p > 0)[-1]) for p in probs]
    out = np.empty((n, len(probs)), np.int32)
    have = 0
    seen: set = set()
    while have < n:
        size = max(1024, 2 * (n - have))
        draws = np.stack([np.minimum(np.searchsorted(c, rng.random(size), side="right"), top)
                          for c, top in zip(cdfs, last)], axis=1).astype(np.int32)
        keys = (draws.astype(np.int64) @ radix).tolist() if radix is not None else [r.tobytes() for r in draws]
        before = have
        for row, key in zip(draws, keys):
            if key not in seen:
                seen.add(key)
                out[have] = row
                have += 1
                if have == n:
                    break
        if have - before < size // 100 and have < n:
            return None  # fewer than 1% new: too many repeats, enumerate instead
    return out


def make_plan(weights: list[np.ndarray], n: int, seed: int, start: int = 1) -> Plan:
    """Plan `n` unique combinations from per-layer weight arrays."""
    if n < 1:
        raise PlanError(f"collection size must be at least 1, got {n}")
    total = count_combinations(weights)
    if n > total:
        raise PlanError(
            f"cannot make {n} unique items: the layers allow only {total} distinct combinations "
            f"(traits per layer: {' x '.join(str(int(np.count_nonzero(w > 0))) for w in weights)}); "
            f"lower the size or add traits"
        )
    rng = np.random.default_rng(seed)
    probs = _probabilities(weights)
    combos = None
    if not (total <= ENUMERATE_LIMIT and n * 4 > total):
        combos = _reject(probs, n, total, rng)
    if combos is None:
        if total > ENUMERATE_LIMIT:
            raise PlanError(
                f"the weights are so uneven that {n} unique items out of {total} cannot be drawn "
                f"efficiently; lower the size or even out the weights"
            )
        combos = _enumerate(probs, n, np.random.default_rng([seed, 1]))
    return Plan(combos=combos, seed=seed, start=start)


def dna(names: list[str]) -> str:
    """Stable identity of a combination (HashLips-style sha1 of the trait names in layer order)."""
    return hashlib.sha1("-".join(f"{i}:{name}" for i, name in enumerate(names)).encode()).hexdigest()
