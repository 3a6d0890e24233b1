"""OpenRarity score and rank: OpenRarity's own published test vectors (written down here as
fixtures from its repository's tests, OpenRarity/open-rarity v0.7.5), its definition's corner
cases, and the reports of a generated collection against its metadata files."""
import csv
import json

import numpy as np
import pytest

import gpucomp
from gpucomp.metadata.openrarity import Column, from_dicts, rank, score


def ranked(items):
    """[(item index, score, unique traits, rank)] in rank order, as the reference lists them."""
    r = score(*from_dicts(items))
    order = sorted(range(len(items)), key=lambda i: (r.ranks[i], i))
    return [(i, float(r.scores[i]), int(r.unique[i]), int(r.ranks[i])) for i in order], r


def traits(*rows):
    return [{f"trait{k + 1}": f"value{v}" for k, v in enumerate(row) if v is not None} for row in rows]


# tests/test_rarity_ranker.py::TestRarityRanker::test_rarity_ranker_same_scores (scores asserted with ==)
def test_same_scores_share_a_rank_and_the_next_skips():
    got, _ = ranked(traits((1, 1, 1), (1, 1, 1), (2, 1, 3), (2, 2, 3), (3, 3, 3)))
    assert got == [(4, 1.3926137488801251, 2, 1),
                   (3, 1.1338031424711967, 1, 2),
                   (0, 0.8749925360622679, 0, 3),
                   (1, 0.8749925360622679, 0, 3),
                   (2, 0.7235980365241422, 0, 5)]


# ...::test_rarity_ranker_equal_score_and_unique_trait: trait4 and trait_count "4" make token 3 unique twice
def test_equal_score_and_unique_trait():
    got, _ = ranked(traits((1, 1, 2), (1, 2, 2), (1, 2, 3), (1, 2, 2, 1)))
    assert [(i, u, k) for i, _, u, k in got] == [(3, 2, 1), (0, 1, 2), (2, 1, 2), (1, 0, 4)]
    assert got[1][1] == got[2][1] == 1.0000000000000002  # the reference's float, bit for bit


# ...::test_rarity_ranker_unique_scores: more unique traits rank first
def test_unique_scores():
    got, _ = ranked(traits((1, 1, 2), (1, 2, 2), (1, 2, 3), (1, 4, 2, 1)))
    assert [(i, u, k) for i, _, u, k in got] == [(3, 3, 1), (2, 1, 2), (0, 1, 3), (1, 0, 4)]


# ...::test_set_ranks_same_unique_different_ic_score: ids 1..4 with (unique, score) given
def test_set_ranks_unique_first_and_equal_scores_share_regardless_of_unique():
    ranks = rank(np.array([1.5, 1.5, 0.2, 7.0]), np.array([1, 2, 3, 0]))
    assert ranks.tolist() == [2, 2, 1, 4]  # order 3, 2, 1, 4


# ...::test_rarity_ranker_one_item
def test_one_item_scores_zero_rank_one():
    got, r = ranked(traits((1,)))
    assert got[0][1] == 0 and got[0][3] == 1
    assert str(got[0][1]) == "0.0"  # not -0.0, which the CSV would print as "-0.0000000000"


# tests/scoring/test_scoring_handlers.py::test_information_content_null_value_attribute
NULLS = [dict(bottom="spec", hat="spec", special="true"), dict(bottom="1", hat="1", special="true"),
         dict(bottom="1", hat="1"), dict(bottom="2", hat="2"), dict(bottom="2", hat="2"), dict(bottom="3", hat="2")]


def test_missing_trait_is_null_with_its_own_count():
    r = score(*from_dicts(NULLS))
    s = r.scores
    assert s[0] > s[1] > s[2] and s[5] > s[2] and s[2] > s[3] and s[3] == s[4]  # the reference's asserts
    # its entropy: the spread of every trait plus special's null entry and the meta-trait
    spread = [[1, 2, 2, 1], [1, 2, 3], [2, 4], [4, 2]]  # bottom, hat, special {true, null}, trait_count {2, 3}
    p = np.array([c / 6 for counts in spread for c in counts])
    assert r.entropy == pytest.approx(-(p * np.log2(p)).sum(), rel=1e-12)
    np.testing.assert_allclose(s, [1.5995, 1.2159, 0.8323, 0.7201, 0.7201, 0.9119], atol=5e-5)
    assert r.ranks.tolist() == [1, 3, 4, 5, 5, 2]  # token 5 (the only bottom "3") ranks second


# ...::test_information_content_empty_attribute: "none" for a missing trait scores the same as leaving it out
def test_none_value_scores_like_a_missing_trait():
    spelled = [dict(d, special=d.get("special", "None")) for d in NULLS]
    a, b = score(*from_dicts(NULLS)), score(*from_dicts(spelled))
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-12)
    assert a.ranks.tolist() == b.ranks.tolist()


# ...::test_information_content_rarity_uniform
def test_uniform_collection_scores_one():
    rng = np.random.default_rng(0)
    cols = [Column(f"t{k}", [f"v{i}" for i in range(10)], rng.permutation(np.tile(np.arange(10), 1000)))
            for k in range(5)]
    r = score(cols, 10_000)
    np.testing.assert_allclose(r.scores, 1.0, rtol=1e-12)
    assert set(r.ranks.tolist()) == {1}


def test_names_and_values_are_lower_cased_and_stripped():
    a = score(*from_dicts([{"Hat": "Red "}, {"Hat": "red"}, {"Hat": "Blue"}]))
    b = score(*from_dicts([{"hat": "red"}, {"hat": "red"}, {"hat": "blue"}]))
    assert a.scores.tolist() == b.scores.tolist() and a.unique.tolist() == [0, 0, 1]


def test_numeric_traits_count_in_trait_count_but_are_not_scored():
    base = [{"a": "x"}, {"a": "x"}, {"a": "y"}]
    with_level = [{"a": "x", "level": 7}, {"a": "x"}, {"a": "y", "level": 9}]
    plain, numeric = score(*from_dicts(base)), score(*from_dicts(with_level))
    # item 1 alone has trait_count 1: that, not the level's value, makes it rarer than item 0
    assert plain.scores[0] == plain.scores[1]
    assert numeric.scores[1] > numeric.scores[0]
    assert numeric.unique.tolist() == [0, 1, 1]


def test_a_later_attribute_of_the_same_name_replaces_the_earlier():
    cols = [Column("Hat", ["a", "b"], np.array([0, 1, 0])), Column("hat", ["c"], np.array([-1, -1, 0]))]
    same = score(*from_dicts([{"hat": "a"}, {"hat": "b"}, {"hat": "c"}]))
    assert score(cols, 3).scores.tolist() == same.scores.tolist()


def test_no_items():
    r = score([], 0)
    assert r.scores.shape == r.ranks.shape == (0,)


# --- the reports of a generated collection ----------------------------------------------------

TOML = """
[collection]
seed = 5
shuffle = true
[[stacks]]
size = 7
layers = ["01-Background", {folder = "02-Body", metadata = false}]
[[stacks]]
size = 9
layers = ["01-Background", "02-Body", "03-Clothes", {folder = "04-Eyes", none = "Blue Ring"}]
"""


def test_reports_rank_what_the_metadata_states(demo_layers, tmp_path):
    (tmp_path / "c.toml").write_text(TOML, encoding="utf-8")
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, tmp_path / "c.toml")
    metas = json.loads((out / "_metadata.json").read_text(encoding="utf-8"))
    metas.sort(key=lambda m: m["edition"])
    want = score(*from_dicts([{a["trait_type"]: a["value"] for a in m["attributes"]} for m in metas]))
    assert any("Eyes" not in {a["trait_type"] for a in m["attributes"]} for m in metas[7:])  # some nulls

    with open(out / "rarity.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    assert header[:4] == ["number", "rank", "score", "log_rarity"]  # the existing columns stay where they were
    assert header[-3:] == ["openrarity_rank", "openrarity_score", "openrarity_unique_traits"]
    body = rows[1:]
    assert [int(r[0]) for r in body] == [m["edition"] for m in metas]
    assert [int(r[-3]) for r in body] == want.ranks.tolist()
    assert [int(r[-1]) for r in body] == want.unique.tolist()
    np.testing.assert_allclose([float(r[-2]) for r in body], want.scores, atol=1e-10)

    report = json.loads((out / "rarity.json").read_text(encoding="utf-8"))
    section = report["openrarity"]
    assert [r["openrarity_rank"] for r in section["rarest"]] == sorted(want.ranks.tolist())[:10]
    assert all("openrarity_rank" in r for r in report["summary"]["rarest"])
    assert "rarest items by OpenRarity" in (out / "rarity.txt").read_text(encoding="utf-8")


def test_a_layer_named_like_an_openrarity_column_is_renamed():
    from gpucomp.metadata.rarity import csv_header

    assert csv_header(["openrarity_rank", "Hat"])[4:] == ["openrarity_rank (2)", "Hat"]
