"""Linked traits ([[links]], collection.py): the traits of linked layers are chosen together by
name, exactly under uniqueness, rules, exact counts, stacks, extend and resume; contradictions
are named before anything is written; the first layer listed decides the chances."""
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

import gpucomp
from gpucomp.cli import main
from gpucomp.config import ConfigError, load_config
from gpucomp.errors import OutputError, PlanError
from gpucomp.layers.layerset import load_layers
from gpucomp.outdir.resume import read_manifest
from gpucomp.plan.collection import plan_collection, stack_layerset
from gpucomp.plan.options import LayerOption

LAYERS = {
    "1-Background": ["Sky#1", "Sea#1", "Sand#1", "Moss#1", "Dusk#1"],
    "2-Body": ["Red#30", "Blue#10", "Green#10"],
    "3-Arms": ["Red#1", "Blue#9", "Green#5"],
    "4-Hat": ["Cap#1", "Crown#1"],
}
TOTAL = 5 * 3 * 2  # Body and Arms move together: 3 colour sets


def make_folder(root: Path, layers: dict) -> Path:
    """layers/<folder>/<file>.png, 4x4, a distinct opaque-ish colour per file."""
    k = 0
    for folder, files in layers.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for f in files:
            k += 1
            Image.new("RGBA", (4, 4), (k * 37 % 256, k * 91 % 256, k * 53 % 256, 200)).save(root / folder / f"{f}.png")
    return root


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def attrs(out: Path) -> list[dict]:
    items = json.loads((out / "_metadata.json").read_text(encoding="utf-8"))
    return [{a["trait_type"]: a["value"] for a in m["attributes"]} for m in items]


LINK = '[[links]]\nlayers = ["Body", "Arms"]\n'


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "layers", LAYERS)


def plans(folder: Path, toml: Path, size: int, seeds) -> list[list[dict]]:
    """The planned items ({layer name: trait name}) for each seed, without rendering."""
    cfg = load_config(toml)
    ls = load_layers(folder)
    options = list(cfg.layers) or [LayerOption(layer.folder) for layer in ls.layers]
    stack = stack_layerset({layer.folder: layer for layer in ls.layers}, ls.root, ls.width, ls.height, options)
    out = []
    for seed in seeds:
        seg = plan_collection(replace(cfg, size=size, seed=seed), [(stack, options)]).segments[0]
        out.append([dict(zip((la.name for la in stack.layers), seg.names(i), strict=True)) for i in range(len(seg.combos))])
    return out


def plan_for(folder: Path, toml: Path, size: int, seed: int = 0) -> list[dict]:
    return plans(folder, toml, size, [seed])[0]


def test_linked_layers_always_show_the_same_name(folder, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(folder, out, write_toml(tmp_path / "c.toml", LINK), size=20, seed=1)
    traits = attrs(out)
    assert len(traits) == 20 and len({tuple(t.values()) for t in traits}) == 20
    assert all(t["Body"] == t["Arms"] for t in traits)
    assert json.loads((out / "gpucomp.json").read_text())["plan"]["links"] == [["Body", "Arms"]]


def test_links_count_exactly(folder, tmp_path, capsys):
    cfg = write_toml(tmp_path / "c.toml", LINK)
    assert main(["validate", str(folder), "-c", str(cfg), "-n", str(TOTAL + 1)]) == 2
    assert f"only {TOTAL} distinct combinations" in capsys.readouterr().err
    assert main(["validate", str(folder), "-c", str(cfg), "-n", str(TOTAL)]) == 0
    items = plan_for(folder, cfg, TOTAL)  # every allowed combination once
    assert len({tuple(t.values()) for t in items}) == TOTAL and all(t["Body"] == t["Arms"] for t in items)


def test_the_first_layer_listed_decides_the_chances(tmp_path):
    # Body Red 30 : Blue 10 : Green 10; Arms' own weights (1 : 9 : 5) would make Red rare as a product.
    # 400 combinations per colour set and 100 items: repeats barely bend the shares.
    layers = dict(LAYERS, **{"1-Background": [f"B{i}#1" for i in range(200)]})
    folder = make_folder(tmp_path / "layers", layers)

    def red_share(toml: str) -> float:
        drawn = plans(folder, write_toml(tmp_path / "c.toml", toml), 100, range(12))
        return sum(t["Body"] == "Red" for items in drawn for t in items) / 1200

    assert abs(red_share(LINK) - 0.6) < 0.05  # 30 / 50; the product of the weights would give 30 / 150
    assert abs(red_share('[[links]]\nlayers = ["Arms", "Body"]\n') - 1 / 15) < 0.03  # Arms' 1 / 15 now


def test_a_name_one_layer_lacks_goes_with_the_other_layers_unmatched_traits(tmp_path):
    folder = make_folder(tmp_path / "layers", {
        "Body": ["Red", "Blue", "Green"], "Arms": ["Red", "Blue", "Stripes", "Dots"], "Hat": ["Cap", "Crown"]})
    cfg = write_toml(tmp_path / "c.toml", LINK)
    total = (2 + 1 * 2) * 2
    items = plan_for(folder, cfg, total)
    pairs = Counter((t["Body"], t["Arms"]) for t in items)
    assert set(pairs) == {("Red", "Red"), ("Blue", "Blue"), ("Green", "Stripes"), ("Green", "Dots")}
    with pytest.raises(PlanError, match=f"only {total} distinct"):
        plan_for(folder, cfg, total + 1)


def test_three_linked_layers(tmp_path):
    folder = make_folder(tmp_path / "layers", {
        "Body": ["Red", "Blue"], "Arms": ["Red", "Blue"], "Legs": ["Red", "Blue"], "Hat": ["Cap", "Crown", "Bow"]})
    cfg = write_toml(tmp_path / "c.toml", '[[links]]\nlayers = ["Body", "Arms", "Legs"]\n')
    items = plan_for(folder, cfg, 6)
    assert all(t["Body"] == t["Arms"] == t["Legs"] for t in items)
    with pytest.raises(PlanError, match="only 6 distinct"):
        plan_for(folder, cfg, 7)


@pytest.mark.parametrize("layers, toml, message", [
    ({"Body": ["Red", "Blue", "Green"], "Arms": ["Red", "Blue"]}, LINK,
     "link Body + Arms: Body/Green can never be picked: layer 'Arms' has no trait named 'Green'"),
    ({"Body": ["Red", "Blue"], "Arms": ["Red", "Blue#0"]}, LINK,
     "link Body + Arms: Body/Blue can never be picked: it comes with Arms/Blue, which has weight 0"),
    ({"Body": ["Red", "Blue"], "Arms": ["Red", "Blue"]}, '[[links]]\nlayers = ["Body", "Armz"]\n',
     "link Body + Armz: no layer is named 'Armz'"),
    ({"Body": ["Red", "Blue"], "Arms": ["Red", "Blue"]},
     LINK + '[[layers]]\nfolder = "Body"\n[[layers]]\nfolder = "Arms"\ndna = false\n',
     "layer 'Arms' has dna = false; links apply to dna layers only"),
    ({"Body": ["Red", "Blue"], "Arms": ["Red", "Blue"]},
     LINK + '[[layers]]\nfolder = "Body"\nexact = { Red = 1 }\n[[layers]]\nfolder = "Arms"\nexact = { Red = 0 }\n',
     "Body/Red can never be picked: it comes with Arms/Red, which has weight 0 or exact count 0"),
    ({"Body": ["Red", "Blue"], "Arms": ["Red", "Blue"], "Hat": ["Cap", "Crown"]},
     LINK + '[[layers]]\nfolder = "Body"\nexact = { Red = 2 }\n[[layers]]\nfolder = "Arms"\nexact = { Red = 1 }\n'
     '[[layers]]\nfolder = "Hat"\n',
     "every item with \"Body/Red\" has \"Arms/Red\", but \"Body/Red\" is asked for 2 items"),
    ({"Body": ["Red", "Blue"], "Arms": ["Red", "Blue"], "Hat": ["Cap", "Crown"]},
     LINK + '[[rules]]\nalways = ["Body/Red", "Arms/Blue"]\n',
     '"Arms/Red" can never be picked: it forces two traits of layer "Arms" ("Arms/Red" itself; "Arms/Red" -> '
     '"Body/Red" -> "Arms/Blue")'),
])
@pytest.mark.filterwarnings("default::gpucomp.errors.LayerWarning")  # folders in name order
def test_contradictions_are_named_before_anything_is_written(tmp_path, capsys, layers, toml, message):
    folder = make_folder(tmp_path / "layers", layers)
    cfg = write_toml(tmp_path / "c.toml", toml)
    out = tmp_path / "out"
    assert main(["generate", str(folder), "-c", str(cfg), "-n", "2", "-o", str(out), "-q"]) == 2
    assert message in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("toml, message", [
    ("[links]\nlayers = [\"Body\", \"Arms\"]\n", "links must be an array of tables"),
    ("[[links]]\nlayers = [\"Body\"]\n", "expected two or more layer names"),
    ("[[links]]\nlayers = [\"Body\", \"Body\"]\n", "a layer is named twice"),
    ("[[links]]\nlayer = [\"Body\", \"Arms\"]\n", "each [[links]] entry needs exactly layers = [...]"),
])
def test_malformed_links_are_config_errors(tmp_path, toml, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(write_toml(tmp_path / "c.toml", toml))


def test_folder_and_display_name_of_one_layer_are_refused(folder, tmp_path):
    cfg = write_toml(tmp_path / "c.toml", '[[links]]\nlayers = ["Body", "2-Body"]\n')
    with pytest.raises(PlanError, match="'Body' and '2-Body' name the same layer"):
        plan_for(folder, cfg, 3)


def test_links_with_exact_counts_and_rules(folder, tmp_path):
    cfg = write_toml(tmp_path / "c.toml", LINK + """
[[rules]]
never = ["Arms/Green", "Hat/Crown"]
[[layers]]
folder = "1-Background"
[[layers]]
folder = "2-Body"
exact = { Blue = 7 }
[[layers]]
folder = "3-Arms"
[[layers]]
folder = "4-Hat"
""")
    for seed in range(4):
        items = plan_for(folder, cfg, 22, seed)
        assert len({tuple(t.values()) for t in items}) == 22
        assert all(t["Body"] == t["Arms"] for t in items)
        assert sum(t["Arms"] == "Blue" for t in items) == 7
        assert not any(t["Body"] == "Green" and t["Hat"] == "Crown" for t in items)  # the rule, through the link
    with pytest.raises(PlanError, match="only 25 distinct"):  # 5 x (Red 2 + Blue 2 + Green 1)
        plan_for(folder, cfg, 26)


def test_a_stack_without_one_of_the_linked_layers_is_not_linked(folder, tmp_path):
    cfg = write_toml(tmp_path / "c.toml", LINK + """
[[stacks]]
size = 12
layers = ["1-Background", "2-Body", "4-Hat"]
[[stacks]]
size = 10
layers = ["1-Background", "2-Body", "3-Arms", "4-Hat"]
""")
    out = tmp_path / "out"
    gpucomp.run(folder, out, cfg, seed=2)
    traits = attrs(out)
    assert len(traits) == 22
    assert all(t["Body"] == t["Arms"] for t in traits[12:])
    assert all("Arms" not in t for t in traits[:12])


def test_extend_and_resume_keep_the_links(folder, tmp_path):
    cfg = write_toml(tmp_path / "c.toml", LINK)
    out = tmp_path / "out"
    gpucomp.run(folder, out, cfg, size=12, seed=5)
    for _ in gpucomp.extend(out, TOTAL - 12):
        pass
    traits = attrs(out)
    assert len({tuple(t.values()) for t in traits}) == TOTAL and all(t["Body"] == t["Arms"] for t in traits)
    with pytest.raises(PlanError, match="differ from the collection's other items"):
        for _ in gpucomp.extend(out, 1):
            pass
    before = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    assert main(["resume", str(out), "-q"]) == 0  # the manifest's links rebuild the same plan: nothing to do
    assert {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()} == before


def test_a_resume_with_other_links_is_refused(folder, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(folder, out, write_toml(tmp_path / "c.toml", LINK), size=6, seed=1)
    with pytest.raises(OutputError, match="the links changed"):
        gpucomp.run(folder, out, write_toml(tmp_path / "d.toml", ""), size=6, seed=1)
    with pytest.raises(OutputError, match="the links changed"):
        gpucomp.run(folder, out, write_toml(tmp_path / "e.toml", '[[links]]\nlayers = ["Arms", "Body"]\n'),
                    size=6, seed=1)
    gpucomp.run(folder, out, write_toml(tmp_path / "f.toml", LINK), size=6, seed=1)


def test_manifests_without_links_still_read_and_resume(folder, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(folder, out, write_toml(tmp_path / "c.toml", ""), size=6, seed=1)
    manifest = read_manifest(out)
    assert "links" not in manifest["plan"]  # manifests of collections without links are as they were
    manifest["source"]["config"].pop("links")  # as an older gpucomp wrote it
    (out / "gpucomp.json").write_text(json.dumps(manifest), encoding="utf-8")
    read_manifest(out)
    gpucomp.run(folder, out, write_toml(tmp_path / "c.toml", ""), size=6, seed=1)
    manifest["plan"]["links"] = "Body"
    (out / "gpucomp.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(OutputError, match="plan.links should be a list"):
        read_manifest(out)


def test_rerender_with_links(folder, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(folder, out, write_toml(tmp_path / "c.toml", LINK), size=8, seed=4)
    before = attrs(out)
    images = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    Image.new("RGBA", (4, 4), (1, 2, 3, 255)).save(folder / "3-Arms" / "Red#1.png")
    for _ in gpucomp.rerender(out):
        pass
    assert attrs(out) == before
    changed = {p.name for p in (out / "images").iterdir() if p.read_bytes() != images[p.name]}
    assert changed and changed == {f"{i + 1}.png" for i, t in enumerate(before) if t["Arms"] == "Red"}
