"""Rarity report: trait table against the weights, per-item scores and ranks, output files."""
import csv
import json
import math

import numpy as np
import pytest

from gpucomp._shared.files import TMP_PREFIX
from gpucomp.metadata.rarity import (
    build_report,
    csv_header,
    item_log_rarity,
    item_scores,
    summary_lines,
    trait_table,
    write_report,
)
from gpucomp.plan.sampler import make_plan


def w(*values):
    return np.array(values, np.float64)


# 3 items x 2 layers. Layer A: t0 twice, t1 once. Layer B: t0 once, t1 twice.
SMALL = np.array([[0, 0], [0, 1], [1, 1]], np.int32)
SMALL_LAYERS = ["A", "B"]
SMALL_TRAITS = [["a0", "a1"], ["b0", "b1"]]
SMALL_WEIGHTS = [w(2, 1), w(1, 2)]


def test_small_case_scores_and_ranks_by_hand():
    scores, ranks = item_scores(SMALL)
    # item 1: 3/2 + 3/1, item 2: 3/2 + 3/2, item 3: 3/1 + 3/2
    assert scores.tolist() == [4.5, 3.0, 4.5]
    # items 1 and 3 tie at 4.5: the lower item number ranks first
    assert ranks.tolist() == [1, 3, 2]
    logr = item_log_rarity(SMALL)
    np.testing.assert_allclose(logr, [-math.log10(2 / 9), -math.log10(4 / 9), -math.log10(2 / 9)], rtol=1e-12)


def test_ties_broken_by_item_number_not_input_quirks():
    # every item is unique in every layer: all scores equal N*L, ranks are item order
    combos = np.array([[2, 0], [1, 2], [0, 1]], np.int32)
    scores, ranks = item_scores(combos)
    assert scores.tolist() == [6.0, 6.0, 6.0]
    assert ranks.tolist() == [1, 2, 3]


def test_scores_do_not_depend_on_layer_order_bitwise():
    # the same counts in a different layer order must give the very same float, or ties would
    # split by rounding; summing unsorted terms differs in the last bit for many of these items
    rng = np.random.default_rng(0)
    combos = np.stack([rng.integers(0, k, 5000) for k in (3, 7, 11, 13, 29, 31)], axis=1).astype(np.int32)
    s1, r1 = item_scores(combos)
    s2, r2 = item_scores(combos[:, ::-1].copy())
    assert np.array_equal(s1, s2) and np.array_equal(r1, r2)
    assert np.array_equal(item_log_rarity(combos), item_log_rarity(combos[:, ::-1].copy()))


def test_ranks_are_a_permutation_in_score_order():
    rng = np.random.default_rng(1)
    combos = np.stack([rng.integers(0, k, 2000) for k in (2, 3, 5)], axis=1).astype(np.int32)
    scores, ranks = item_scores(combos)
    assert sorted(ranks.tolist()) == list(range(1, 2001))
    order = np.argsort(ranks)
    assert np.all(np.diff(scores[order]) <= 0)
    for a, b in zip(order[:-1], order[1:], strict=True):  # equal scores: item order
        if scores[a] == scores[b]:
            assert a < b


def test_trait_table_small_case():
    t = trait_table(SMALL_LAYERS, SMALL_TRAITS, SMALL_WEIGHTS, SMALL)
    assert t["items"] == 3
    a0 = t["layers"][0]["traits"][0]
    assert (a0["name"], a0["count"], a0["percent"], a0["weight_percent"], a0["expected"]) == ("a0", 2, 66.667, 66.667, 2.0)
    assert a0["z"] == 0.0 and a0["off"] is False
    b1 = t["layers"][1]["traits"][1]
    assert (b1["count"], b1["weight_percent"]) == (2, 66.667)


def test_trait_table_flags_far_off_trait_and_zero_weight():
    combos = np.array([[0]] * 90 + [[1]] * 10, np.int32)
    t = trait_table(["L"], [["x", "y", "never"]], [w(1, 1, 0)], combos)
    x, y, never = t["layers"][0]["traits"]
    assert x["z"] == pytest.approx(8.0) and x["off"]  # (90-50)/sqrt(100*.25)
    assert y["z"] == pytest.approx(-8.0) and y["off"]
    assert never["z"] is None and never["off"] is False and never["count"] == 0
    # a weight-0 trait that shows up anyway is off
    t = trait_table(["L"], [["x", "never"]], [w(1, 0)], np.array([[0], [1]], np.int32))
    assert t["layers"][0]["traits"][1]["off"] is True


def test_trait_table_without_weights():
    t = trait_table(SMALL_LAYERS, SMALL_TRAITS, None, SMALL)
    a0 = t["layers"][0]["traits"][0]
    assert a0["count"] == 2 and a0["weight_percent"] is None and a0["z"] is None and not a0["off"]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="shape"):
        trait_table(["A"], [["a"]], [w(1)], SMALL)
    with pytest.raises(ValueError, match="out of range"):
        trait_table(SMALL_LAYERS, [["a0"], ["b0", "b1"]], None, SMALL)
    with pytest.raises(ValueError, match="weights"):
        trait_table(SMALL_LAYERS, SMALL_TRAITS, [w(1), w(1, 2)], SMALL)


def test_duplicate_layer_and_trait_names_survive(tmp_path):
    layers = ["Eyes", "Eyes", "number"]
    traits = [["Red", "Blue"], ["Red", "Green"], ["Red"]]
    combos = np.array([[0, 1, 0], [1, 0, 0], [1, 1, 0]], np.int32)
    write_report(tmp_path, layers, traits, [w(1, 1), w(1, 3), w(1)], combos, start=5)
    data = json.loads((tmp_path / "rarity.json").read_text(encoding="utf-8"))
    assert [lay["name"] for lay in data["layers"]] == layers
    assert [lay["index"] for lay in data["layers"]] == [0, 1, 2]
    assert [t["count"] for t in data["layers"][0]["traits"]] == [1, 2]
    assert [t["count"] for t in data["layers"][1]["traits"]] == [1, 2]
    assert data["layers"][1]["traits"][1]["weight_percent"] == 75.0
    with open(tmp_path / "rarity.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["number", "rank", "score", "log_rarity", "Eyes", "Eyes (2)", "number (2)"]
    assert [(r["number"], r["Eyes"], r["Eyes (2)"]) for r in rows] == [("5", "Red", "Green"), ("6", "Blue", "Red"),
                                                                       ("7", "Blue", "Green")]
    assert csv_header(["a", "a (2)", "a"]) == ["number", "rank", "score", "log_rarity", "a", "a (2)", "a (3)"]


def test_csv_round_trip(tmp_path):
    weights = [w(1, 2, 7), w(5, 5), w(1, 1, 1, 1, 6)]
    plan = make_plan(weights, 25, seed=11)
    layers = ["Back", "Body, with \"comma\"", "Hat"]
    traits = [["x", "y,z", "new\nline"], ["Ünï", "b"], ["h0", "h1", "h2", "h3", "h4"]]
    report = write_report(tmp_path, layers, traits, weights, plan.combos, start=1)
    with open(tmp_path / "rarity.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["number", "rank", "score", "log_rarity", *layers]
    body = rows[1:]
    assert len(body) == 25
    scores, ranks = item_scores(plan.combos)
    logr = item_log_rarity(plan.combos)
    for i, r in enumerate(body):
        assert int(r[0]) == i + 1 and int(r[1]) == ranks[i]
        assert float(r[2]) == pytest.approx(scores[i], abs=1e-6)
        assert float(r[3]) == pytest.approx(logr[i], abs=1e-6)
        assert r[4:] == [traits[li][t] for li, t in enumerate(plan.combos[i].tolist())]
    assert report["summary"]["rarest"][0]["number"] == int(np.flatnonzero(ranks == 1)[0]) + 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_output_is_deterministic(tmp_path):
    weights = [w(1, 2, 7), w(5, 5), w(1, 1, 1, 1, 97), np.ones(50)]
    traits = [[f"t{i}" for i in range(len(x))] for x in weights]
    layers = ["A", "B", "C", "D"]
    plan = make_plan(weights, 500, seed=3)
    files = ("rarity.json", "rarity.csv", "rarity.txt")
    (tmp_path / "one").mkdir()
    write_report(tmp_path / "one", layers, traits, weights, plan.combos)
    first = {f: (tmp_path / "one" / f).read_bytes() for f in files}
    (tmp_path / "two").mkdir()
    write_report(tmp_path / "two", layers, traits, weights, make_plan(weights, 500, seed=3).combos)
    assert {f: (tmp_path / "two" / f).read_bytes() for f in files} == first
    write_report(tmp_path / "one", layers, traits, weights, plan.combos)  # overwrite in place
    assert {f: (tmp_path / "one" / f).read_bytes() for f in files} == first
    # and the bytes do depend on the plan
    (tmp_path / "three").mkdir()
    write_report(tmp_path / "three", layers, traits, weights, make_plan(weights, 500, seed=4).combos)
    assert (tmp_path / "three" / "rarity.csv").read_bytes() != first["rarity.csv"]


def test_summary_text_lists_traits_by_count_marks_off_and_rarest():
    combos = np.array([[0, 0]] * 90 + [[1, k % 2] for k in range(10)], np.int32)
    report, *_ = build_report(["Back", "Eyes"], [["plain", "gold"], ["open", "shut"]], [w(1, 1), w(9, 1)], combos,
                              top=3)
    lines = summary_lines(report)
    text = "\n".join(lines)
    back = lines.index("Layer 1: Back")
    assert lines[back + 2].split()[0] == "plain" and lines[back + 3].split()[0] == "gold"  # most first
    assert lines[back + 2].endswith("!") and lines[back + 3].endswith("!")  # 90/10 against 50/50
    eyes = lines.index("Layer 2: Eyes")
    assert not lines[eyes + 2].endswith("!")  # 95 open vs 90 asked: z = 5/3 < 3
    assert "3 rarest items" in text
    rare = lines[-3:]
    assert rare[0].startswith("  #1") and "item 92" in rare[0] and "gold / shut" in rare[0]


def test_observed_frequencies_match_weights_with_fixed_seed():
    weights = [w(1, 2, 7), w(5, 5), w(1, 1, 1, 1, 97), w(3, 1), np.ones(50), np.ones(50), np.ones(50), np.ones(50)]
    n = 20000  # 2.5e8 combinations, the likeliest has p ~ 1e-8: repeats (and their pull) are negligible
    plan = make_plan(weights, n, seed=2024)
    traits = [[f"L{li}T{ti}" for ti in range(len(x))] for li, x in enumerate(weights)]
    table = trait_table([f"L{li}" for li in range(len(weights))], traits, weights, plan.combos)
    worst = 0.0
    for li, x in enumerate(weights):
        p = x / x.sum()
        counts = np.bincount(plan.combos[:, li], minlength=len(x))
        z = (counts - n * p) / np.sqrt(n * p * (1 - p))
        assert np.all(np.abs(z) < 5), (li, z)
        worst = max(worst, float(np.abs(z).max()))
        got = table["layers"][li]["traits"]
        assert [t["count"] for t in got] == counts.tolist()
        np.testing.assert_allclose([t["z"] for t in got], z, atol=1e-3)
        np.testing.assert_allclose([t["weight_percent"] for t in got], 100 * p, atol=1e-3)
    assert worst > 0.5  # it is sampling, not an exact split
    # the same bound catches a plan drawn from other weights (first layer's weights reversed)
    wrong = trait_table(["L0"], [traits[0]], [w(7, 2, 1)], plan.combos[:, :1])
    assert all(t["off"] and abs(t["z"]) > 5 for t in wrong["layers"][0]["traits"] if t["index"] != 1)


def test_report_without_weights(tmp_path):
    layers, traits = ["A", "A"], [["x2", "x10"], ["y", "z"]]
    combos = np.array([[0, 0], [1, 0], [0, 1]], np.int32)
    report = write_report(tmp_path, layers, traits, None, combos, start=4)
    assert report["weights_known"] is False and report["summary"]["rarest"][0]["number"] == 5


def test_csv_has_every_item_once_past_the_write_chunk(tmp_path):
    weights = [np.ones(100), np.ones(100), w(1, 3)]
    n = 9000  # more rows than one streamed chunk
    plan = make_plan(weights, n, seed=5, start=0)
    traits = [[f"t{i}" for i in range(len(x))] for x in weights]
    write_report(tmp_path, ["A", "B", "C"], traits, weights, plan.combos, start=0)
    with open(tmp_path / "rarity.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    assert len(rows) == n
    assert [int(r[0]) for r in rows] == list(range(n))
    assert sorted(int(r[1]) for r in rows) == list(range(1, n + 1))
    assert [r[4:] for r in rows[-3:]] == [[traits[li][t] for li, t in enumerate(c)] for c in plan.combos[-3:].tolist()]


HOSTILE_LAYERS = ["=Back", "Eyes\x1b[2J"]
HOSTILE_TRAITS = [["=HYPERLINK(\"http://x\",\"y\")", "+1", "plain"], ["-2+3", "@SUM(A1)", "\tTab", "'quoted"]]
HOSTILE_COMBOS = np.array([[0, 0], [1, 1], [2, 2], [0, 3]], np.int32)


def test_csv_cells_of_names_that_start_like_formulas_are_neutralised_but_numbers_are_not(tmp_path):
    write_report(tmp_path, HOSTILE_LAYERS, HOSTILE_TRAITS, None, HOSTILE_COMBOS, start=-1)
    with open(tmp_path / "rarity.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["number", "rank", "score", "log_rarity", "'=Back", "Eyes\x1b[2J"]
    assert [r[4:] for r in rows[1:]] == [["'=HYPERLINK(\"http://x\",\"y\")", "'-2+3"], ["'+1", "'@SUM(A1)"],
                                         ["plain", "'\tTab"], ["'=HYPERLINK(\"http://x\",\"y\")", "''quoted"]]
    assert [r[0] for r in rows[1:]] == ["-1", "0", "1", "2"]  # numbers gpucomp writes keep their sign
    assert not any(c.startswith("'") for r in rows[1:] for c in r[:4])


def test_csv_header_neutralises_layer_names_after_telling_repeats_apart():
    assert csv_header(["-A", "-A", "@B", "number"])[4:] == ["'-A", "'-A (2)", "'@B", "number (2)"]
    assert csv_header(["'-A", "-A"])[4:] == ["''-A", "'-A"]  # two layers, two columns


def test_rarity_text_shows_escape_sequences_in_names_as_visible_escapes(tmp_path):
    layers = ["Back\x1b]0;owned\x07", "Eyes\u202e"]
    traits = [["red\x1b[31m", "blue\r"], ["x\x9b2J", "y\u2066z\x7f"]]
    write_report(tmp_path, layers, traits, [w(1, 1), w(1, 1)], np.array([[0, 0], [1, 1]], np.int32))
    text = (tmp_path / "rarity.txt").read_text(encoding="utf-8")
    controls = [c for c in text if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or "\u202a" <= c <= "\u202e"
                                                  or "\u2066" <= c <= "\u2069")]
    assert controls == []
    for shown in ("Layer 1: Back\\x1b]0;owned\\x07", "Layer 2: Eyes\\u202e", "red\\x1b[31m", "blue\\r", "x\\x9b2J",
                  "y\\u2066z\\x7f", "red\\x1b[31m / x\\x9b2J"):
        assert shown in text
    lines = text.splitlines()
    back = lines.index("Layer 1: Back\\x1b]0;owned\\x07")
    assert len({line.index("%") for line in lines[back + 2:back + 4]}) == 1  # columns line up on the escapes


def test_weights_uniqueness_cannot_give_are_named_with_what_it_can():
    """200 unique items of 324 combinations (6 x 6 x 9): at most 54 can be Yellow, 27%, however it is weighted."""
    from gpucomp.metadata.rarity import reachable, unreachable

    names = [["a", "b", "c", "d", "e", "f"], ["Yellow", "Blue", "Green", "Grey", "Brown", "Red"], list("123456789")]
    weights = [np.ones(6), np.array([10, 1, 1, 1, 1, 1.0]), np.ones(9)]
    assert reachable([6, 6, 9], 200)[1] == pytest.approx((0.0, 54 / 200))  # in none of them, or in at most 54
    assert unreachable(["Background", "Eye color", "Mouth"], names, weights, 200) == [
        "Eye color/Yellow: asked 66.7%, at most 27.0% possible with 200 unique items of 324"]
    assert unreachable(["Background", "Eye color", "Mouth"], names, weights, 200, [True, False, True]) == []
    assert unreachable(["Background", "Eye color", "Mouth"], names, weights, 50) == []  # 54 of 50 is possible
    # at 320 of 324 items every trait is in at least 320 - 270 = 50: asking ~6.7% (21) of a trait is too little
    assert "Eye color/Blue: asked 6.7%, at least 15.6% possible with 320 unique items of 324" in unreachable(
        ["Background", "Eye color", "Mouth"], names, weights, 320)


def test_a_trait_is_judged_against_the_share_uniqueness_allows():
    """Observed 27% of a trait asked 66.7% is what uniqueness allows: not marked `!`, the allowed share shown."""
    names = [["a", "b", "c", "d", "e", "f"], ["Yellow", "Blue", "Green", "Grey", "Brown", "Red"]]
    combos = np.array([(a, b) for b in range(6) for a in range(6)][:30])  # 30 of 36: Yellow in 6 (all it can be)
    combos = combos[np.argsort(combos[:, 1] != 0, kind="stable")]
    table = trait_table(["Bg", "Eyes"], names, [np.ones(6), np.array([10, 1, 1, 1, 1, 1.0])], combos)
    yellow = table["layers"][1]["traits"][0]
    assert yellow["count"] == 6 and yellow["reachable_percent"] == [0.0, 20.0] and not yellow["off"]
    assert "reachable_percent" not in table["layers"][0]["traits"][0]  # asked 16.7%: possible, judged as before
    assert "achievable_percent" not in table["layers"][0]["traits"][0]  # nothing moved in that layer
    # what Yellow cannot have goes to the others, by their weights: each can be expected at 16%, not 6.7%
    others = table["layers"][1]["traits"][1:]
    assert {t["achievable_percent"] for t in others} == {16.0} and not any(t["off"] for t in others)


def test_achievable_shares_fill_what_a_capped_trait_cannot_take():
    from gpucomp.metadata.rarity import achievable

    p = np.array([0.6, 0.2, 0.2, 0.0])
    assert achievable(p, 0.0, 0.3).tolist() == pytest.approx([0.3, 0.3, 0.3, 0.0])  # 0.6 capped; the rest shared
    assert achievable(p, 0.0, 1.0).tolist() == pytest.approx(p.tolist())  # nothing out of reach: unchanged
    q = np.array([0.5, 0.3, 0.2])
    assert achievable(q, 0.25, 1.0).tolist() == pytest.approx([0.46875, 0.28125, 0.25])  # a floor, paid by weight


def test_validate_and_generate_say_before_rendering_what_uniqueness_cannot_give(tmp_path, capsys):
    from PIL import Image

    from gpucomp.cli import main

    for folder, names in (("1-Background", [f"B{k}" for k in range(6)]),
                          ("2-Eye color", ["Yellow#10", "Blue", "Green", "Grey", "Brown", "Red"]),
                          ("3-Mouth", [f"M{k}" for k in range(9)])):
        for k, name in enumerate(names):
            (tmp_path / "layers" / folder).mkdir(parents=True, exist_ok=True)
            Image.new("RGBA", (4, 4), (40 * k, 90, 30, 255)).save(tmp_path / "layers" / folder / f"{name}.png")
    warning = "warning: Eye color/Yellow: asked 66.7%, at most 27.0% possible with 200 unique items of 324"
    assert main(["validate", str(tmp_path / "layers"), "-n", "200"]) == 0
    assert warning in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(["generate", str(tmp_path / "layers"), "-n", "200", "-o", str(out), "--backend", "cpu"]) == 0
    err = capsys.readouterr().err
    assert warning in err  # logged while planning: before any item renders
    yellow = next(line for line in (out / "rarity.txt").read_text().splitlines() if line.strip().startswith("Yellow"))
    assert "(achievable 27.000%: unique items allow 0.000% to 27.000%)" in yellow and "!" not in yellow
    others = [line for line in (out / "rarity.txt").read_text().splitlines()
              if line.strip().startswith(("Blue", "Green", "Grey", "Brown", "Red"))]
    assert len(others) == 5 and all("(achievable 14.600%)" in line and "!" not in line for line in others)
