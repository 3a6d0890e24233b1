"""Batch scheduling from the known plan: prefix grouping for the cache and exact
look-ahead for trait residency. Pure NumPy; the CUDA backend drives it."""
from __future__ import annotations

import numpy as np


def prefix_depth(combos: np.ndarray, max_share: float = 0.25) -> int:
    """Deepest k (< L) whose distinct prefixes number at most `max_share` of the items."""
    n, layers = combos.shape
    best = 0
    for k in range(1, layers):
        distinct = len(np.unique(combos[:, :k], axis=0))
        if distinct > max_share * n:
            break
        best = k
    return best


def grouped_order(combos: np.ndarray, depth: int) -> np.ndarray:
    """Item order that puts items sharing a depth-`depth` prefix together (stable)."""
    if depth == 0:
        return np.arange(len(combos))
    return np.lexsort([np.arange(len(combos))] + [combos[:, k] for k in range(depth - 1, -1, -1)])


class Lookahead:
    """Next use of every trait after each batch, so eviction can pick the trait needed
    furthest in the future (Belady's rule is exact here: the plan is known)."""

    def __init__(self, batches: list[np.ndarray]):
        self.batches = batches  # each: array of global trait ids used by that batch
        self.uses: dict[int, list[int]] = {}
        for bi, ids in enumerate(batches):
            for t in np.unique(ids).tolist():
                self.uses.setdefault(t, []).append(bi)

    def next_use(self, trait: int, after: int) -> int:
        lst = self.uses.get(trait, [])
        i = int(np.searchsorted(lst, after, side="right"))
        return lst[i] if i < len(lst) else 1 << 60


class Residency:
    """Which traits are on the device, under a byte budget; decides uploads and evictions
    for each batch. Device-agnostic: `upload(t)` and `drop(t)` are callbacks."""

    def __init__(self, sizes: list[int], budget: int, lookahead: Lookahead, upload, drop):
        self.sizes, self.budget, self.look = sizes, budget, lookahead
        self.upload, self.drop = upload, drop
        self.resident: set[int] = set()
        self.used = 0
        self.hits = self.misses = self.bytes_moved = 0

    def ensure(self, batch: int) -> None:
        need = np.unique(self.look.batches[batch]).tolist()
        missing = [t for t in need if t not in self.resident]
        self.hits += len(need) - len(missing)
        want = sum(self.sizes[t] for t in need)
        if want > self.budget:
            raise MemoryError(f"batch {batch} needs {want} bytes of traits, budget is {self.budget}")
        for t in missing:
            while self.used + self.sizes[t] > self.budget:
                victims = [v for v in self.resident if v not in need]
                v = max(victims, key=lambda v: self.look.next_use(v, batch))
                self.drop(v)
                self.resident.discard(v)
                self.used -= self.sizes[v]
            self.upload(t)
            self.resident.add(t)
            self.used += self.sizes[t]
            self.misses += 1
            self.bytes_moved += self.sizes[t]
