"""The combination cache: accumulators of layer-stack prefixes, keyed by the prefix's
trait ids, under a byte budget, with LRU + frequency eviction.

Array-module agnostic: `alloc(nbytes)` makes the buffers, so the same code runs with
NumPy arrays in CPU tests and CuPy arrays on the GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable


@dataclass
class _Entry:
    buf: object
    uses: int = 0
    last: int = 0


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    bytes: int = 0
    peak_bytes: int = 0

    def as_dict(self) -> dict:
        total = self.hits + self.misses
        return {"hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                "bytes": self.bytes, "peak_bytes": self.peak_bytes,
                "hit_rate": self.hits / total if total else 0.0}


@dataclass
class PrefixCache:
    budget: int  # bytes
    entry_bytes: int
    alloc: Callable[[int], object]
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self):
        self._entries: dict[Hashable, _Entry] = {}
        self._clock = 0

    @property
    def capacity(self) -> int:
        return self.budget // self.entry_bytes if self.entry_bytes else 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def get(self, key):
        """The buffer for `key` (a hit), or None (a miss)."""
        self._clock += 1
        e = self._entries.get(key)
        if e is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        e.uses += 1
        e.last = self._clock
        return e.buf

    def put(self, key, pinned: frozenset = frozenset()):
        """Make room (never evicting keys in `pinned`) and return a new buffer for `key`,
        or None when the budget cannot hold one more entry."""
        if self.capacity < 1:
            return None
        while len(self._entries) >= self.capacity:
            victims = [(e.uses, e.last, k) for k, e in self._entries.items() if k not in pinned]
            if not victims:
                return None
            _, _, k = min(victims, key=lambda v: (v[0], v[1]))
            self.evict(k)
        buf = self.alloc(self.entry_bytes)
        self._clock += 1
        self._entries[key] = _Entry(buf, 0, self._clock)
        self.stats.bytes += self.entry_bytes
        self.stats.peak_bytes = max(self.stats.peak_bytes, self.stats.bytes)
        return buf

    def evict(self, key) -> None:
        self._entries.pop(key)
        self.stats.evictions += 1
        self.stats.bytes -= self.entry_bytes

    def clear(self) -> None:
        for k in list(self._entries):
            self.evict(k)
