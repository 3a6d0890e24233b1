"""Rules (never / always) and exact counts: contradictions, counting, sampling, distribution."""
import hashlib
import itertools
import math
import re

import numpy as np
import pytest

from gpucomp.errors import PlanError
from gpucomp.plan.rules import COUNT_LIMIT, Rule, check_rules, count_allowed
from gpucomp.plan.sampler import REJECT_SHARE, make_plan

from stats_helpers import Z, check_counts


def w(*values):
    return np.array(values, np.float64)


def never(a, b):
    return Rule("never", a, b)


def always(a, b):
    return Rule("always", a, b)


def breaks(rule, combo) -> bool:
    has_a = combo[rule.a[0]] == rule.a[1]
    has_b = combo[rule.b[0]] == rule.b[1]
    return has_a and has_b if rule.kind == "never" else has_a and not has_b


def brute_allowed(weights, rules, exact=None):
    """Every allowed combination, by checking the whole product one combination at a time."""
    exact = exact or {}

    def pickable(li, t):
        return exact[(li, t)] > 0 if (li, t) in exact else weights[li][t] > 0

    return [c for c in itertools.product(*[range(len(x)) for x in weights])
            if all(pickable(li, t) for li, t in enumerate(c)) and not any(breaks(r, c) for r in rules)]


def brute_law(weights, rules):
    """Allowed combinations and their probabilities under the product of weights, conditioned."""
    cells = brute_allowed(weights, rules)
    p = np.array([math.prod(weights[li][t] for li, t in enumerate(c)) for c in cells])
    return cells, p / p.sum()


def rows(plan):
    return [tuple(r) for r in plan.combos.tolist()]


def random_rules(rng, sizes, k):
    out = []
    for _ in range(k):
        la, lb = rng.integers(len(sizes), size=2)
        out.append(Rule(["never", "always"][int(rng.integers(2))], (int(la), int(rng.integers(sizes[la]))),
                        (int(lb), int(rng.integers(sizes[lb])))))
    return out


def rules_ok(weights, rules, exact=None) -> bool:
    try:
        check_rules(rules, [len(x) for x in weights], weights, exact=exact)
        return True
    except PlanError:
        return False


# --- contradictions -------------------------------------------------------------------------------

NAMES = (["Background", "Hat", "Eyes", "Mouth"],
         [["Red", "Blue", "Gold"], ["Cap", "Crown", "Halo", "Fez"], ["Open", "Shut"], ["Smile", "Frown", "Grin", "Flat"]])
W4 = [w(1, 2, 3), w(1, 1, 0, 2), w(5, 1), w(1, 1, 1, 1)]  # Hat/Halo has weight 0; 72 combinations
SIZES = [3, 4, 2, 4]
RED, BLUE, GOLD = (0, 0), (0, 1), (0, 2)
CAP, CROWN, HALO = (1, 0), (1, 1), (1, 2)
OPEN, SHUT = (2, 0), (2, 1)
SMILE, FROWN = (3, 0), (3, 1)


@pytest.mark.parametrize("rules, exact, message", [
    ([never(RED, RED)], None, 'rule "Background/Red" never with "Background/Red": '
                              'a trait never with itself could never be picked'),
    ([always(CAP, CROWN)], None, 'rule "Hat/Cap" always with "Hat/Crown": both traits are in layer "Hat" and an item has '
                                 'one trait per layer, so "Hat/Cap" could never be picked'),
    ([never(RED, CAP), always(CAP, RED)], None,
     'rules contradict each other: "Background/Red" never with "Hat/Cap", but also "Hat/Cap" always with "Background/Red"'),
    ([always(RED, CAP), always(RED, OPEN), always(CAP, SHUT)], None,
     '"Background/Red" can never be picked: it forces two traits of layer "Eyes" ("Background/Red" -> "Eyes/Open"; '
     '"Background/Red" -> "Hat/Cap" -> "Eyes/Shut")'),
    ([always(BLUE, CROWN), always(CROWN, SHUT), never(BLUE, SHUT)], None,
     '"Background/Blue" can never be picked: it forces "Background/Blue" -> "Hat/Crown" -> "Eyes/Shut", '
     'but "Background/Blue" never with "Eyes/Shut"'),
    ([always(GOLD, SHUT), always(SHUT, HALO)], None,
     '"Background/Gold" can never be picked: "Background/Gold" -> "Eyes/Shut" -> "Hat/Halo" forces "Hat/Halo", '
     'which has weight 0'),
    ([always(GOLD, SHUT)], {SHUT: 0},
     '"Background/Gold" can never be picked: "Background/Gold" -> "Eyes/Shut" forces "Eyes/Shut", which has exact count 0'),
    ([never(RED, OPEN), never(RED, SHUT)], None,
     '"Background/Red" can never be picked: every combination with it breaks a rule (rules on it: '
     '"Background/Red" never with "Eyes/Open"; "Background/Red" never with "Eyes/Shut")'),
    ([never((0, t), e) for t in range(3) for e in (OPEN, SHUT)], None,
     'the rules leave no pickable trait in layer "Background": no combination of layer "Background", layer "Eyes" '
     'satisfies them'),
    ([], {OPEN: 0, SHUT: 0}, 'layer "Eyes" has no trait that can be picked: every trait has weight 0 or exact count 0'),
    ([never((4, 0), RED)], None, "rule 1 (never) refers to layer 4, but there are only 4 layers (0-3)"),
    ([never(RED, CAP), always((1, 4), RED)], None, "rule 2 (always) refers to trait 4 of layer 1, which has only 4 traits"),
    ([], {(0, 3): 1}, "the exact count for (0, 3) refers to trait 3 of layer 0, which has only 3 traits"),
    ([], {RED: -1}, "the exact count for layer 0 trait 0 must be a whole number >= 0, got -1"),
])
def test_contradictions_are_explained_with_names(rules, exact, message):
    with pytest.raises(PlanError, match=re.escape(message)):
        check_rules(rules, SIZES, W4, NAMES, exact=exact)
    with pytest.raises(PlanError, match=re.escape(message)):
        make_plan(W4, 5, seed=0, rules=rules, exact=exact, names=NAMES)


def test_messages_without_names_use_indices():
    with pytest.raises(PlanError, match=re.escape("layer 0 trait 2 can never be picked: "
                                                  "layer 0 trait 2 -> layer 1 trait 2")):
        check_rules([always(GOLD, HALO)], SIZES, W4)


def test_rule_kind_and_shape_are_checked():
    with pytest.raises(PlanError, match="'never' or 'always'"):
        Rule("sometimes", RED, CAP)
    with pytest.raises(PlanError, match="pair of integers"):
        Rule("never", (0, 1.5), CAP)
    assert Rule("never", [np.int64(0), 1], CAP).a == (0, 1)
    plan = make_plan(W4, 10, seed=1, rules=[("never", RED, CAP)])  # plain tuples are accepted
    assert not any(c[0] == 0 and c[1] == 0 for c in rows(plan))


def test_vacuous_rules_are_accepted_and_change_nothing():
    vacuous = [never(HALO, RED), always(HALO, OPEN), never(RED, BLUE), always(RED, RED)]
    check_rules(vacuous, SIZES, W4, NAMES)
    assert count_allowed(W4, vacuous) == count_allowed(W4, []) == 72
    assert len(set(rows(make_plan(W4, 72, seed=0, rules=vacuous)))) == 72


# --- counting ---------------------------------------------------------------------------------------

def test_count_allowed_matches_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(300):
        sizes = [int(s) for s in rng.integers(1, 5, size=int(rng.integers(1, 5)))]
        weights = [np.where(rng.random(s) < 0.2, 0.0, rng.random(s) + 0.1) for s in sizes]
        rules = random_rules(rng, sizes, int(rng.integers(0, 6)))
        exact = {}
        if rng.random() < 0.4:
            li = int(rng.integers(len(sizes)))
            exact[(li, int(rng.integers(sizes[li])))] = int(rng.integers(0, 3))
        assert count_allowed(weights, rules, exact) == len(brute_allowed(weights, rules, exact)), (weights, rules, exact)


def test_free_layers_multiply_in():
    weights = [w(1, 1, 1)] * 2 + [w(1, 0, 1, 1, 1)] * 4  # two linked layers, four free ones
    assert count_allowed(weights, [never((0, 0), (1, 0))]) == 8 * 4**4


def test_counting_a_huge_component_is_refused_by_name():
    weights = [np.ones(300)] * 3 + [np.ones(2)]
    assert 300**3 > COUNT_LIMIT
    rules = [never((0, 0), (1, 0)), always((1, 1), (2, 1))]
    with pytest.raises(PlanError, match=r'link layer "A", layer "B", layer "C", whose 300 x 300 x 300 = 27,000,000 '
                                        r"combinations are too many to count"):
        count_allowed(weights, rules, names=(["A", "B", "C", "D"], None))
    with pytest.raises(PlanError, match="too many to count"):
        make_plan(weights, 10, seed=0, rules=rules)
    assert count_allowed(weights, [never((0, 0), (1, 0)), never((2, 0), (3, 0))]) == (300**2 - 1) * (600 - 1)


# --- plans under rules -------------------------------------------------------------------------------

def test_random_plans_never_break_rules_and_are_unique():
    rng = np.random.default_rng(11)
    done = 0
    while done < 150:
        sizes = [int(s) for s in rng.integers(2, 6, size=int(rng.integers(2, 6)))]
        weights = [np.where(rng.random(s) < 0.15, 0.0, rng.random(s) + 0.05) for s in sizes]
        rules = random_rules(rng, sizes, int(rng.integers(1, 7)))
        if len(sizes) >= 3:  # a forced chain a -> b -> c
            l0, l1, l2 = rng.choice(len(sizes), size=3, replace=False).tolist()
            rules += [always((l0, 0), (l1, 1)), always((l1, 1), (l2, 0))]
        if not rules_ok(weights, rules):
            continue
        allowed = brute_allowed(weights, rules)
        n = int(rng.integers(1, len(allowed) + 1))
        plan = make_plan(weights, n, seed=int(rng.integers(2**32)), rules=rules)
        got = rows(plan)
        assert plan.combos.dtype == np.int32 and len(got) == n and len(set(got)) == n
        assert set(got) <= set(allowed)
        done += 1


def test_large_plan_under_rules():
    weights = [np.arange(1.0, 21.0)] * 3 + [np.ones(10)] * 3
    rules = [never((0, i), (1, (3 * i) % 20)) for i in range(20)] + [always((1, i), (2, i)) for i in range(0, 20, 4)]
    rules += [always((2, 5), (0, 5))]
    plan = make_plan(weights, 100_000, seed=3, rules=rules)
    assert np.unique(plan.combos, axis=0).shape[0] == 100_000
    for r in rules:
        assert not any(breaks(r, c) for c in plan.combos[plan.combos[:, r.a[0]] == r.a[1]].tolist())


def test_n_equal_to_allowed_gives_every_allowed_combination_once():
    rules = [never(RED, CAP), always(GOLD, FROWN), always(FROWN, OPEN), never(CROWN, SHUT)]
    allowed = brute_allowed(W4, rules)
    assert count_allowed(W4, rules) == len(allowed) == 32
    plan = make_plan(W4, len(allowed), seed=5, rules=rules)
    assert sorted(rows(plan)) == sorted(allowed)


def test_too_many_items_states_the_allowed_count():
    rules = [never(RED, CAP), always(GOLD, FROWN), always(FROWN, OPEN), never(CROWN, SHUT)]
    with pytest.raises(PlanError, match=r"cannot make 33 unique items: the rules allow only 32 distinct combinations"):
        make_plan(W4, 33, seed=0, rules=rules)


@pytest.mark.parametrize("rules, exact, n", [
    ([never(RED, CAP), always(GOLD, FROWN)], None, 5),  # sampled
    ([never(RED, CAP), always(GOLD, FROWN)], None, 40),  # enumerated
    ([always(GOLD, FROWN)], {RED: 3, CAP: 4}, 12),
])
def test_same_seed_same_plan_other_seed_other_plan(rules, exact, n):
    a = make_plan(W4, n, seed=21, rules=rules, exact=exact).combos
    assert np.array_equal(a, make_plan(W4, n, seed=21, rules=rules, exact=exact).combos)
    assert not np.array_equal(a, make_plan(W4, n, seed=22, rules=rules, exact=exact).combos)


def test_plans_without_rules_or_exact_counts_are_unchanged():
    """Collections already rendered are resumed by re-planning and hashing: these digests were
    taken from make_plan before rules existed."""
    cases = [([w(*range(1, 11))] * 4, 50, 11, "d4002e0ebf4054e0a97ae4ec9fa90d3b924a464cc51ce88c1546b9883d465840"),
             ([w(1, 2, 3, 4), w(1, 5, 1)], 10, 11, "81ac19f2c5d15c4fcdf5a6c9560defac42b5e510a660182d9b6ded0aea13f19b"),
             ([w(1e9, *([1.0] * 999)), w(1, 1)], 1000, 3,
              "d188bbb598b6c94d948dc79abbf742c5dbbc1060f2a2460bc67b3cc10e8a39d8")]
    for weights, n, seed, digest in cases:
        for extra in ({}, {"rules": ()}, {"rules": [], "exact": {}}, {"exact": None, "names": NAMES}):
            combos = make_plan(weights, n, seed, **extra).combos
            assert hashlib.sha256(combos.tobytes()).hexdigest() == digest


RULED_GOLDEN = [  # (what it exercises, weights, n, seed, make_plan keywords, sha256 of the combos)
    ("rules, component drawn by rejection, a free layer",
     [w(1, 2, 3, 4, 5), w(2, 1, 0, 4), w(1, 1, 1), w(3, 1), w(1, 1, 2, 2, 3, 3)], 20, 5,
     dict(rules=[never((0, 0), (1, 1)), always((0, 2), (1, 3)), always((1, 3), (2, 0))]),
     "0498a788f7babeb4a8948cfbeccfab942e6e48b05ecbda01fe00040c8d1f102a"),
    ("rules, component drawn from its cdf (share < REJECT_SHARE)",
     [w(100, 1, 1, 1), w(1, 100, 1), w(1, 2, 3, 4), w(*range(1, 9))], 30, 6,
     dict(rules=[always((0, 0), (1, 0)), never((1, 1), (2, 1))]),
     "4b4ec1b1e52067da9bf1ac6a0c304f3250295835e487aa1ad0789fca988dfcef"),
    ("rules, n > allowed / 4: Gumbel top-k over every allowed combination",
     W4, 40, 7, dict(rules=[never(RED, CAP), always(GOLD, (3, 1))]),
     "f2494e3e781b59c39e0be4d3408ac6d0f24ff050b64d79aed853c397510719e2"),
    ("rules, drawing stalls on uneven weights and falls back to enumeration",
     [w(1e9, *([1.0] * 199)), w(1, 1, 1, 1, 1)], 200, 8, dict(rules=[never((0, 1), (1, 0))]),
     "078d1091b67db3a612ff272b04789ff39edde677fdd5377d6d7da0d774884a1b"),
    ("rules past 2**62 combinations (bytes keys)",
     [w(1e12, 1)] * 60 + [np.ones(45)] * 2, 1700, 11, dict(rules=[never((60, 0), (61, 0))]),
     "6160793156d0a38046856df5f142ff84f2987123d980e551d45aaf22b167682e"),
    ("exact counts (one overriding weight 0, one of 0) on two layers",
     [w(1, 2, 3, 4, 0), w(5, 1, 1, 2, 4), w(1, 1, 1), w(1, 2, 1, 2, 1, 2)], 60, 9,
     dict(exact={(0, 3): 20, (0, 4): 5, (1, 0): 0, (2, 1): 30}),
     "dbe4d3fa47103f5e15f4d17a618ea028148c8b673a0174103682ff540b2b501f"),
    ("exact counts whose first random class table breaks a cap: repaired by swaps",
     W4, 28, 2, dict(exact={(2, 1): 16, (3, 0): 17}),
     "28d938b23ef71883930a407e31c9978a41814943e47a47d75dc3b7fd779f5907"),
    ("exact counts with rules",
     [np.ones(6)] * 4, 200, 10,
     dict(rules=[always((0, 0), (1, 1)), never((1, 1), (3, 0)), always((2, 2), (3, 3))],
          exact={(0, 0): 15, (1, 1): 40, (2, 2): 20, (3, 3): 60}),
     "4def0a06e9d1a85e6138f5283a77c59eec78d7c8e0664d77da8af791e6d4c658"),
]


@pytest.mark.parametrize("what, weights, n, seed, kwargs, digest", RULED_GOLDEN, ids=[c[0] for c in RULED_GOLDEN])
def test_plans_with_rules_or_exact_counts_are_unchanged(what, weights, n, seed, kwargs, digest):
    """Golden digests, taken from the code that made the first collections with rules and exact
    counts. A collection is not stored as a list of items: its manifest keeps the seed and the
    plan's SHA-256, and `resume`, `extend` and `rerender` make the plan again from the seed and
    compare. Any change in how these plans use the generator (another draw order, one more
    draw, another fallback) therefore refuses every such collection already rendered (or, if
    the digest were not compared, would mix two collections in one folder): a compatibility
    break, which needs a new plan version in the manifest, not a new digest here.
    `names` only changes messages, so it must not change the plan either."""
    for extra in ({}, {"names": None}):
        combos = make_plan(weights, n, seed, **kwargs, **extra).combos
        assert combos.dtype == np.int32 and combos.shape == (n, len(weights))
        assert hashlib.sha256(combos.tobytes()).hexdigest() == digest


def test_the_golden_cases_take_the_paths_they_name():
    """Guards the list above: each case still reaches the sampler path it is there for."""
    reject, cdf, enum, stall = (RULED_GOLDEN[i] for i in range(4))
    assert share(reject[1][:4], reject[4]["rules"]) >= REJECT_SHARE
    assert share(cdf[1][:3], cdf[4]["rules"]) < REJECT_SHARE
    assert 4 * enum[2] > count_allowed(enum[1], enum[4]["rules"])
    assert 4 * stall[2] <= count_allowed(stall[1], stall[4]["rules"])  # drawn first, then enumerated
    assert math.prod(len(x) for x in RULED_GOLDEN[4][1]) >= 2**62


# --- distribution -------------------------------------------------------------------------------------

def share(weights, rules):
    """P(a product-of-weights draw is allowed)."""
    p = [x / x.sum() for x in weights]
    return sum(math.prod(p[li][t] for li, t in enumerate(c)) for c in brute_allowed(weights, rules))


@pytest.mark.parametrize("weights, rules, path", [
    ([w(1, 2, 3), w(2, 1, 0, 4), w(1, 1)], [never((0, 0), (1, 1)), always((0, 2), (1, 3)), always((1, 3), (2, 0))],
     "reject"),
    ([w(100, 1, 1), w(1, 100), w(1, 2)], [always((0, 0), (1, 0)), never((1, 1), (2, 1))], "cdf"),
])
def test_first_item_follows_the_conditioned_law(weights, rules, path):
    """n = 1 per seed: the item is one draw from the product of weights conditioned on the rules;
    over many seeds its frequencies match the brute-force law, for both ways a component is drawn."""
    assert (share(weights, rules) >= REJECT_SHARE) == (path == "reject")
    cells, p = brute_law(weights, rules)
    assert len(cells) > 4  # n * 4 <= allowed: not the enumeration path
    seeds = 2000
    counts = np.zeros(len(cells), np.int64)
    for seed in range(seeds):
        counts[cells.index(tuple(make_plan(weights, 1, seed=seed, rules=rules).combos[0]))] += 1
    check_counts(counts, p, seeds)


def test_enumeration_order_is_conditioned_sampling_without_replacement():
    weights = [w(1, 3, 6), w(2, 1, 1)]
    rules = [never((0, 2), (1, 0)), always((0, 0), (1, 1))]
    cells, p = brute_law(weights, rules)
    assert len(cells) == 6
    second = np.array([p[k] * sum(p[m] / (1 - p[m]) for m in range(len(p)) if m != k) for k in range(len(p))])
    seeds = 2000
    first_counts = np.zeros(len(cells), np.int64)
    second_counts = np.zeros(len(cells), np.int64)
    for seed in range(seeds):
        combos = make_plan(weights, 6, seed=seed, rules=rules).combos
        first_counts[cells.index(tuple(combos[0]))] += 1
        second_counts[cells.index(tuple(combos[1]))] += 1
    check_counts(first_counts, p, seeds)
    check_counts(second_counts, second, seeds)


MARGINAL = [w(1, 2, 3, 4, 10, 0), w(5, 0, 1, 1, 3, 10, 0.5), w(1, 1, 1, 1, 1, 1, 1, 8), w(*range(1, 9)),
            w(0.2, 0.3, 0.5, 1), w(2, 2, 2, 6, 0, 4), w(1, 9, 1, 9, 1, 9), w(3, 1, 2, 7, 1)]


@pytest.mark.parametrize("linked, rules, path", [
    (MARGINAL[:4], [never((0, 4), (1, 5)), always((1, 0), (2, 7)), always((2, 7), (3, 0)), never((0, 3), (3, 7))], "reject"),
    ([w(100, 1, 1, 1), w(1, 50, 1), w(1, 2, 3, 4), MARGINAL[3]],
     [always((0, 0), (1, 0)), always((1, 1), (2, 0)), never((0, 1), (2, 3)), never((2, 1), (3, 7))], "cdf"),
])
def test_marginals_follow_the_conditioned_distribution(linked, rules, path):
    """20,000 items out of ~1e12 allowed: repeats are negligible (bounded below), so each layer's
    counts are multinomial with the conditioned marginals, computed by brute force over the
    linked layers (0-3); the other 20 layers are free and keep their own weights."""
    weights = linked + MARGINAL[4:] + [x[::-1].copy() for x in MARGINAL] + MARGINAL
    assert (share(linked, rules) >= REJECT_SHARE) == (path == "reject")
    cells, p = brute_law(linked, rules)
    marginals = [np.bincount([c[li] for c in cells], weights=p, minlength=len(linked[li])) for li in range(4)]
    marginals += [x / x.sum() for x in weights[4:]]
    n = 20_000
    repeats = n * n / 2 * float((p**2).sum()) * math.prod(float((m**2).sum()) for m in marginals[4:])
    assert repeats < 1
    combos = make_plan(weights, n, seed=2024, rules=rules).combos
    assert np.unique(combos, axis=0).shape[0] == n
    for li, m in enumerate(marginals):
        check_counts(np.bincount(combos[:, li], minlength=len(m)), m, n)


# --- exact counts ---------------------------------------------------------------------------------------

def test_exact_counts_are_met_and_the_rest_follows_the_weights():
    """Layer 0: exactly 5000 of trait 3 and 1000 of trait 4 (weight 0: an exact count overrides the
    weight); the other 14000 follow weights 1:2:3. Layer 1's trait 0 (weight 5) is removed by an
    exact count of 0. The space is ~1e17, so uniqueness barely matters."""
    weights = [w(1, 2, 3, 4, 0), w(5, 1, 1, 2, 4)] + MARGINAL[1:] + [x[::-1].copy() for x in MARGINAL]
    exact = {(0, 3): 5000, (0, 4): 1000, (1, 0): 0}
    n = 20_000
    others = math.prod(float(((x / x.sum()) ** 2).sum()) for x in weights[1:])
    assert 14_000**2 / 2 * (1 + 4 + 9) / 36 * others < 1  # repeats among layer 0's "other" items are negligible
    combos = make_plan(weights, n, seed=9, exact=exact).combos
    assert np.unique(combos, axis=0).shape[0] == n
    c0 = np.bincount(combos[:, 0], minlength=5)
    assert c0[3] == 5000 and c0[4] == 1000
    at = np.flatnonzero(combos[:, 0] == 3)  # a uniformly random set of 5000 positions out of n
    sd = math.sqrt((n * n - 1) / 12 / 5000 * (n - 5000) / (n - 1))
    assert abs(at.mean() - (n - 1) / 2) <= Z * sd
    check_counts(c0[:3], w(1, 2, 3) / 6, 14_000)
    check_counts(np.bincount(combos[:, 1], minlength=5), w(0, 1, 1, 2, 4) / 8, n)
    for li, x in enumerate(weights[2:], start=2):
        check_counts(np.bincount(combos[:, li], minlength=len(x)), x / x.sum(), n)


def test_exact_counts_with_rules():
    weights = [np.ones(10)] * 5
    rules = [always((0, 0), (1, 1)), never((1, 1), (4, 0)), always((2, 2), (3, 3))]
    exact = {(0, 0): 500, (1, 1): 600, (2, 2): 800, (3, 3): 6000, (4, 1): 5000}
    combos = make_plan(weights, 50_000, seed=3, rules=rules, exact=exact).combos
    assert np.unique(combos, axis=0).shape[0] == 50_000
    for (li, t), q in exact.items():
        assert int((combos[:, li] == t).sum()) == q
    for r in rules:
        assert not any(breaks(r, c) for c in combos[combos[:, r.a[0]] == r.a[1]].tolist())
    assert not ((combos[:, 1] == 1) & (combos[:, 4] == 0)).any()
    assert (combos[combos[:, 0] == 0, 1] == 1).all() and (combos[combos[:, 2] == 2, 3] == 3).all()


def test_exact_counts_succeed_exactly_when_brute_force_finds_a_plan():
    """Tiny random cases: a plan is made iff some n-subset of the allowed combinations meets every
    exact count; made plans meet them, follow the rules and are unique; refusals are PlanErrors."""
    rng = np.random.default_rng(1)
    made = refused = 0
    for _ in range(700):
        sizes = [int(s) for s in rng.integers(2, 4, size=int(rng.integers(2, 4)))]
        weights = [np.where(rng.random(s) < 0.15, 0.0, rng.integers(1, 5, s).astype(float)) for s in sizes]
        rules = random_rules(rng, sizes, int(rng.integers(0, 3)))
        exact = {}
        for _ in range(int(rng.integers(1, 4))):
            li = int(rng.integers(len(sizes)))
            exact[(li, int(rng.integers(sizes[li])))] = int(rng.integers(0, 6))
        if not rules_ok(weights, rules, exact):
            continue
        allowed = brute_allowed(weights, rules, exact)
        n = int(rng.integers(1, min(len(allowed), 8) + 1))
        if math.comb(len(allowed), n) > 50_000:
            continue
        feasible = any(all(sum(c[li] == t for c in sub) == q for (li, t), q in exact.items())
                       for sub in itertools.combinations(allowed, n))
        seed = int(rng.integers(2**32))
        if feasible:
            got = rows(make_plan(weights, n, seed=seed, rules=rules, exact=exact))
            assert len(set(got)) == n and set(got) <= set(allowed)
            assert all(sum(c[li] == t for c in got) == q for (li, t), q in exact.items())
            made += 1
        else:
            with pytest.raises(PlanError):
                make_plan(weights, n, seed=seed, rules=rules, exact=exact)
            refused += 1
    assert made > 100 and refused > 100


@pytest.mark.parametrize("rules, exact, n, message", [
    ([], {RED: 5, BLUE: 6}, 10,
     'the exact counts in layer "Background" add up to 11 ("Background/Red": 5, "Background/Blue": 6), '
     'more than the 10 items'),
    ([], {OPEN: 3, SHUT: 4}, 10,
     'every trait of layer "Eyes" that can be picked has an exact count, and they add up to 7 ("Eyes/Open": 3, '
     '"Eyes/Shut": 4), not to the 10 items'),
    ([never(RED, OPEN)], {RED: 13}, 20,
     '"Background/Red" is asked for 13 items, but the rules allow only 12 distinct combinations with it'),
    ([always(RED, SMILE)], {RED: 5, SMILE: 4}, 20,
     '"Background/Red" -> "Mouth/Smile": every item with "Background/Red" has "Mouth/Smile", but "Background/Red" '
     'is asked for 5 items and "Mouth/Smile" for only 4'),
    ([always(RED, CAP), always(CAP, SMILE)], {RED: 5, SMILE: 4}, 20,
     '"Background/Red" -> "Hat/Cap" -> "Mouth/Smile": every item with "Background/Red" has "Mouth/Smile"'),
    ([never(RED, SMILE)], {RED: 6, SMILE: 5}, 10,
     '"Background/Red" and "Mouth/Smile" can never be in the same item ("Background/Red" never with "Mouth/Smile"), '
     'but they are asked for 6 + 5 = 11 items, more than the 10 items'),
    ([always(RED, FROWN)], {RED: 5, SMILE: 8}, 10,
     'every item with "Background/Red" has "Mouth/Frown", but "Background/Red" is asked for 5 items and the exact '
     'counts in layer "Mouth" leave only 2 items for its other traits'),
    ([], {RED: 1}, 60,
     'the exact counts in layer "Background" leave 59 items for its other traits, but there are only 48 distinct '
     'combinations with one of them'),
    ([], {CROWN: 24, OPEN: 30, SHUT: 10}, 40,
     'cannot meet the exact counts together: after 8 tries, the items with "Hat/Crown" + "Eyes/'),
])
def test_infeasible_exact_counts_are_explained(rules, exact, n, message):
    with pytest.raises(PlanError, match=re.escape(message)):
        make_plan(W4, n, seed=0, rules=rules, exact=exact, names=NAMES)


def test_exact_count_for_a_weight_zero_trait_and_zero_count_for_a_weighted_one():
    plan = make_plan(W4, 30, seed=4, exact={HALO: 7, GOLD: 0}, rules=[always(HALO, SHUT)], names=NAMES)
    got = plan.combos
    assert int((got[:, 1] == 2).sum()) == 7 and not (got[:, 0] == 2).any()
    assert (got[got[:, 1] == 2, 2] == 1).all()
    assert count_allowed(W4, [always(HALO, SHUT)], {HALO: 7, GOLD: 0}) == 2 * 4 * 2 * 4 - 2 * 1 * 1 * 4


def test_a_forced_trait_may_have_exactly_as_many_items_as_the_trait_forcing_it():
    """"Red" always with "Smile" (directly, or through "Cap"), both asked for as many items:
    feasible (the Smiles are the Reds), the boundary of the refusal above (5 asked, only 4)."""
    for rules, count in (([always(RED, SMILE)], 5), ([always(RED, CAP), always(CAP, SMILE)], 2)):
        combos = make_plan(W4, 20, seed=3, rules=rules, exact={RED: count, SMILE: count}, names=NAMES).combos
        red, smile = combos[:, 0] == 0, combos[:, 3] == 0
        assert red.sum() == smile.sum() == count and (red == smile).all()
        assert np.unique(combos, axis=0).shape[0] == 20
