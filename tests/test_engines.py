"""Conformance with the engines themselves: what HashLips v1, nftchef and Art Engine 2 rendered from
our own layers (tests/fixtures/engines/, made by its make_fixtures.sh; versions in its README) is
read back by gpucomp (their config.js, _metadata.json, DNA and _dna.json) and rendered as the same
items, each image within the engines' 8-bit premultiplied rounding of it."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpucomp.cli import main
from gpucomp.errors import LayerError, LayerWarning
from gpucomp.layers.layerset import load_layers

FIXTURES = Path(__file__).parent / "fixtures" / "engines"
ROUNDING = 2.5  # premultiplied levels: the engines round in 8 bits (cairo, libvips truncates), gpucomp once
SOLANA_ADDRESS = "7fXNuer5sbZtaTEPhtJ5g5gNtuyRoKkvxdjEjEnPN4mC"  # the fixtures' "CREATOR" is no address


def premultiplied(path: Path) -> np.ndarray:
    a = np.asarray(Image.open(path).convert("RGBA")).astype(float)
    return np.concatenate([a[..., :3] * a[..., 3:] / 255, a[..., 3:]], axis=-1)


def attributes(meta: dict) -> list[tuple[str, str]]:
    return [(a["trait_type"], a["value"]) for a in meta["attributes"]]


def render(tmp_path, layer_set: str, listed: Path, config_js: Path | None = None) -> list[dict]:
    """gpucomp's run of the listed items (import-config of the engine's config.js first)."""
    args = ["generate", str(FIXTURES / "layers" / layer_set), "--from", str(listed), "-o", str(tmp_path / "out"),
            "-q", "--backend", "cpu"]
    if config_js is not None:
        js = tmp_path / "config.js"
        js.write_text(config_js.read_text().replace('"CREATOR"', f'"{SOLANA_ADDRESS}"'))
        assert main(["import-config", str(js), "--layers", str(FIXTURES / "layers" / layer_set),
                     "-o", str(tmp_path / "c.toml")]) == 0
        args += ["-c", str(tmp_path / "c.toml")]
    assert main(args) == 0
    return json.loads((tmp_path / "out" / "_metadata.json").read_text())


def assert_same_images(tmp_path, ours: list[dict], engine_images: list[Path]):
    for meta, theirs in zip(ours, engine_images, strict=True):
        mine = premultiplied(tmp_path / "out" / "images" / f"{meta['edition']}.png")
        assert np.abs(mine - premultiplied(theirs)).max() <= ROUNDING, (meta["edition"], theirs.name)


def hashlips_dna_lines(tmp_path, case: str) -> Path:
    """The DNA strings HashLips v1 made (recorded by the fixtures' preload: the engine keeps only their
    sha1), one a line, as a user saves them."""
    path = tmp_path / "dna.txt"
    made = json.loads((FIXTURES / "hashlips" / case / "_raw_dna.json").read_text())
    path.write_text("".join(r["dna"] + "\n" for r in made))
    return path


@pytest.mark.parametrize("name, layer_set", [("a_shared", "shared"), ("d_two_configs", "basic")])
@pytest.mark.parametrize("listed", ["metadata", "dna"])
def test_hashlips_v1_items_render_as_the_engine_drew_them(tmp_path, listed, name, layer_set):
    """a_shared: Back and Front both have Red and Blue: a DNA piece's place is its layer, its first
    number the file's index in that layer's folder (`2:Red#1.png-0:Blue#1.png` is Back Red, Front
    Blue). d_two_configs: two layerConfigurations, each item in the one whose layers it names."""
    case = FIXTURES / "hashlips" / name
    source = case / "_metadata.json" if listed == "metadata" else hashlips_dna_lines(tmp_path, name)
    ours = render(tmp_path, layer_set, source, FIXTURES / "hashlips" / f"{name}.config.js")
    theirs = json.loads((case / "_metadata.json").read_text())
    assert [attributes(m) for m in ours] == [attributes(m) for m in theirs]
    assert [m["edition"] for m in ours] == [m["edition"] for m in theirs]
    assert [m["dna"] for m in ours] == [m["dna"] for m in theirs]  # the engine's dna: items match one to one
    assert_same_images(tmp_path, ours, [case / "images" / f"{m['edition']}.png" for m in theirs])


def test_hashlips_v1_solana_metadata_is_what_the_engine_writes(tmp_path):
    case = FIXTURES / "hashlips" / "e_sol"
    ours = render(tmp_path, "basic", case / "_metadata.json", FIXTURES / "hashlips" / "e_sol.config.js")
    theirs = json.loads((case / "_metadata.json").read_text().replace('"CREATOR"', f'"{SOLANA_ADDRESS}"'))
    assert ours == theirs  # every field, numbered from 0, file names for image and files
    assert_same_images(tmp_path, ours, [case / "images" / f"{m['edition']}.png" for m in theirs])


@pytest.mark.parametrize("case, layer_set", [("a_shared", "shared"), ("g_nested", "nested"), ("d_two_configs", "basic")])
@pytest.mark.parametrize("listed", ["_metadata.json", "_dna.json"])
def test_nftchef_items_render_as_the_engine_drew_them(tmp_path, case, layer_set, listed):
    """nftchef's _dna.json (`<n>/<layer>.<id>[.<id>...]:<z flag><file>` pieces joined by `*`) and its
    _metadata.json give the same items: nested folders, required files, z flags and NONE included."""
    folder = FIXTURES / "nftchef" / case
    ours = render(tmp_path, layer_set, folder / listed, FIXTURES / "nftchef" / f"{case}.config.js")
    theirs = json.loads((folder / "_metadata.json").read_text())
    # nftchef lists attributes in drawing order (z first); gpucomp in layer order: the same set
    assert [sorted(attributes(m)) for m in ours] == [sorted(attributes(m)) for m in theirs]
    assert_same_images(tmp_path, ours, [folder / "images" / f"{m['edition']}.png" for m in theirs])


@pytest.mark.parametrize("listed", ["_metadata.json", "_dna.json"])
def test_nftchef_trait_value_overrides_and_spaces_are_written_as_the_engine_writes_them(tmp_path, listed):
    """`traitValueOverrides` become `value` options (nftchef looks each raw name up as it is: the key
    "shirt one" misses `shirt one #3.png`, whose raw name "shirt one " is written with its space)."""
    folder = FIXTURES / "nftchef" / "f_overrides"
    ours = render(tmp_path, "overrides", folder / listed, FIXTURES / "nftchef" / "f_overrides.config.js")
    theirs = json.loads((folder / "_metadata.json").read_text())
    assert [attributes(m) for m in ours] == [attributes(m) for m in theirs]
    assert {v for m in ours for _, v in attributes(m)} >= {"shirt one ", "Second Shirt", "GOLDEN NECKLACE"}
    assert_same_images(tmp_path, ours, [folder / "images" / f"{m['edition']}.png" for m in theirs])


@pytest.mark.parametrize("engine", ["hashlips", "nftchef"])
def test_blend_modes_and_opacity_draw_as_the_engines_draw_them(tmp_path, engine):
    """Tint multiply at 0.6, Hat screen at 0.5 (HashLips under `options`, nftchef on the entry).
    Compared where the layers cover the canvas: the engines' generated backgrounds, drawn with the
    state their canvas carried over, are not copied (docs: deliberate differences)."""
    folder = FIXTURES / engine / "c_blend"
    ours = render(tmp_path, "basic", folder / "_metadata.json", FIXTURES / engine / "c_blend.config.js")
    theirs = json.loads((folder / "_metadata.json").read_text())
    assert [attributes(m) for m in ours] == [attributes(m) for m in theirs]
    for meta, their in zip(ours, theirs, strict=True):
        mine = np.asarray(Image.open(tmp_path / "out" / "images" / f"{meta['edition']}.png").convert("RGBA"))
        engine_px = np.asarray(Image.open(folder / "images" / f"{their['edition']}.png").convert("RGBA"))
        covered = mine[..., 3] == 255
        assert covered.sum() > 100 and np.abs(mine[covered].astype(int) - engine_px[covered]).max() <= 2


def test_art_engine_2_template_renders_every_item_as_the_engine_drew_it(tmp_path):
    """The template's names (`Face__z40/Robot Face__z-15.png`: z 40 - 15 = 25, under the clothes;
    `Prop__z50/Backpack.png` with `Backpack__z-35__w10.png`: one option drawing both, and its edge
    cases for Clothing = Santa), each item from the engine's own ERC-721 metadata."""
    case = FIXTURES / "ae2" / "template"
    metas = sorted((json.loads(p.read_text()) for p in (case / "erc721").glob("*.json")), key=lambda m: int(m["uid"]))
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(metas))
    ours = render(tmp_path, "ae2_template", listed)
    assert [attributes(m) for m in ours] == [attributes(m) for m in metas]
    assert_same_images(tmp_path, ours, [case / "images" / f"{m['dna']}.png" for m in metas])


def put(path: Path, size=(32, 32), colour=(200, 30, 40, 255)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", size, colour).save(path)


def test_art_engine_2_offsets_and_z_add_to_their_folders(tmp_path):
    """`Dot__z10__x8__y4/Red__z5__x2__y2.png` is drawn at (10, 6), z 15, as the engine draws it."""
    put(tmp_path / "Base__z1" / "Plain.png")
    put(tmp_path / "Dot__z10__x8__y4" / "Red__z5__x2__y2.png", (4, 4))
    put(tmp_path / "Dot__z10__x8__y4" / "Red.png", (4, 4), (0, 0, 255, 255))
    put(tmp_path / "Dot__z10__x8__y4" / "Blue.png", (4, 4))
    dot = load_layers(tmp_path).layers[1]
    red = next(t for t in dot.traits if t.name == "Red")
    placed = {p.image.path.name: (p.image.box, p.z) for p in red.parts}
    assert placed == {"Red__z5__x2__y2.png": ((6, 10, 10, 14), 15), "Red.png": ((4, 8, 8, 12), 10)}
    blue = next(t for t in dot.traits if t.name == "Blue")
    assert blue.parts[0].image.box == (4, 8, 8, 12) and blue.parts[0].z == 10  # the folder's offset and z


def test_art_engine_2_options_take_the_weight_one_of_their_files_gives(tmp_path):
    put(tmp_path / "Prop__z50" / "Backpack.png")
    put(tmp_path / "Prop__z50" / "Backpack__z-35__w0.5.png")
    put(tmp_path / "Prop__z50" / "Cap.png")
    traits = {t.name: t.weight for t in load_layers(tmp_path).layers[0].traits}
    assert traits == {"Backpack": 0.5, "Cap": 1.0}  # not the larger of 0.5 and an unweighted file's 1
    put(tmp_path / "Prop__z50" / "Backpack__w3.png")
    with pytest.raises(LayerError, match="option 'Backpack' is given different weights by its files"):
        load_layers(tmp_path)


def test_an_unordered_hashlips_project_is_told_to_import_its_config(tmp_path):
    """HashLips' own layout: layers/ without order prefixes, the order in src/config.js."""
    layers = tmp_path / "layers"
    for folder in ("Background", "Eyeball", "Eye color"):
        put(layers / folder / "A#1.png")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.js").write_text((FIXTURES / "hashlips" / "a_shared.config.js").read_text())
    with pytest.warns(LayerWarning, match="import-config"):
        assert main(["validate", str(layers), "-n", "1"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["import-config", str(tmp_path / "src" / "config.js"), "-o", str(tmp_path / "c.toml")]) == 0
