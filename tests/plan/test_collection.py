"""Whole-collection features: [[stacks]], shuffle, per-layer options (dna / metadata / none /
exact), extend, re-render, resume from the manifest, and their interrupted forms (kill -9
through GPUCOMP_TEST_KILL, then finish), compared byte for byte with uninterrupted runs."""
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gpucomp
from gpucomp.cli import main
from gpucomp.compositing import composite_dense, finalize
from gpucomp.config import load_config
from gpucomp.errors import ConfigError, OutputError, PlanError
from gpucomp.layers.layerset import load_layers
from gpucomp.outdir.pipeline import resume as api_resume
from gpucomp.plan.sampler import dna as dna_of

TOTAL = 4 * 4 * 3 * 3  # combinations of the demo layers: traits per layer 4, 4, 3, 3


# ---------------------------------------------------------------- helpers

def cli(*args, env=None, timeout=120):
    """Run `python -m gpucomp ARGS` in a subprocess; returns (returncode, stdout, stderr)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCOMP_TEST_")}
    full_env.update(PYTHONPATH=str(Path(gpucomp.__file__).parents[1]), **(env or {}))
    p = subprocess.run([sys.executable, "-m", "gpucomp", *map(str, args)], capture_output=True, text=True,
                       env=full_env, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def snapshot(out: Path) -> dict:
    """Every file of a collection (the per-run report summary.json aside) -> bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "summary.json"}


def mtimes(out: Path) -> dict:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.rglob("*")) if p.is_file()}


def items(out: Path) -> dict:
    """number -> metadata dict, read from OUT/metadata/<n>.json."""
    return {int(p.stem): json.loads(p.read_text(encoding="utf-8")) for p in (out / "metadata").glob("*.json")}


def attrs(meta: dict) -> tuple:
    return tuple((a["trait_type"], a["value"]) for a in meta["attributes"])


def drain(gen):
    got = list(gen)
    return gen, got


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def expected_pixels(layers_root: Path, picks) -> np.ndarray:
    """The contract's composite of (folder, trait name) picks, bottom first."""
    ls = load_layers(layers_root)
    by = {layer.folder: {t.name: t for t in layer.traits} for layer in ls.layers}
    return finalize(composite_dense((ls.height, ls.width), [by[f][n] for f, n in picks]), True)


def image_array(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


FOLDER = {"Background": "01-Background", "Body": "02-Body", "Clothes": "03-Clothes", "Eyes": "04-Eyes"}


@pytest.fixture
def layers(demo_layers, tmp_path):
    """A private copy of the demo layers that a test may change."""
    return shutil.copytree(demo_layers, tmp_path / "layers")


# ---------------------------------------------------------------- 1. stacks

STACKS_TOML = """
[collection]
seed = 4
{extra}
[[stacks]]
size = 6
layers = ["01-Background", "02-Body"]

[[stacks]]
size = 4
layers = [{{folder = "01-Background"}}, {{folder = "02-Body"}}, {{folder = "03-Clothes"}}, {{folder = "04-Eyes"}}]
"""


def test_stacks_from_toml(demo_layers, tmp_path):
    cfg_path = write_toml(tmp_path / "c.toml", STACKS_TOML.format(extra=""))
    cfg = load_config(cfg_path)
    assert cfg.size == 10 and cfg.stack_sizes == [6, 4]
    assert [lo.folder for lo in cfg.stacks[0].layers] == ["01-Background", "02-Body"]
    assert [lo.folder for lo in cfg.stacks[1].layers] == list(FOLDER.values())
    out = tmp_path / "out"
    summary = gpucomp.run(demo_layers, out, cfg_path)
    assert summary["items"] == summary["rendered"] == 10
    meta = items(out)
    assert sorted(meta) == list(range(1, 11))
    assert sorted(int(p.stem) for p in (out / "images").glob("*.png")) == list(range(1, 11))
    for n in range(1, 7):
        assert [k for k, _ in attrs(meta[n])] == ["Background", "Body"], n
    for n in range(7, 11):
        assert [k for k, _ in attrs(meta[n])] == ["Background", "Body", "Clothes", "Eyes"], n
    # every layer is a dna layer here, so the attributes are the identity: no two items share one
    assert len({attrs(m) for m in meta.values()}) == 10
    assert len({m["dna"] for m in meta.values()}) == 10
    for n in (1, 10):  # each stack composites only its own layers
        want = expected_pixels(demo_layers, [(FOLDER[k], v) for k, v in attrs(meta[n])])
        assert np.array_equal(image_array(out / "images" / f"{n}.png"), want), n
    assert len(json.loads((out / "_metadata.json").read_text(encoding="utf-8"))) == 10
    assert gpucomp.run(demo_layers, out, cfg_path)["rendered"] == 0  # the same command again: nothing to do


def test_stacks_never_repeat_an_identity_of_another_stack(demo_layers, tmp_path):
    """Stack 2 has the same dna layers as stack 1 (its third layer is dna = false): together they
    use all 16 Background x Body pairs, so each pair must appear exactly once."""
    cfg_path = write_toml(tmp_path / "c.toml", """
[collection]
seed = 2
[[stacks]]
size = 6
layers = ["01-Background", "02-Body"]
[[stacks]]
size = 10
layers = ["01-Background", "02-Body", {folder = "04-Eyes", dna = false}]
""")
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, cfg_path)
    meta = items(out)
    pairs = Counter(tuple(v for k, v in attrs(m) if k in ("Background", "Body")) for m in meta.values())
    assert len(pairs) == 16 and set(pairs.values()) == {1}
    assert len({m["dna"] for m in meta.values()}) == 16


def test_dna_is_unique_across_stacks_with_different_layers(demo_layers, tmp_path):
    """Body and Clothes both have traits named Blue Ring, Green Box and Red Circle: the item
    (Green Plain, Body Green Box) of stack 1 and (Green Plain, Clothes Green Box) of stack 2 are
    different items (other layer, other image) and must not share a DNA."""
    cfg_path = write_toml(tmp_path / "c.toml", """
[collection]
seed = 1
[[stacks]]
size = 16
layers = ["01-Background", "02-Body"]
[[stacks]]
size = 12
layers = ["01-Background", "03-Clothes"]
""")
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, cfg_path)
    meta = items(out)
    assert len({attrs(m) for m in meta.values()}) == 28  # the items are unique ...
    assert len({m["dna"] for m in meta.values()}) == 28  # ... so their DNAs must be too


def test_a_stack_without_layers_is_a_config_error(tmp_path):
    cfg_path = write_toml(tmp_path / "c.toml", "[[stacks]]\nsize = 5\nlayers = []\n")
    with pytest.raises(ConfigError, match="stacks\\[0\\]"):
        load_config(cfg_path)


def test_stacks_size_mismatch_and_layers_with_stacks_are_config_errors(demo_layers, tmp_path):
    bad_size = write_toml(tmp_path / "a.toml", STACKS_TOML.format(extra="size = 11"))
    with pytest.raises(ConfigError, match=r"collection\.size is 11 .*add up to 10"):
        load_config(bad_size)
    ok = write_toml(tmp_path / "ok.toml", STACKS_TOML.format(extra="size = 10"))
    assert load_config(ok).size == 10
    both = write_toml(tmp_path / "b.toml", STACKS_TOML.format(extra="") + '\n[[layers]]\nfolder = "01-Background"\n')
    with pytest.raises(ConfigError, match=r"either \[\[layers\]\] or \[\[stacks\]\]"):
        load_config(both)
    with pytest.raises(ConfigError, match="sum of the"):  # API override of the size
        gpucomp.generate(demo_layers, tmp_path / "x", ok, size=12)
    assert not (tmp_path / "x").exists()


def test_cli_size_must_match_the_stacks(demo_layers, tmp_path):
    cfg_path = write_toml(tmp_path / "c.toml", STACKS_TOML.format(extra=""))
    out = tmp_path / "out"
    rc, _, err = cli("generate", demo_layers, "-c", cfg_path, "-n", "7", "-o", out, "-q")
    assert rc == 2, err
    assert "error:" in err and "[[stacks]]" in err and "10" in err and "Traceback" not in err
    assert not out.exists()
    rc, stdout, err = cli("generate", demo_layers, "-c", cfg_path, "-n", "10", "-o", out, "-q")
    assert rc == 0, err
    assert "done: 10 items" in stdout


def test_extend_a_stacked_collection_from_a_chosen_stack(demo_layers, tmp_path):
    cfg_path = write_toml(tmp_path / "c.toml", STACKS_TOML.format(extra=""))
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, cfg_path)
    gen, got = drain(gpucomp.extend(out, 3, stack=2))
    assert sorted(i.number for i in got) == [11, 12, 13]
    meta = items(out)
    for n in (11, 12, 13):
        assert [k for k, _ in attrs(meta[n])] == ["Background", "Body", "Clothes", "Eyes"]
    assert len({attrs(m) for m in meta.values()}) == 13
    before = snapshot(out)
    with pytest.raises(PlanError, match="only 10 new items"):  # stack 1: 16 pairs, 6 used
        list(gpucomp.extend(out, 11, stack=1))
    with pytest.raises(ConfigError, match="stack 3 does not exist"):
        list(gpucomp.extend(out, 1, stack=3))
    assert snapshot(out) == before


# ---------------------------------------------------------------- 2. shuffle

def test_shuffle_permutes_numbering_only_and_is_deterministic(demo_layers, tmp_path):
    cfg_path = write_toml(tmp_path / "s.toml", "[collection]\nsize = 20\nseed = 6\nshuffle = true\n")
    assert load_config(cfg_path).shuffle is True
    plain, shuf, again = tmp_path / "plain", tmp_path / "shuf", tmp_path / "again"
    gpucomp.run(demo_layers, plain, size=20, seed=6)
    gpucomp.run(demo_layers, shuf, cfg_path)
    gpucomp.run(demo_layers, again, cfg_path)
    mp, ms = items(plain), items(shuf)
    assert sorted(ms) == list(range(1, 21))
    assert Counter(attrs(m) for m in mp.values()) == Counter(attrs(m) for m in ms.values())
    assert [attrs(mp[n]) for n in range(1, 21)] != [attrs(ms[n]) for n in range(1, 21)]
    # the same item (same traits) has the same image and DNA, only another number
    img_p = {attrs(mp[n]): (plain / "images" / f"{n}.png").read_bytes() for n in mp}
    img_s = {attrs(ms[n]): (shuf / "images" / f"{n}.png").read_bytes() for n in ms}
    assert img_p == img_s
    assert {attrs(m): m["dna"] for m in mp.values()} == {attrs(m): m["dna"] for m in ms.values()}
    for n, m in ms.items():
        assert m["edition"] == n and m["name"].endswith(f"#{n}")
    assert snapshot(shuf) == snapshot(again)


def test_shuffle_mixes_the_stacks(demo_layers, tmp_path):
    plain_cfg = write_toml(tmp_path / "p.toml", STACKS_TOML.format(extra=""))
    shuf_cfg = write_toml(tmp_path / "s.toml", STACKS_TOML.format(extra="shuffle = true"))
    gpucomp.run(demo_layers, tmp_path / "plain", plain_cfg)
    gpucomp.run(demo_layers, tmp_path / "shuf", shuf_cfg)
    mp, ms = items(tmp_path / "plain"), items(tmp_path / "shuf")
    assert Counter(attrs(m) for m in mp.values()) == Counter(attrs(m) for m in ms.values())
    two = {n for n, m in ms.items() if len(m["attributes"]) == 2}
    assert len(two) == 6 and two != set(range(1, 7))


def test_shuffled_collection_extends_after_its_last_number(demo_layers, tmp_path):
    cfg_path = write_toml(tmp_path / "s.toml", "[collection]\nsize = 12\nseed = 6\nshuffle = true\n")
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, cfg_path)
    before = snapshot(out)
    _, got = drain(gpucomp.extend(out, 4))
    assert sorted(i.number for i in got) == [13, 14, 15, 16]
    after = snapshot(out)
    for n in range(1, 13):
        assert after[f"images/{n}.png"] == before[f"images/{n}.png"]
        assert after[f"metadata/{n}.json"] == before[f"metadata/{n}.json"]
    assert len({attrs(m) for m in items(out).values()}) == 16


# ---------------------------------------------------------------- 3. per-layer options

DNA_FALSE = """
[collection]
size = {size}
seed = 5
[[layers]]
folder = "01-Background"
[[layers]]
folder = "03-Clothes"
[[layers]]
folder = "04-Eyes"
dna = false
{extra}
"""


def test_dna_false_layer_is_left_out_of_uniqueness_and_dna(demo_layers, tmp_path):
    # Background x Clothes allow exactly 12 combinations: 12 items use each once; Eyes repeats.
    a_cfg = write_toml(tmp_path / "a.toml", DNA_FALSE.format(size=12, extra=""))
    b_cfg = write_toml(tmp_path / "b.toml", DNA_FALSE.format(size=12, extra='exact = {"Green Box" = 6}'))
    a, b = tmp_path / "a", tmp_path / "b"
    gpucomp.run(demo_layers, a, a_cfg)
    gpucomp.run(demo_layers, b, b_cfg)
    ma, mb = items(a), items(b)
    for meta in (ma, mb):
        assert sorted(meta) == list(range(1, 13))
        pairs = Counter((dict(attrs(m))["Background"], dict(attrs(m))["Clothes"]) for m in meta.values())
        assert len(pairs) == 12 and set(pairs.values()) == {1}
        assert [k for k, _ in attrs(meta[1])] == ["Background", "Clothes", "Eyes"]  # still in the metadata
        assert len({dict(attrs(m))["Eyes"] for m in meta.values()}) < 12  # the bypassed layer repeats
        for m in meta.values():  # the DNA covers the dna layers only
            d = dict(attrs(m))
            assert m["dna"] == dna_of([d["Background"], d["Clothes"]])
    # the same dna-layer traits with another Eyes trait: the DNA does not change
    by_pair_a = {(dict(attrs(m))["Background"], dict(attrs(m))["Clothes"]): m for m in ma.values()}
    differing = 0
    for m in mb.values():
        d = dict(attrs(m))
        other = by_pair_a[(d["Background"], d["Clothes"])]
        assert other["dna"] == m["dna"]
        differing += dict(attrs(other))["Eyes"] != d["Eyes"]
    assert differing > 0
    # exact on a dna = false layer: exactly that many items
    assert sum(dict(attrs(m))["Eyes"] == "Green Box" for m in mb.values()) == 6
    assert sum(dict(attrs(m))["Eyes"] == "Green Box" for m in ma.values()) != 6
    # one more than the dna layers allow is refused, although Eyes would make 36 combinations
    with pytest.raises(PlanError, match="12"):
        list(gpucomp.generate(demo_layers, tmp_path / "c",
                              write_toml(tmp_path / "c.toml", DNA_FALSE.format(size=13, extra=""))))
    with pytest.raises(PlanError, match="04-Eyes.* 6, more than the 5 items"):  # exact counts above the size
        list(gpucomp.generate(demo_layers, tmp_path / "d",
                              write_toml(tmp_path / "d.toml", DNA_FALSE.format(size=5, extra='exact = {"Green Box" = 6}'))))
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


ALL_LAYERS = """
[collection]
size = 20
seed = 8
[[layers]]
folder = "01-Background"
[[layers]]
folder = "02-Body"
[[layers]]
folder = "03-Clothes"
[[layers]]
folder = "04-Eyes"
{eyes}
"""


@pytest.fixture(scope="module")
def baseline(demo_layers, tmp_path_factory):
    """20 items, seed 8, every layer with default options."""
    out = tmp_path_factory.mktemp("baseline") / "out"
    gpucomp.run(demo_layers, out, size=20, seed=8)
    return out


def images_of(out: Path) -> dict:
    return {k: v for k, v in snapshot(out).items() if k.startswith("images/")}


def test_metadata_false_hides_the_layer_but_keeps_it_in_the_image(demo_layers, baseline, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, write_toml(tmp_path / "c.toml", ALL_LAYERS.format(eyes="metadata = false")))
    full, hidden = items(baseline), items(out)
    assert sorted(hidden) == sorted(full)
    for n, m in hidden.items():
        assert attrs(m) == tuple(x for x in attrs(full[n]) if x[0] != "Eyes"), n
        assert m["dna"] == full[n]["dna"]  # still a dna layer
    assert images_of(out) == images_of(baseline)
    seen_eyes = 0
    for n in range(1, 6):  # the pixels: all four layers, Eyes included
        picks = [(FOLDER[k], v) for k, v in attrs(full[n])]
        img = image_array(out / "images" / f"{n}.png")
        assert np.array_equal(img, expected_pixels(demo_layers, picks)), n
        seen_eyes += not np.array_equal(img, expected_pixels(demo_layers, picks[:3]))
    assert seen_eyes > 0
    assert not any(k == "Eyes" for m in json.loads((out / "_metadata.json").read_text(encoding="utf-8"))
                   for k, _ in attrs(m))


def test_none_trait_is_left_out_of_the_attributes_only_for_its_items(demo_layers, baseline, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, write_toml(tmp_path / "c.toml", ALL_LAYERS.format(eyes='none = "Blue Ring"')))
    full, got = items(baseline), items(out)
    with_none = without_none = 0
    for n, m in got.items():
        if dict(attrs(full[n]))["Eyes"] == "Blue Ring":
            with_none += 1
            assert attrs(m) == attrs(full[n])[:3], n
        else:
            without_none += 1
            assert attrs(m) == attrs(full[n]), n
        assert m["dna"] == full[n]["dna"]
    assert with_none > 0 and without_none > 0
    assert images_of(out) == images_of(baseline)


def test_none_naming_an_unknown_trait_is_refused(demo_layers, tmp_path):
    cfg_path = write_toml(tmp_path / "c.toml", ALL_LAYERS.format(eyes='none = "Bleu Ring"'))
    with pytest.raises((ConfigError, PlanError), match="Bleu Ring"):
        list(gpucomp.generate(demo_layers, tmp_path / "out", cfg_path))
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 4. extend

def test_extend_adds_unique_items_and_touches_nothing_else(demo_layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=20, seed=5)
    before, times = snapshot(out), mtimes(out)
    gen, got = drain(gpucomp.extend(out, 7))
    assert sorted(i.number for i in got) == list(range(21, 28))
    assert gen.summary["items"] == 27 and gen.summary["rendered"] == 7 and gen.summary["resumed_from"] == 20
    after, times_after = snapshot(out), mtimes(out)
    for n in range(1, 21):
        for key in (f"images/{n}.png", f"metadata/{n}.json"):
            assert after[key] == before[key], key
            assert times_after[key] == times[key], key
    meta = items(out)
    assert sorted(meta) == list(range(1, 28))
    assert len({attrs(m) for m in meta.values()}) == 27
    assert len({m["dna"] for m in meta.values()}) == 27
    assert [i.traits for i in sorted(got, key=lambda i: i.number)] == [dict(attrs(meta[n])) for n in range(21, 28)]
    all_meta = json.loads((out / "_metadata.json").read_text(encoding="utf-8"))
    assert [m["edition"] for m in all_meta] == list(range(1, 28))
    prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert prov["count"] == 27 and [i["number"] for i in prov["items"]] == list(range(1, 28))
    assert prov["items"][:20] == json.loads(before["provenance.json"])["items"]
    assert not (out / "gpucomp.journal").exists()

    # more than the combinations left: a clear PlanError, nothing written
    snap = snapshot(out)
    with pytest.raises(PlanError, match=f"only {TOTAL - 27} new items"):
        list(gpucomp.extend(out, TOTAL - 27 + 1))
    with pytest.raises(PlanError, match=str(TOTAL)):
        list(gpucomp.extend(out, TOTAL + 5))
    with pytest.raises(ConfigError, match="at least 1"):
        gpucomp.extend(out, 0)
    assert snapshot(out) == snap

    # a second extend, through the CLI
    rc, stdout, err = cli("extend", out, "-n", "5", "-q")
    assert rc == 0, err
    assert "done: 32 items" in stdout
    meta = items(out)
    assert sorted(meta) == list(range(1, 33)) and len({attrs(m) for m in meta.values()}) == 32
    snap = snapshot(out)
    for n in range(1, 28):
        assert snap[f"images/{n}.png"] == after[f"images/{n}.png"]
    manifest = json.loads((out / "gpucomp.json").read_text(encoding="utf-8"))
    assert [e["size"] for e in manifest["plan"]["extensions"]] == [7, 5]

    # resume after it: nothing to render, nothing changes
    rc, stdout, err = cli("resume", out, "-q", "--json")
    assert rc == 0, err
    assert json.loads(stdout)["rendered"] == 0
    gen, got = drain(api_resume(out))
    assert got == [] and gen.summary["rendered"] == 0 and gen.summary["items"] == 32
    assert snapshot(out) == snap


def test_extend_to_every_combination_then_no_further(demo_layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=20, seed=5)
    gen, got = drain(gpucomp.extend(out, TOTAL - 20))
    assert len(got) == TOTAL - 20
    assert len({attrs(m) for m in items(out).values()}) == TOTAL
    with pytest.raises(PlanError):
        list(gpucomp.extend(out, 1))


# ---------------------------------------------------------------- 5. interrupted extend

@pytest.fixture(scope="module")
def extended_reference(demo_layers, tmp_path_factory):
    """generate 20 + extend 7 without interruption."""
    out = tmp_path_factory.mktemp("extref") / "out"
    gpucomp.run(demo_layers, out, size=20, seed=5)
    drain(gpucomp.extend(out, 7))
    return snapshot(out)


@pytest.mark.parametrize("point", ["image:23", "manifest", "finish"])
def test_killed_extend_then_resume_is_byte_identical(demo_layers, tmp_path, extended_reference, point):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=20, seed=5)
    first = {k: v for k, v in snapshot(out).items() if k.startswith(("images/", "metadata/"))}
    rc, _, err = cli("extend", out, "-n", "7", "-q", env={"GPUCOMP_TEST_KILL": point})
    assert rc == -signal.SIGKILL, err
    now = snapshot(out)
    assert all(now[k] == v for k, v in first.items())  # the kill cost none of the first 20 items
    rc, _, err = cli("resume", out)
    assert rc == 0, err
    assert "ended without finishing" in err
    assert snapshot(out) == extended_reference
    assert not list(out.rglob(".gpucomp-tmp-*")) and not (out / ".gpucomp.lock").exists()


def test_extend_an_interrupted_generate(demo_layers, tmp_path, extended_reference):
    out = tmp_path / "out"
    rc, _, err = cli("generate", demo_layers, "-o", out, "-n", "20", "--seed", "5", "-q",
                     env={"GPUCOMP_TEST_KILL": "image:6"})
    assert rc == -signal.SIGKILL, err
    rc, _, err = cli("extend", out, "-n", "7", "-q")
    assert rc == 0, err
    assert snapshot(out) == extended_reference


# ---------------------------------------------------------------- 6./7. re-render

CHANGED = ("03-Clothes", "Blue Ring")


def change_trait_art(layers: Path) -> None:
    """Paint an opaque magenta block into the first trait of 03-Clothes (same name and weight)."""
    path = next(p for p in (layers / CHANGED[0]).glob("*.png") if p.name.startswith(CHANGED[1] + "#"))
    with Image.open(path) as im:
        arr = np.array(im.convert("RGBA"))
    arr[24:40, 24:40] = (255, 0, 255, 255)
    Image.fromarray(arr, "RGBA").save(path)


def users_of_changed(out: Path) -> set[int]:
    return {n for n, m in items(out).items() if dict(attrs(m)).get("Clothes") == CHANGED[1]}


def fresh_after_change(layers: Path, tmp_path: Path) -> dict:
    fresh = tmp_path / "fresh"
    gpucomp.run(layers, fresh, size=30, seed=11)
    return snapshot(fresh)


def test_rerender_redoes_exactly_the_items_with_changed_art(layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(layers, out, size=30, seed=11)
    affected = users_of_changed(out)
    assert 0 < len(affected) < 30
    before, times = snapshot(out), mtimes(out)
    change_trait_art(layers)
    with pytest.raises(OutputError, match="trait art changed.*rerender"):  # a plain resume refuses
        gpucomp.run(layers, out, size=30, seed=11)
    assert snapshot(out) == before
    gen, got = drain(gpucomp.rerender(out))
    assert gen.summary["rendered"] == len(affected)
    assert {i.number for i in got} == affected
    after, times_after = snapshot(out), mtimes(out)
    for n in range(1, 31):
        key = f"images/{n}.png"
        if n not in affected:
            assert after[key] == before[key] and times_after[key] == times[key], n
        assert after[f"metadata/{n}.json"] == before[f"metadata/{n}.json"], n
    assert any(after[f"images/{n}.png"] != before[f"images/{n}.png"] for n in affected)
    assert after == fresh_after_change(layers, tmp_path)
    assert gpucomp.run(layers, out, size=30, seed=11)["rendered"] == 0  # the same generate: nothing to do
    assert snapshot(out) == after


def test_rerender_refuses_a_changed_plan(layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(layers, out, size=30, seed=11)
    before = snapshot(out)
    path = next((layers / CHANGED[0]).glob(CHANGED[1] + "#*.png"))
    path.rename(path.with_name("Navy Ring#" + path.name.split("#", 1)[1]))
    with pytest.raises(OutputError, match="traits or weights of layer '03-Clothes'"):
        list(gpucomp.rerender(out))
    rc, _, err = cli("rerender", out, "-q")
    assert rc == 2 and "error:" in err and "03-Clothes" in err and "Traceback" not in err
    assert snapshot(out) == before


def test_rerender_with_nothing_changed_renders_nothing(demo_layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=10, seed=11)
    before, times = snapshot(out), mtimes(out)
    gen, got = drain(gpucomp.rerender(out))
    assert got == [] and gen.summary["rendered"] == 0
    assert snapshot(out) == before
    assert {k: v for k, v in mtimes(out).items() if k.startswith("images/")} == \
        {k: v for k, v in times.items() if k.startswith("images/")}


@pytest.mark.parametrize("finish", ["rerender", "resume"])
def test_killed_rerender_then_finishing_equals_a_fresh_generate(layers, tmp_path, finish):
    out = tmp_path / "out"
    gpucomp.run(layers, out, size=30, seed=11)
    affected = sorted(users_of_changed(out))
    change_trait_art(layers)
    kill_at = affected[len(affected) // 2]
    rc, _, err = cli("rerender", out, "-q", env={"GPUCOMP_TEST_KILL": f"image:{kill_at}"})
    assert rc == -signal.SIGKILL, err
    rc, stdout, err = cli(finish, out, "-q", "--json")
    assert rc == 0, err
    summary = json.loads(stdout)
    assert 1 <= summary["rendered"] <= len(affected)
    assert snapshot(out) == fresh_after_change(layers, tmp_path)


# ---------------------------------------------------------------- 8. resume from the manifest

def test_resume_needs_a_gpucomp_output(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "note.txt").write_text("hi")
    for target in (tmp_path / "plain", tmp_path / "missing"):
        rc, _, err = cli("resume", target)
        assert rc == 2, err
        assert "not a gpucomp output" in err and "Traceback" not in err
    assert not (tmp_path / "missing").exists()
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["note.txt"]
    with pytest.raises(OutputError, match="not a gpucomp output"):
        api_resume(tmp_path / "plain")


def test_resume_with_layers_moved_elsewhere(demo_layers, layers, tmp_path):
    out, ref = tmp_path / "out", tmp_path / "ref"
    rc, _, err = cli("generate", layers, "-o", out, "-n", "20", "--seed", "7", "-q",
                     env={"GPUCOMP_TEST_KILL": "image:9"})
    assert rc == -signal.SIGKILL, err
    moved = tmp_path / "moved"
    layers.rename(moved)
    rc, _, err = cli("resume", out, "-q")
    assert rc == 2 and "is gone; pass --layers" in err and "Traceback" not in err  # the recorded folder is gone
    rc, stdout, err = cli("resume", out, "--layers", moved, "-q")
    assert rc == 0, err
    assert "done: 20 items" in stdout
    gpucomp.run(demo_layers, ref, size=20, seed=7)
    mine = {k: v for k, v in snapshot(out).items() if k != "gpucomp.json"}
    assert mine == {k: v for k, v in snapshot(ref).items() if k != "gpucomp.json"}


RULES_TOML = """
[[rules]]
never = ["01-Background/Gold Plain", "02-Body/Gold Ellipse"]
[[rules]]
always = ["03-Clothes/Blue Ring", "Eyes/Red Circle"]
[[layers]]
folder = "01-Background"
[[layers]]
folder = "02-Body"
exact = { "Red Circle" = 7 }
[[layers]]
folder = "03-Clothes"
[[layers]]
folder = "04-Eyes"
"""


def test_rules_and_exact_counts_from_the_config_hold_in_every_item(demo_layers, tmp_path):
    cfg = write_toml(tmp_path / "c.toml", RULES_TOML)
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, cfg, size=60, seed=2)
    items = json.loads((out / "_metadata.json").read_text(encoding="utf-8"))
    traits = [{a["trait_type"]: a["value"] for a in m["attributes"]} for m in items]
    assert len(traits) == 60 and len({tuple(t.values()) for t in traits}) == 60
    assert not any(t["Background"] == "Gold Plain" and t["Body"] == "Gold Ellipse" for t in traits)
    assert all(t["Eyes"] == "Red Circle" for t in traits if t["Clothes"] == "Blue Ring")
    assert sum(t["Body"] == "Red Circle" for t in traits) == 7
    assert any(t["Clothes"] == "Blue Ring" for t in traits)  # the rule was exercised


@pytest.mark.parametrize("rules, message", [
    ('never = ["02-Body/Blue Ring", "03-Clothes/Green Box"]\n[[rules]]\n'
     'always = ["02-Body/Blue Ring", "03-Clothes/Green Box"]',
     "Blue Ring"),
    ('never = ["02-Body/No Such", "03-Clothes/Green Box"]', "no trait 'No Such'"),
])
def test_contradicting_or_unknown_rules_are_refused_before_writing(demo_layers, tmp_path, capsys, rules, message):
    cfg = write_toml(tmp_path / "c.toml", "[[rules]]\n" + rules + "\n")
    out = tmp_path / "out"
    assert main(["validate", str(demo_layers), "-c", str(cfg), "-n", "10"]) == 2
    assert message in capsys.readouterr().err
    assert main(["generate", str(demo_layers), "-c", str(cfg), "-n", "10", "-o", str(out), "-q"]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_rules_limit_the_number_of_items(demo_layers, tmp_path, capsys):
    # Gold Plain only with Red Circle bodies: 4*4*3*3 - 3*3*3 = 117 combinations remain
    rules = "".join(f'[[rules]]\nnever = ["01-Background/Gold Plain", "02-Body/{b}"]\n'
                    for b in ("Blue Ring", "Gold Ellipse", "Green Box"))
    cfg = write_toml(tmp_path / "c.toml", rules)
    assert main(["validate", str(demo_layers), "-c", str(cfg), "-n", "118"]) == 2
    assert "117" in capsys.readouterr().err
    assert main(["validate", str(demo_layers), "-c", str(cfg), "-n", "117"]) == 0


def _attrs(out):
    items = json.loads((out / "_metadata.json").read_text(encoding="utf-8"))
    return [{a["trait_type"]: a["value"] for a in m["attributes"]} for m in items]


def test_a_rule_naming_no_layer_is_an_error(demo_layers, tmp_path, capsys):
    cfg = write_toml(tmp_path / "c.toml", '[[rules]]\nnever = ["Bodyy/Blue Ring", "Clothes/Blue Ring"]\n')
    assert main(["validate", str(demo_layers), "-c", str(cfg), "-n", "10"]) == 2
    assert "no layer is named 'Bodyy'" in capsys.readouterr().err


def test_extend_keeps_every_exact_count(demo_layers, tmp_path):
    cfg = write_toml(tmp_path / "c.toml", '[[layers]]\nfolder = "01-Background"\nexact = { "Gold Plain" = 0 }\n'
                     '[[layers]]\nfolder = "02-Body"\nexact = { "Red Circle" = 5 }\n'
                     '[[layers]]\nfolder = "03-Clothes"\n[[layers]]\nfolder = "04-Eyes"\n')
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, cfg, size=40, seed=1)
    for _ in gpucomp.extend(out, 40):
        pass
    traits = _attrs(out)
    assert len(traits) == 80 and len({tuple(t.values()) for t in traits}) == 80
    assert sum(t["Background"] == "Gold Plain" for t in traits) == 0
    assert sum(t["Body"] == "Red Circle" for t in traits) == 5
    rarity = json.loads((out / "rarity.json").read_text(encoding="utf-8"))
    body = next(la for la in rarity["layers"] if la["name"] == "Body")
    red = next(t for t in body["traits"] if t["name"] == "Red Circle")
    assert red["weight_percent"] == round(100 * 5 / 80, 3) and not red["off"]  # asked = the exact share


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_extend_with_rules_fills_what_the_rules_allow(demo_layers, tmp_path, seed):
    cfg = write_toml(tmp_path / "c.toml", '[[rules]]\nalways = ["Background/Gold Plain", "Body/Red Circle"]\n')
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, cfg, size=60, seed=seed)
    for _ in gpucomp.extend(out, 57):  # the rules allow 117 in all
        pass
    traits = _attrs(out)
    assert len({tuple(t.values()) for t in traits}) == 117
    assert all(t["Body"] == "Red Circle" for t in traits if t["Background"] == "Gold Plain")


def test_a_stack_with_exact_counts_redraws_items_another_stack_has(demo_layers, tmp_path):
    cfg = write_toml(tmp_path / "c.toml", """
[[stacks]]
size = 30
layers = ["01-Background", "02-Body", "03-Clothes"]
[[stacks]]
size = 10
layers = ["01-Background", { folder = "02-Body", exact = { "Red Circle" = 3 } }, "03-Clothes"]
""")
    for seed in range(5):
        out = tmp_path / f"out{seed}"
        gpucomp.run(demo_layers, out, cfg, seed=seed)
        traits = _attrs(out)
        assert len({tuple(t.values()) for t in traits}) == 40
        assert sum(t["Body"] == "Red Circle" for t in traits[30:]) == 3


def test_always_with_a_layer_the_stack_lacks_bans_the_trait(demo_layers, tmp_path):
    cfg = write_toml(tmp_path / "c.toml", """
[[rules]]
always = ["Clothes/Blue Ring", "Eyes/Red Circle"]
[[stacks]]
size = 8
layers = ["01-Background", "02-Body", "03-Clothes"]
[[stacks]]
size = 8
layers = ["01-Background", "02-Body", "03-Clothes", "04-Eyes"]
""")
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, cfg, seed=3)
    traits = _attrs(out)
    assert not any(t["Clothes"] == "Blue Ring" for t in traits[:8])  # no Eyes layer: never a Blue Ring
    assert all(t["Eyes"] == "Red Circle" for t in traits[8:] if t["Clothes"] == "Blue Ring")


def test_metadata_options_object_in_a_config(demo_layers, tmp_path):
    from gpucomp.config import Config
    from gpucomp.metadata.tokens import MetadataOptions

    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, Config(size=3, metadata=MetadataOptions(format="solana", symbol="AB")))
    meta = json.loads((out / "metadata" / "1.json").read_text(encoding="utf-8"))
    assert meta["symbol"] == "AB" and "properties" in meta
    assert list(api_resume(out)) == []  # the manifest keeps the options: nothing to redo


def test_re_running_an_interrupted_extend_points_to_resume(demo_layers, tmp_path, capsys):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=20, seed=1)
    env = dict(os.environ, GPUCOMP_TEST_KILL="image:23", PYTHONPATH=str(Path(gpucomp.__file__).parents[1]))
    done = subprocess.run([sys.executable, "-m", "gpucomp", "extend", str(out), "-n", "7", "-q"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL
    assert main(["extend", str(out), "-n", "7", "-q"]) == 2
    assert "gpucomp resume" in capsys.readouterr().err
    assert main(["resume", str(out), "-q"]) == 0
    assert len(list((out / "images").glob("*.png"))) == 27


# ---------------------------------------------------------------- golden plans
#
# A collection's manifest keeps its seed and the SHA-256 of its plan (CollectionPlan.digest);
# `resume`, `extend` and `rerender` plan it again from the seed and compare. So every way a
# plan uses the generator (the seed derived per stack, the draws that avoid another stack's
# items, the redraws around exact counts, the dna = false layers, the shuffled numbering, each
# extension) is part of the file format: a change refuses every collection already rendered
# with such a plan, or, unchecked, would mix two collections in one folder. The digests below
# were taken from the code that rendered the first such collections; a test that fails here is
# a compatibility break, which needs a plan version in the manifest, not a new digest.
# The layers are plain objects (names and weights of plain traits: no parts, no edge cases), so no PNG is read.

def _golden_layers():
    from types import SimpleNamespace as NS

    def traits(*pairs):
        return [NS(name=name, weight=float(weight), parts=None, empty=False, edge_cases=()) for name, weight in pairs]

    return {f: NS(folder=f, traits=t) for f, t in [
        ("01-Background", traits(("Red", 1), ("Blue", 2), ("Green", 3), ("Gold", 0.5))),
        ("02-Body", traits(("Round", 2), ("Square", 1), ("Tall", 1))),
        ("03-Sparkle", traits(("Spark", 1), ("Glow", 2), ("Off", 3))),
        ("10-Hat", traits(("None", 4), ("Cap", 1), ("Crown", 1), ("Halo", 0))),
    ]}


def _golden_configs():
    from dataclasses import replace

    from gpucomp.config import Config
    from gpucomp.plan.options import LayerOption, RuleOption, Stack

    def rule(kind, a, b):
        return RuleOption(kind, tuple(a.split("/")), tuple(b.split("/")))

    bg, body, sparkle, hat = (LayerOption(f) for f in _golden_layers())
    return {
        # dna = false layer with an exact count, a `none` trait with an exact count, rules naming
        # layers by display name and by folder
        "one stack": Config(seed=7, stacks=(Stack(12, (
            bg, body, replace(sparkle, dna=False, exact=(("Spark", 5),)),
            replace(hat, none="None", exact=(("Crown", 4),)))),),
            rules=(rule("never", "Background/Red", "Hat/Cap"), rule("always", "02-Body/Tall", "Background/Green"))),
        # stack 2 has stack 1's dna layers and must draw more to avoid its items; a rule whose
        # other end is missing from stacks 1 and 2 bans Square there; numbering shuffled from 0
        "three stacks shuffled": Config(seed=8, shuffle=True, start=0, stacks=(
            Stack(6, (bg, body)), Stack(2, (bg, body, replace(sparkle, dna=False))), Stack(5, (bg, body, hat))),
            rules=(rule("always", "Body/Square", "Hat/Crown"),)),
        # stack 2 draws more items than it needs to avoid stack 1's, and keeps the first new ones
        "extra draws kept in order": Config(seed=0, stacks=(Stack(6, (bg, body)), Stack(3, (bg, body)))),
        # stack 2's exact count keeps items that collide with stack 1: they are redrawn around it
        "exact count redrawn": Config(seed=9, stacks=(
            Stack(5, (bg, body)), Stack(5, (bg, replace(body, exact=(("Tall", 2),)))))),
    }


def golden_plan(name: str, extensions=()):
    from gpucomp.plan.collection import plan_collection, stack_layerset

    cfg = _golden_configs()[name]
    loaded = _golden_layers()
    stacks = [(stack_layerset(loaded, "layers", 8, 8, list(st.layers)), list(st.layers)) for st in cfg.stacks]
    return plan_collection(cfg, stacks, list(extensions))


def extensions_of(seed: int, *stack_sizes):
    """Extensions as `gpucomp extend` records them: seed derived from the collection's seed and
    the extension's position."""
    from gpucomp.plan.collection import derived_seed

    return [{"stack": k, "size": n, "seed": derived_seed(seed, "extension", i)} for i, (k, n) in enumerate(stack_sizes)]


GOLDEN_PLANS = {
    "one stack": "78be12a7d647eea565e2c46f95863550c81604e01d35fccfcc1d58f88a699496",
    "three stacks shuffled": "10806252ac76dde20fc8e9439452aa098145953c23721a60f8c7b8551405fa34",
    "exact count redrawn": "982fcff182002b0c713a5538a343c278bb8ad2bdf950eec10a5a02e6b113b437",
    "extra draws kept in order": "0270deba064001e1cebadf3b8b1868925c0b9ac18138fce5a7c5d1652857a0bb",
}


@pytest.mark.parametrize("name", sorted(GOLDEN_PLANS))
def test_collection_plans_are_unchanged(name):
    plan = golden_plan(name)
    assert plan.digest() == GOLDEN_PLANS[name]
    assert plan.digest() == golden_plan(name).digest()


GOLDEN_EXTENDED = [  # (collection, extensions as (stack, size), digest after each extension)
    ("one stack", [(0, 3), (0, 2)], ["c15f83f825d2be65e8d1c2c440396f2f3f50bc3c6c57c621d7dbcb529c83f2f8",
                                     "5270f2d810995073e04ea755326c20ade129c28b1cd844f83c9b45977008bbfc"]),
    ("three stacks shuffled", [(2, 2)], ["cf02996aa01217ad325950b847a0f1203b74c4435b13db517479e65c28b2fbdd"]),
]


@pytest.mark.parametrize("name, ext, digests", GOLDEN_EXTENDED)
def test_extended_plans_are_unchanged(name, ext, digests):
    """Each extension leaves the plan before it as it was (the pipeline compares that prefix
    with the manifest before it records the extension), and adds a golden part."""
    seed = _golden_configs()[name].seed
    base = golden_plan(name).digest()
    for k in range(1, len(ext) + 1):
        plan = golden_plan(name, extensions_of(seed, *ext[:k]))
        assert plan.digest(len(plan.segments) - k) == base
        assert plan.digest() == digests[k - 1]
    added = sum(n for _, n in ext)
    assert plan.numbers[-added:].tolist() == list(range(plan.start + len(plan) - added, plan.start + len(plan)))


def test_derived_seeds_are_unchanged():
    """Stack k > 0, the shuffle, each extension, the dna = false layers and the exact-count
    redraws each draw from a seed derived from the collection's: part of every golden plan."""
    from gpucomp.plan.collection import derived_seed

    assert [derived_seed(7, "stack", 1), derived_seed(7, "shuffle"), derived_seed(7, "extension", 0),
            derived_seed(7, "free"), derived_seed(7, "repair")] == [
        1489528886332813234, 2922461637172715622, 1966680263746285649, 657222881079866395, 7928530909740850768]


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_items_redrawn_around_exact_counts_obey_the_rules(seed):
    """Stack 2 has stack 1's dna layers and an exact count, so items it shares with stack 1 are
    redrawn around the exact trait (collection._repair): only 9 combinations are allowed and
    stack 1 takes 4, so redraws happen for these seeds. The redraws must keep every rule, the
    exact count and uniqueness across both stacks."""
    from dataclasses import replace

    from gpucomp.config import Config
    from gpucomp.plan.collection import plan_collection, stack_layerset
    from gpucomp.plan.options import LayerOption, RuleOption, Stack

    loaded = _golden_layers()
    bg, body = LayerOption("01-Background"), LayerOption("02-Body")
    cfg = Config(seed=seed, stacks=(Stack(4, (bg, body)), Stack(4, (bg, replace(body, exact=(("Tall", 1),))))),
                 rules=(RuleOption("always", ("Background", "Blue"), ("Body", "Round")),
                        RuleOption("never", ("Background", "Green"), ("Body", "Square"))))
    stacks = [(stack_layerset(loaded, "layers", 8, 8, list(st.layers)), list(st.layers)) for st in cfg.stacks]
    plan = plan_collection(cfg, stacks)
    got = [dict(seg.attributes(i)) for seg in plan.segments for i in range(len(seg.combos))]
    assert len({tuple(d.items()) for d in got}) == 8
    assert not [d for d in got if d["Background"] == "Blue" and d["Body"] != "Round"]
    assert not [d for d in got if d["Background"] == "Green" and d["Body"] == "Square"]
    assert [d["Body"] for d in got[4:]].count("Tall") == 1


def test_redrawing_around_exact_counts_builds_its_sets_once(monkeypatch):
    """A stack (or an extension: its exact counts become 0) with exact counts after another
    stack checks every item against the others. That check once built a set per item, so
    100,000 items took minutes. Counted, not timed: the sets collection.py builds must not grow
    with the number of items."""
    import builtins
    from dataclasses import replace
    from types import SimpleNamespace as NS

    import gpucomp.plan.collection as collection
    from gpucomp.config import Config
    from gpucomp.plan.collection import plan_collection, stack_layerset
    from gpucomp.plan.options import LayerOption, Stack

    traits = [NS(name=f"t{i}", weight=1.0, parts=None, empty=False, edge_cases=()) for i in range(30)]
    loaded = {f: NS(folder=f, traits=traits) for f in "abcd"}
    a, b, c, d = (LayerOption(f) for f in loaded)
    built = [0]

    def counting_set(*args):
        built[0] += 1
        return builtins.set(*args)

    monkeypatch.setattr(collection, "set", counting_set, raising=False)  # found before the builtin

    def sets_built(n: int) -> int:
        built[0] = 0
        cfg = Config(seed=1, stacks=(Stack(10, (a, b, c, d)), Stack(n, (a, b, c, replace(d, exact=(("t0", 5),))))))
        stacks = [(stack_layerset(loaded, "layers", 8, 8, list(st.layers)), list(st.layers)) for st in cfg.stacks]
        assert len(plan_collection(cfg, stacks)) == n + 10
        return built[0]

    assert sets_built(200) > 0  # the counter sees the module's sets
    assert sets_built(2000) == sets_built(200)
