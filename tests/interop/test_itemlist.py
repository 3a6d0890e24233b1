"""Render from a list (`generate --from FILE`, itemlist.py): a CSV, a _metadata.json (or an output
folder) or HashLips DNA strings give the exact items in the order given; bad rows are named before
anything is written; variants (other art, a layer left out); extend, resume and rerender."""
import csv
import json
from pathlib import Path

import pytest
from PIL import Image

import gpucomp
from gpucomp.cli import main
from gpucomp.errors import ConfigError, OutputError

LAYERS = {
    "1-Background": ["Sky#3", "Sea#1", "Sand#2"],
    "2-Body": ["Red#3", "Blue#1", "Green-ish#2"],
    "3-Hat": ["Cap#1", "Crown#1", "NONE#1"],
}


def make_folder(root: Path, layers: dict, shade: int = 0) -> Path:
    k = 0
    for folder, files in layers.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for f in files:
            k += 1
            if f.startswith("NONE"):
                (root / folder / f"{f}.png").write_bytes(b"")  # nftchef's empty trait
                continue
            colour = ((k * 37 + shade) % 256, (k * 91 + shade) % 256, k * 53 % 256, 160 + k)
            Image.new("RGBA", (4, 4), colour).save(root / folder / f"{f}.png")
    return root


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "layers", LAYERS)


@pytest.fixture
def original(folder, tmp_path):
    out = tmp_path / "original"
    gpucomp.run(folder, out, size=12, seed=7)
    return out


def items(out: Path) -> list[dict]:
    return json.loads((out / "_metadata.json").read_text(encoding="utf-8"))


def traits(out: Path) -> list[dict]:
    return [{a["trait_type"]: a["value"] for a in m["attributes"]} for m in items(out)]


def pixels(path: Path) -> bytes:
    """Decoded pixels: the same pixels are not always deflated to the same bytes (seen with ISA-L here)."""
    with Image.open(path) as im:
        return im.mode.encode() + im.tobytes()


def write_csv(path: Path, rows: list[dict], header=("Background", "Body", "Hat")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([r.get(h, "") for h in header])
    return path


def test_csv_items_are_rendered_exactly_in_the_order_given(folder, original, tmp_path):
    given = list(reversed(traits(original)))
    out = tmp_path / "out"
    assert main(["generate", str(folder), "--from", str(write_csv(tmp_path / "l.csv", given)), "-o", str(out), "-q"]) == 0
    assert traits(out) == given  # a hat-less item (NONE) has no Hat attribute, and an empty cell means NONE
    n = len(given)
    for i in range(n):  # item i of the new collection is item n - i of the original, pixel for pixel
        assert pixels(out / "images" / f"{i + 1}.png") == pixels(original / "images" / f"{n - i}.png")
    assert items(out)[0]["dna"] == items(original)[-1]["dna"]
    manifest = json.loads((out / "gpucomp.json").read_text())
    assert manifest["plan"]["from"]["kind"] == "csv" and manifest["plan"]["from"]["items"] == n


def test_an_output_folder_or_its_metadata_gives_the_same_collection(folder, original, tmp_path):
    for k, source in enumerate([original, original / "_metadata.json"]):
        out = tmp_path / f"out{k}"
        gpucomp.run(folder, out, from_list=source)
        assert items(out) == items(original)
        assert all(pixels(out / "images" / p.name) == pixels(p) for p in (original / "images").iterdir())


def test_hashlips_dna_strings(folder, tmp_path):
    lines = ["# HashLips DNA, one item a line", "0:0:Sky#3.png-1:2:Green-ish#2.png-2:1:Crown#1.png",
             "", "0:1:Sea#1.png-1:0:Red#3.png?bypassDNA=true-2:2:NONE#1.png"]
    path = tmp_path / "dna.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    out = tmp_path / "out"
    gpucomp.run(folder, out, from_list=path)
    assert traits(out) == [{"Background": "Sky", "Body": "Green-ish", "Hat": "Crown"},
                           {"Background": "Sea", "Body": "Red"}]


def test_hashlips_v1_dna_pieces_take_their_layer_from_their_place(folder, tmp_path):
    """HashLips writes `<element id>:<file>` per layer in layer order: the id is the file's index in
    its layer's folder, not a layer number (`2:Sky` first is the Background's third file)."""
    path = tmp_path / "dna.txt"
    path.write_text("1:Sky#3.png-0:Green-ish#2.png-0:Crown#1.png\n2:Sea#1.png-1:Red#3.png?bypassDNA=true-2:NONE#1.png\n")
    out = tmp_path / "out"
    gpucomp.run(folder, out, from_list=path)
    assert traits(out) == [{"Background": "Sky", "Body": "Green-ish", "Hat": "Crown"},
                           {"Background": "Sea", "Body": "Red"}]


def test_nftchef_dna_json_names_each_layers_trait_by_its_pieces(folder, tmp_path):
    path = tmp_path / "_dna.json"
    path.write_text(json.dumps(["0/0.2:Sky#3.png*1.1:Green-ish#2.png*2.0:Cap#1.png", "1/0.1:Sea#1.png*1.2:Red#3.png"]))
    out = tmp_path / "out"
    gpucomp.run(folder, out, from_list=path)
    assert traits(out) == [{"Background": "Sky", "Body": "Green-ish", "Hat": "Cap"}, {"Background": "Sea", "Body": "Red"}]


def stacked(tmp_path, hat_none: bool):
    (tmp_path / "c.toml").write_text('[[stacks]]\nsize = 1\nlayers = [{ folder = "1-Background" }, { folder = "2-Body" }]\n'
                                     '[[stacks]]\nsize = 1\nlayers = [{ folder = "1-Background" }, { folder = "2-Body" }, '
                                     '{ folder = "3-Hat" }]\n')
    layers = dict(LAYERS, **({} if hat_none else {"3-Hat": ["Cap#1", "Crown#1"]}))
    return make_folder(tmp_path / ("layers-none" if hat_none else "layers"), layers), tmp_path / "c.toml"


def test_a_list_over_several_stacks_puts_each_item_in_the_stack_whose_layers_it_names(tmp_path):
    root, cfg = stacked(tmp_path, hat_none=False)
    rows = [{"Background": "Sky", "Body": "Red"}, {"Background": "Sea", "Body": "Red", "Hat": "Cap"},
            {"Background": "Sky", "Body": "Blue"}]
    out = tmp_path / "out"
    gpucomp.run(root, out, cfg, from_list=write_csv(tmp_path / "l.csv", rows))
    assert traits(out) == rows  # in the list's order, each with its own stack's layers


def test_an_item_that_fits_no_stack_or_two_alike_is_an_error_naming_them(tmp_path):
    """A row without a Hat fits the stack without one exactly and the other through its empty Hat
    trait: the exact fit decides. Where nothing decides, which stack is meant is the list's to say."""
    root, cfg = stacked(tmp_path, hat_none=True)
    path = write_csv(tmp_path / "l.csv", [{"Background": "Sky", "Body": "Red", "Hat": "Cap"},
                                         {"Background": "Sea", "Body": "Red"}])
    gpucomp.run(root, tmp_path / "ok", cfg, from_list=path)
    assert traits(tmp_path / "ok") == [{"Background": "Sky", "Body": "Red", "Hat": "Cap"},
                                       {"Background": "Sea", "Body": "Red"}]
    path = write_csv(tmp_path / "m.csv", [{"Background": "Sky", "Hat": "Cap"}])  # Body missing: no stack fits
    with pytest.raises(ConfigError, match=r"line 2 names the layers of no stack \(stack 1: Background, Body; stack 2"):
        gpucomp.run(root, tmp_path / "out", cfg, from_list=path)
    cfg.write_text(cfg.read_text().replace(', { folder = "3-Hat" }', ""))  # two stacks of the same layers
    with pytest.raises(ConfigError, match="line 2 fits stacks 1 and 2 alike"):
        gpucomp.run(root, tmp_path / "out", cfg, from_list=path.with_name("l.csv"))


@pytest.mark.parametrize("rows, message", [
    ([{"Background": "Sky", "Body": "Red", "Hat": "Cap"}, {"Background": "Sky", "Body": "Purple", "Hat": "Cap"}],
     "line 3: layer 'Body' has no trait 'Purple' (it has Blue, Green-ish, Red)"),
    ([{"Background": "Sky", "Body": "Red", "Hat": "Cap"}, {"Background": "Sea", "Hat": "Cap"}],
     "line 3 gives no trait for layer 'Body', which has no empty trait to stand for nothing; add a column for it"),
    ([{"Background": "Sky", "Body": "Red", "Hat": "Cap"}, {"Background": "Sea", "Body": "Red", "Hat": "Cap"},
      {"Background": "Sky", "Body": "Red", "Hat": "Cap"}], "line 4 is the same item as line 2"),
])
def test_bad_rows_are_named_before_anything_is_written(folder, tmp_path, capsys, rows, message):
    path = write_csv(tmp_path / "l.csv", rows)
    out = tmp_path / "out"
    assert main(["generate", str(folder), "--from", str(path), "-o", str(out), "-q"]) == 2
    assert message in capsys.readouterr().err and not out.exists()
    assert main(["validate", str(folder), "--from", str(path)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("text, name, message", [
    ('[{"edition": 4, "attributes": [{"trait_type": "Body", "value": "Red"}, {"trait_type": "Body", "value": "Red"}]}]',
     "m.json", "item 1 (edition 4) lists 'Body' twice"),
    ('{"attributes": []}', "m.json", "expected a list of items"),
    ('[{"name": "x"}]', "m.json", "item 1 has no attributes list"),
    ("Sky-Red-Cap\n", "dna.txt", "line 1: 'Sky-Red-Cap' is not a DNA piece"),
    ("", "l.csv", "a CSV needs a header row"),
    ("Background,Body,Hat\nSky,Red\n", "l.csv", "line 2 has 2 cells, the header 3"),
    ("Background,Body,Hat\n", "l.csv", "lists no item"),
    # one layer given twice: which one is meant is the list's to say, never a silent pick
    ("Background,Body,Hat,Body\nSky,Red,Cap,Blue\n", "l.csv", "columns 2 and 4 are both named 'Body'; keep one"),
    ("Background,Body,Hat,2-Body\nSky,Red,Cap,Blue\n", "l.csv",
     "line 2 names layer 'Body' twice, as 'Body' and '2-Body'; keep one column"),
    ('[{"attributes": [{"trait_type": "Background", "value": "Sky"}, {"trait_type": "Body", "value": "Red"}, '
     '{"trait_type": "2-Body", "value": "Red"}]}]', "m.json", "item 1 names layer 'Body' twice, as 'Body' and '2-Body'"),
    ("0:0:Sky#3.png-1:2:Green-ish#2.png-1:0:Red#3.png\n", "dna.txt", "line 1 gives layer 1 twice"),
    ("0:Sky#3.png-1:2:Green-ish#2.png\n", "dna.txt", "line 1 mixes <id>:<file> pieces"),
    ('["0/0.2:Sky#3.png*Red#3.png"]', "_dna.json", "entry 1: 'Red#3.png' is not an nftchef DNA piece"),
    # digits Python's int() reads but a DNA string never holds, and layer numbers past any layer count
    ("²:0:Sky#3.png-1:2:Green-ish#2.png\n", "dna.txt", "line 1: '²:0:Sky#3.png' is not a DNA piece"),
    ("٣:0:Sky#3.png\n", "dna.txt", "is not a DNA piece"),
    ("9" * 5000 + ":0:Sky#3.png\n", "dna.txt", "9" * 60 + "'... (5012 characters) is not a DNA piece"),  # not echoed whole
    # JSON that Python's json module reads but no UTF-8 file or JSON reader holds, and what it cannot read
    ('[{"attributes": [{"trait_type": "Body", "value": "\\ud800"}]}]', "m.json", "lone surrogate"),
    ('[{"attributes": [{"trait_type": "Body", "value": NaN}]}]', "m.json", "NaN is not a JSON number"),
    ("[" * 100000 + "]" * 100000, "m.json", "nested more than 64 levels deep"),
    ("[" * 70 + "]" * 70, "m.json", "nested more than 64 levels deep"),
    ('[{"edition": ' + "7" * 5000 + ', "attributes": []}]', "m.json", "integer of more than 4300 digits"),
    ("Background,Body,Hat\nSky,Red," + "C" * 200000 + "\n", "l.csv", "line 2: field larger than field limit"),
])
def test_malformed_lists_are_named(folder, tmp_path, text, name, message):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        gpucomp.run(folder, tmp_path / "out", from_list=path)
    assert not (tmp_path / "out").exists()


def test_the_list_decides_the_size(folder, original, tmp_path, capsys):
    assert main(["generate", str(folder), "--from", str(original), "-n", "5", "-o", str(tmp_path / "o"), "-q"]) == 2
    assert "lists 12 items, but a size of 5 was given" in capsys.readouterr().err
    assert main(["generate", str(folder), "--from", str(original), "--shuffle", "-o", str(tmp_path / "o"), "-q"]) == 2
    assert "cannot be combined with shuffle" in capsys.readouterr().err


def test_variant_with_other_art(original, tmp_path):
    pixel = make_folder(tmp_path / "pixel", LAYERS, shade=100)
    out = tmp_path / "variant"
    gpucomp.run(pixel, out, from_list=original)
    assert traits(out) == traits(original)
    assert pixels(out / "images" / "1.png") != pixels(original / "images" / "1.png")


def test_variant_with_a_layer_left_out(folder, original, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[layers]]\nfolder = "1-Background"\n[[layers]]\nfolder = "3-Hat"\n', encoding="utf-8")
    out = tmp_path / "variant"
    # without Body, items 1 and 2 of the original (Sky, Crown; Red and Green-ish bodies) are one item
    with pytest.raises(ConfigError, match=r"item 2 \(edition 2\) is the same item as item 1 \(edition 1\)"):
        gpucomp.run(folder, out, cfg, from_list=original)
    unique: dict = {}
    for t in traits(original):
        unique.setdefault((t["Background"], t.get("Hat")), t)
    listed = list(unique.values())
    gpucomp.run(folder, out, cfg, from_list=write_csv(tmp_path / "l.csv", listed))  # the Body column is ignored
    assert traits(out) == [{k: v for k, v in t.items() if k != "Body"} for t in listed]
    assert len(listed) == 7


def test_extend_resume_and_rerender_after_a_list(folder, original, tmp_path):
    given = traits(original)[:5]
    path = write_csv(tmp_path / "l.csv", given)
    out = tmp_path / "out"
    gpucomp.run(folder, out, from_list=path, seed=3)
    for _ in gpucomp.extend(out, 10):
        pass
    got = traits(out)
    assert got[:5] == given and len({tuple(sorted(t.items())) for t in got}) == 15
    Image.new("RGBA", (4, 4), (9, 9, 9, 255)).save(folder / "2-Body" / "Red#3.png")
    for _ in gpucomp.rerender(out):
        pass
    assert traits(out) == got
    assert main(["resume", str(out), "-q"]) == 0
    write_csv(path, list(reversed(given)))
    with pytest.raises(OutputError, match="the --from list of items changed"):
        gpucomp.run(folder, out, from_list=path, seed=3)


def test_a_collections_rarity_csv_gives_it_back_even_with_names_that_start_like_formulas(tmp_path):
    """rarity.csv neutralises names a spreadsheet would run (`-Red`, `=Sky`); read back with
    --from, those cells are the names again, and the collection comes out the same."""
    layers = make_folder(tmp_path / "layers", {"1-Background": ["=Sky#3", "Sea#1"], "2-Body": ["-Red#3", "+Blue#1"],
                                               "3-@Hat": ["'Cap#1", "Crown#1"]})
    first = tmp_path / "first"
    gpucomp.run(layers, first, size=6, seed=2)
    again = tmp_path / "again"
    gpucomp.run(layers, again, from_list=first / "rarity.csv")
    assert traits(again) == traits(first)


def test_a_large_csv_list_reads_in_a_small_multiple_of_its_size(tmp_path):
    """A 24 MiB list of a few trait names repeated (as real lists are) is read in under 5x its size:
    equal cells are one string, and the text is not copied again (a 96 MiB list took 1.3 GB)."""
    import random

    from memory import peak_growth

    rnd = random.Random(1)
    names = [f"Trait number {i}" for i in range(30)]
    lines = [",".join(f"Layer {k}" for k in range(8))]
    lines += [",".join(rnd.choice(names) for _ in range(8)) for _ in range(200_000)]
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    size = path.stat().st_size
    n, grown = peak_growth("from gpucomp.interop.itemlist import read_list", f"len(read_list({str(path)!r}))")
    assert n == "200000" and grown < 5 * size, (grown, size)


def test_a_list_of_short_rows_is_planned_in_a_small_multiple_of_its_size(tmp_path):
    """400,000 rows of three short names (11 bytes a row): reading, matching and the uniqueness
    check together stay under 4x the file beyond what planning as many items takes anyway (a dict
    a row took 60x)."""
    from memory import peak_growth

    names = [f"t{k}" for k in range(100)]
    make_folder(tmp_path / "layers", {f"{i}-L{i}": [f"{n}#1" for n in names] for i in range(3)})
    rows = [(a, b, c) for a in range(100) for b in range(100) for c in range(40)]
    path = tmp_path / "list.csv"
    path.write_text("L0,L1,L2\n" + "".join(f"t{a},t{b},t{c}\n" for a, b, c in rows))
    layers, size = str(tmp_path / "layers"), path.stat().st_size
    _, planned = peak_growth("from gpucomp.cli import main", f"main(['validate', {layers!r}, '-n', '{len(rows)}'])")
    status, grown = peak_growth("from gpucomp.cli import main", f"main(['validate', {layers!r}, '--from', {str(path)!r}])")
    assert status == "0" and grown - planned < 4 * size, (grown, planned, size)
