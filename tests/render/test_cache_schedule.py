"""Cache, scheduling and residency logic on the CPU, with NumPy arrays standing in for device arrays."""
import numpy as np
import pytest

from gpucomp.plan.sampler import make_plan
from gpucomp.render.cache import PrefixCache
from gpucomp.render.schedule import Lookahead, Residency, grouped_order, prefix_depth


def test_cache_hits_misses_and_budget():
    c = PrefixCache(budget=3 * 16, entry_bytes=16, alloc=lambda nb: np.zeros(nb // 4, np.float32))
    assert c.capacity == 3
    assert c.get(("a",)) is None
    a = c.put(("a",))
    a[:] = 7
    assert c.get(("a",)) is a and c.get(("a",)) is a
    c.put(("b",))
    c.put(("c",))
    c.get(("c",))
    c.put(("d",))  # evicts the least used, least recent: b (0 uses)
    assert ("b",) not in c and ("a",) in c and ("c",) in c and ("d",) in c
    s = c.stats.as_dict()
    assert s["hits"] == 3 and s["misses"] == 1 and s["evictions"] == 1
    assert s["bytes"] == 48 and s["peak_bytes"] == 48


def test_cache_respects_pinned_keys_and_zero_capacity():
    c = PrefixCache(budget=2 * 8, entry_bytes=8, alloc=lambda nb: np.zeros(nb, np.uint8))
    c.put(1)
    c.put(2)
    assert c.put(3, pinned=frozenset({1, 2})) is None
    assert len(c) == 2
    tiny = PrefixCache(budget=4, entry_bytes=8, alloc=lambda nb: np.zeros(nb, np.uint8))
    assert tiny.put(1) is None


def test_grouped_order_groups_prefixes_and_is_a_permutation():
    plan = make_plan([np.ones(3), np.ones(4), np.ones(5)], 50, seed=2)
    order = grouped_order(plan.combos, 2)
    assert sorted(order.tolist()) == list(range(50))
    keys = [tuple(plan.combos[i, :2]) for i in order]
    seen, last = set(), None
    for k in keys:  # each prefix appears as one contiguous run
        if k != last:
            assert k not in seen
            seen.add(k)
        last = k


def test_prefix_depth_limits_distinct_prefixes():
    combos = np.array([[0, i % 2, i] for i in range(40)])
    assert prefix_depth(combos, max_share=0.25) == 2
    assert prefix_depth(np.array([[i, 0] for i in range(10)]), max_share=0.25) == 0


def test_residency_uses_exact_lookahead_and_respects_budget():
    sizes = [10] * 6
    batches = [np.array([0, 1]), np.array([2, 3]), np.array([0, 1]), np.array([4, 5]), np.array([2, 3])]
    log = []
    r = Residency(sizes, 40, Lookahead(batches), lambda t: log.append(("up", t)), lambda t: log.append(("drop", t)))
    for b in range(len(batches)):
        r.ensure(b)
        assert set(batches[b].tolist()) <= r.resident
        assert r.used <= 40
    # batch 3 needs 4, 5: must evict 0 and 1 (never used again), keeping 2, 3 (used in batch 4)
    assert ("drop", 0) in log and ("drop", 1) in log and ("drop", 2) not in log
    assert r.misses == 6 and r.hits == 4 and r.bytes_moved == 60


def test_residency_refuses_a_batch_larger_than_budget():
    r = Residency([30, 30], 40, Lookahead([np.array([0, 1])]), lambda t: None, lambda t: None)
    with pytest.raises(MemoryError):
        r.ensure(0)
