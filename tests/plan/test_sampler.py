"""Planning N unique weighted combinations: uniqueness, limits, determinism, distribution."""
import hashlib
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpucomp.plan.sampler as plan_module
from gpucomp.errors import PlanError
from gpucomp.plan.rules import Rule
from gpucomp.plan.sampler import (
    ENUMERATE_LIMIT,
    _reject,
    _unique_rows,
    _unique_rows_bytes,
    count_combinations,
    dna,
    make_plan,
)

from stats_helpers import check_counts


def w(*values):
    return np.array(values, np.float64)


def rows(plan):
    return {tuple(r) for r in plan.combos.tolist()}


def test_n_equal_to_total_gives_every_combination_once():
    weights = [w(1, 2, 3), w(1, 1), w(5, 0, 1, 1)]
    assert count_combinations(weights) == 18
    plan = make_plan(weights, 18, seed=4)
    assert plan.combos.shape == (18, 3) and plan.combos.dtype == np.int32
    assert rows(plan) == set(itertools.product(range(3), range(2), [0, 2, 3]))


def test_too_many_items_states_the_total():
    weights = [w(1, 2, 3), w(1, 1), w(5, 0, 1, 1)]
    with pytest.raises(PlanError, match=r"19 unique items.*only 18 distinct.*3 x 2 x 3"):
        make_plan(weights, 19, seed=0)
    with pytest.raises(PlanError, match="at least 1"):
        make_plan(weights, 0, seed=0)


def test_numbering_starts_at_start():
    plan = make_plan([w(1, 1, 1)], 3, seed=0, start=7)
    assert len(plan) == 3 and [plan.number(i) for i in range(3)] == [7, 8, 9]


@pytest.mark.parametrize("weights, n", [
    ([w(*range(1, 11))] * 4, 50),  # rejection path: n is a small share of 10_000
    ([w(1, 2, 3, 4), w(1, 5, 1)], 10),  # enumeration path: n > total / 4
    ([w(1, 2, 3, 4), w(1, 5, 1)], 12),  # n == total: only the order is random
])
def test_same_seed_same_plan_other_seed_other_plan(weights, n):
    a = make_plan(weights, n, seed=11).combos
    b = make_plan(weights, n, seed=11).combos
    c = make_plan(weights, n, seed=12).combos
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len(rows(make_plan(weights, n, seed=12))) == n


def test_large_plan_runs_and_is_unique():
    weights = [w(*range(1, 11))] * 6  # 10**6 combinations
    plan = make_plan(weights, 100_000, seed=1)
    assert plan.combos.shape == (100_000, 6)
    assert np.unique(plan.combos, axis=0).shape[0] == 100_000
    assert plan.combos.min() >= 0 and plan.combos.max() <= 9


def test_uneven_weights_fall_back_to_enumeration():
    skewed = w(1e9, *([1.0] * 999))
    plan = make_plan([skewed, w(1, 1)], 1000, seed=3)  # 2000 combinations, rejection stalls
    assert len(rows(plan)) == 1000


def test_uneven_weights_too_many_to_enumerate():
    skewed = w(1e12, *([1.0] * 199))
    with pytest.raises(PlanError, match="uneven"):
        make_plan([skewed] * 3, 10_000, seed=3)  # 8e6 > ENUMERATE_LIMIT combinations
    assert 200**3 > ENUMERATE_LIMIT


class _TopRng:
    """A generator whose every draw is the largest double below 1."""

    def random(self, size):
        return np.full(size, np.nextafter(1.0, 0.0))


def test_draw_at_the_top_never_picks_a_trailing_zero_weight():
    probs = [w(1, 1, 1, 1, 1, 1, 1, 0) / 7]
    assert np.cumsum(probs[0])[-1] <= np.nextafter(1.0, 0.0)  # the cdf ends below every draw
    out = _reject(probs, 1, 7, _TopRng())
    assert out.tolist() == [[6]]


def test_dna_is_sha1_of_indexed_names():
    assert dna(["Red", "Hat"]) == hashlib.sha1(b"0:Red-1:Hat").hexdigest()
    assert dna(["Red", "Hat"]) != dna(["Hat", "Red"])


# --- uniqueness across draw rounds -----------------------------------------------------------------
#
# The sampler draws in rounds; a row of a later round must be checked against every row kept
# in earlier rounds, not only against its own round. Random inputs rarely need a second round,
# so these inputs are chosen to need several, and the rounds are counted to prove it.

def scripted(rounds):
    """A `draw(size)` that returns the given rounds in order, whatever size is asked."""
    it = iter(rounds)
    return lambda size: np.asarray(next(it), np.int32)


def cells(keys, sizes=(10, 10)):
    """Rows (a, b) for the mixed-radix keys a + 10 * b."""
    return [[k % sizes[0], k // sizes[0]] for k in keys]


@pytest.mark.parametrize("unique_rows", ["int64 keys", "bytes keys"])
def test_a_later_round_never_repeats_a_row_kept_in_an_earlier_round(unique_rows):
    """Round 1 holds 20 distinct rows (repeated to 1024 draws), too few for n = 30; round 2
    starts with those same 20 rows and only then brings 15 new ones. Without the check against
    earlier rounds the first 10 rows of round 2, all repeats, would be taken."""
    first = cells(list(range(20)) * 52)[:1024]
    second = cells(list(range(20)) + list(range(20, 35)) + [0] * 989)
    if unique_rows == "int64 keys":
        out = _unique_rows(scripted([first, second]), 30, [10, 10], 100)
    else:
        out = _unique_rows_bytes(scripted([first, second]), 30, [10, 10])
    assert out.tolist() == cells(range(30))  # first occurrences, in draw order


def test_a_row_repeated_inside_a_later_round_is_kept_once():
    first = cells(list(range(20)) * 52)[:1024]
    second = cells([25, 25, 3, 26, 25] + [26] * 1019)
    out = _unique_rows(scripted([first, second]), 22, [10, 10], 100)
    assert out.tolist() == cells(list(range(20)) + [25, 26])


class Rounds:
    """Counts the draw rounds of plan._unique_rows / _unique_rows_bytes (monkeypatched in)."""

    def __init__(self, monkeypatch):
        self.counts = []
        for name in ("_unique_rows", "_unique_rows_bytes"):
            monkeypatch.setattr(plan_module, name, self.wrap(getattr(plan_module, name)))

    def wrap(self, f):
        def counted(draw, n, *args):
            k = len(self.counts)
            self.counts.append(0)

            def counting(size):
                self.counts[k] += 1
                return draw(size)

            return f(counting, n, *args)
        return counted


HEAVY = w(50, *([1.0] * 99))  # trait 0 is a third of the draws: 2n draws give fewer than n distinct rows


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", ["plain", "rules", "past int64"])
def test_plans_that_need_several_draw_rounds_stay_unique(monkeypatch, case, seed):
    """Public make_plan on inputs where the first round cannot find n distinct rows: every path
    through the round loop (int64 keys, under rules, bytes keys past 2**62 combinations).
    With earlier rounds unchecked each of these plans holds about 100 repeats."""
    rounds = Rounds(monkeypatch)
    if case == "plain":
        weights, n, kwargs = [HEAVY, HEAVY], 2000, {}
    elif case == "rules":
        weights, n, kwargs = [HEAVY, HEAVY], 2000, {"rules": [Rule("never", (0, 1), (1, 1))]}
    else:  # 60 layers that (almost) never change and 45 x 45 cells: 2**60 * 2025 combinations
        weights, n, kwargs = [w(1e12, 1)] * 60 + [np.ones(45)] * 2, 1700, {}
        assert count_combinations(weights) >= 2**62
    combos = make_plan(weights, n, seed=seed, **kwargs).combos
    assert rounds.counts and rounds.counts[0] >= 2  # the case really needs a second round
    assert combos.shape == (n, len(weights))
    assert np.unique(combos, axis=0).shape[0] == n


PLAIN_GOLDEN = [  # (what it exercises, weights, n, seed, sha256 of the combos)
    ("enumerated: total / 4 < n <= total / 2", [w(1, 2, 3, 4), w(1, 5, 1), w(2, 1)], 8, 3,
     "df242236d559598970d42cc00b33b10436ecdfd08d1d8bc8e24d3064fb75876d"),
    ("drawn in rounds, a late round brings only a few % new rows", [w(400, *([1.0] * 99))] * 2, 1500, 0,
     "9aaf445efa0d4a664e2eadd9520625b29c3c28a3faa54a6c20973eb609335ac2"),
    ("past 2**62 combinations: bytes keys", [w(1e12, 1)] * 60 + [np.ones(45)] * 2, 1700, 11,
     "535c95de47aa1ecdf8b2beed9ba137a1e43d2990aad2524cf90c69f73b4739d2"),
]


@pytest.mark.parametrize("what, weights, n, seed, digest", PLAIN_GOLDEN, ids=[c[0] for c in PLAIN_GOLDEN])
def test_plans_near_the_sampler_thresholds_are_unchanged(what, weights, n, seed, digest):
    """Golden digests for what the digests in test_rules.py (taken before rules existed) do not
    reach: the enumeration threshold, the stall threshold and the bytes-key path. A collection is
    resumed by planning it again from its seed and comparing the plan's hash, so moving a
    threshold or changing a path refuses collections already rendered: a compatibility break."""
    combos = make_plan(weights, n, seed=seed).combos
    assert hashlib.sha256(combos.tobytes()).hexdigest() == digest


# --- distribution ---------------------------------------------------------------------------------

MARGINAL_WEIGHTS = [w(1, 2, 3, 4, 10, 0), w(5, 0, 1, 1, 3, 10, 0.5), w(1, 1, 1, 1, 1, 1, 1, 8),
                    w(*range(1, 9)), w(0.2, 0.3, 0.5, 1), w(2, 2, 2, 6, 0, 4), w(1, 9, 1, 9, 1, 9), w(3, 1, 2, 7, 1)]


def test_marginal_frequencies_follow_the_weights():
    """Rejection path (16 layers, 1.3e12 combinations). Rejected repeats are the only departure
    from n independent draws; their expected number is at most n^2/2 * sum_c p_c^2 =
    n^2/2 * prod_l sum_i p_li^2, checked below to be under 1, so each layer's counts are
    multinomial(n, p) up to about one item, well inside the Z-sd bounds."""
    weights = MARGINAL_WEIGHTS + [x[::-1].copy() for x in MARGINAL_WEIGHTS]
    probs = [x / x.sum() for x in weights]
    n = 20_000
    assert count_combinations(weights) > ENUMERATE_LIMIT
    assert n * n / 2 * math.prod(float((p**2).sum()) for p in probs) < 1
    combos = make_plan(weights, n, seed=2024).combos
    assert len(rows(make_plan(weights, n, seed=2024))) == n
    for li, p in enumerate(probs):
        check_counts(np.bincount(combos[:, li], minlength=len(p)), p, n)


def test_enumeration_draw_order_is_weighted_sampling_without_replacement():
    """Enumeration path (n == total): the first row of a plan is a weighted draw, the second a
    weighted draw from what is left. Over many seeds their frequencies match the exact laws."""
    w0, w1 = w(1, 3, 0, 6), w(2, 1, 1)
    cells = [(i, j) for i in range(4) for j in range(3)]
    p = np.array([w0[i] * w1[j] for i, j in cells]) / (w0.sum() * w1.sum())
    second = np.array([p[k] * sum(p[m] / (1 - p[m]) for m in range(len(p)) if m != k) for k in range(len(p))])
    assert math.isclose(second.sum(), 1.0)
    seeds = 3000
    first_counts = np.zeros(len(cells), np.int64)
    second_counts = np.zeros(len(cells), np.int64)
    for seed in range(seeds):
        combos = make_plan([w0, w1], 9, seed=seed).combos
        first_counts[cells.index(tuple(combos[0]))] += 1
        second_counts[cells.index(tuple(combos[1]))] += 1
    check_counts(first_counts, p, seeds)
    check_counts(second_counts, second, seeds)


# --- property ---------------------------------------------------------------------------------------

weight = st.one_of(st.integers(0, 20).map(float), st.floats(0.01, 100.0))
layer = st.lists(weight, min_size=1, max_size=5).filter(lambda ws: any(x > 0 for x in ws))


@st.composite
def plans(draw):
    weights = [np.array(ws) for ws in draw(st.lists(layer, min_size=1, max_size=4))]
    total = count_combinations(weights)
    return weights, draw(st.integers(1, total)), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=150, deadline=None, database=None)
@given(plans())
def test_property_unique_valid_rows_without_zero_weights(case):
    weights, n, seed = case
    combos = make_plan(weights, n, seed=seed).combos
    assert combos.shape == (n, len(weights))
    assert len({tuple(r) for r in combos.tolist()}) == n
    for li, ws in enumerate(weights):
        col = combos[:, li]
        assert ((col >= 0) & (col < len(ws))).all()
        assert (ws[col] > 0).all()
