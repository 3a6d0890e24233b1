"""`gpucomp import-config`: HashLips v1 / nftchef config.js read without running it, as a TOML that
gpucomp loads; a converted project renders with HashLips' layer order, names, blend and DNA rules."""
import errno
import json
import os
import tomllib
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import gpucomp
from gpucomp._shared import files
from gpucomp._shared.safe_text import unsafe
from gpucomp.cli import main
from gpucomp.compositing import reference
from gpucomp.config import load_config
from gpucomp.errors import ConfigError
from gpucomp.interop.import_config import convert, toml_string
from gpucomp.interop.jsconfig import Unreadable, read_js_config

from disk_faults import fail_writes

HASHLIPS = r'''
const basePath = process.cwd();
const { MODE } = require(`${basePath}/constants/blend_mode.js`);
const { NETWORK } = require(`${basePath}/constants/network.js`);

const network = NETWORK.eth;

// General metadata for Ethereum
const namePrefix = "Your Collection";
const description = "Remember to replace this description";
const baseUri = "ipfs://NewUriToReplace";

const solanaMetadata = {
  symbol: "YC",
  seller_fee_basis_points: 1000, // Define how much % you want from secondary market sales 1000 = 10%
  external_url: "https://www.youtube.com/c/hashlipsnft",
  creators: [
    {
      address: "7fXNuer5sbZtaTEPhtJ5g5gNtuyRoKkvxdjEjEnPN4mC",
      share: 100,
    },
  ],
};

// If you have selected Solana then the collection starts from 0 automatically
const layerConfigurations = [
  {
    growEditionSizeTo: 5,
    layersOrder: [
      { name: "Background" },
      { name: "Eyeball", options: { displayName: "Awesome Eye Color" } },
      { name: "Eye color", options: { blend: MODE.multiply, opacity: 0.5 } },
      { name: "Shine", options: { bypassDNA: true } },
    ],
  },
  {
    growEditionSizeTo: 8,
    layersOrder: [
      { name: "Background" },
      { name: "Eyeball" },
    ],
  },
];

const shuffleLayerConfigurations = false;

const debugLogs = false;

const format = {
  width: 512,
  height: 512,
  smoothing: false,
};

const background = {
  generate: true,
  brightness: "80%",
  static: false,
  default: "#000000",
};

const extraMetadata = { artist: 'Jo \'the\' painter' };

const rarityDelimiter = "#";

const uniqueDnaTorrance = 10000;

const preview = {
  thumbPerRow: 5,
  thumbWidth: 50,
  imageRatio: format.height / format.width,
  imageName: "preview.png",
};

module.exports = {
  format,
  baseUri,
  description,
  background,
  uniqueDnaTorrance,
  layerConfigurations,
  rarityDelimiter,
  preview,
  shuffleLayerConfigurations,
  debugLogs,
  extraMetadata,
  namePrefix,
  network,
  solanaMetadata,
};
'''


def test_reads_plain_values_and_marks_the_rest():
    values = read_js_config(HASHLIPS, "config.js")
    assert values["namePrefix"] == "Your Collection" and values["network"] == "eth"
    assert values["layerConfigurations"][0]["layersOrder"][2]["options"] == {"blend": "multiply", "opacity": 0.5}
    assert values["extraMetadata"] == {"artist": "Jo 'the' painter"}
    assert isinstance(values["basePath"], Unreadable)  # a call: never run
    assert isinstance(values["preview"]["imageRatio"], Unreadable) and values["preview"]["thumbPerRow"] == 5


def test_converts_a_hashlips_v1_config():
    text, notes = convert(HASHLIPS, "config.js")
    toml = tomllib.loads(text)
    assert toml["collection"] == {"size": 8, "description": "Remember to replace this description",
                                  "base_uri": "ipfs://NewUriToReplace", "shuffle": False,
                                  "name_prefix": "Your Collection", "start": 1}
    assert toml["metadata"] == {"extra": {"artist": "Jo 'the' painter"}, "engine_dna": "hashlips"}  # dna as HashLips
    first, second = toml["stacks"]
    assert first["size"] == 5 and second["size"] == 3  # growEditionSizeTo counts up
    assert first["layers"] == [{"folder": "Background"}, {"folder": "Eyeball", "name": "Awesome Eye Color"},
                               {"folder": "Eye color", "blend": "multiply", "opacity": 0.5},
                               {"folder": "Shine", "dna": False}]
    assert any("background.generate" in n for n in notes) and text.count("# note:") == len(notes)


def test_converted_toml_loads(tmp_path):
    path = tmp_path / "collection.toml"
    path.write_text(convert(HASHLIPS, "config.js")[0])
    cfg = load_config(path)
    assert cfg.size == 8 and [st.size for st in cfg.stacks] == [5, 3]
    assert cfg.stacks[0].layers[3].dna is False and cfg.stacks[0].layers[2].opacity == 0.5


@pytest.mark.parametrize("edit, message", [
    (("growEditionSizeTo: 8", "growEditionSizeTo: 5"), r"layerConfigurations\[1\].growEditionSizeTo is 5.*more than 5"),
    (("MODE.multiply", "MODE.hue"), r"blend is 'hue', which gpucomp does not draw"),
    (("opacity: 0.5", "opacity: 0.1 + 0.4"),
     r"line 32: layerConfigurations\[0\].layersOrder\[2\] opacity is not a plain value \('\+' after"),
    (("{ name: \"Background\" },\n      { name: \"Eyeball\", options",
      "{ name: `${basePath}` },\n      { name: \"Eyeball\", options"),
     r"line 30: layerConfigurations\[0\].layersOrder\[0\].name is not a plain value \(a template"),
    (("const layerConfigurations", "const layerConfigs"), "module.exports: 'layerConfigurations' names nothing declared"),
    (("layerConfigurations,\n  rarityDelimiter", "rarityDelimiter"), "no layerConfigurations array found"),
])
def test_what_cannot_be_converted_is_named(edit, message):
    with pytest.raises(ConfigError, match=message):
        convert(HASHLIPS.replace(*edit), "config.js")


def test_nftchef_layer_options():
    js = '''const layerConfigurations = [{ growEditionSizeTo: 3, namePrefix: "Chef",
      layersOrder: [{ name: "Hair", trait: "Hairdo", blend: MODE.screen, opacity: 0.8,
                      sublayerOptions: { rare: { blend: MODE.multiply } } }] }];
    const emptyLayerName = "EMPTY"; const startIndex = 0;'''
    toml = tomllib.loads(convert(js, "config.js")[0])
    assert toml["collection"]["start"] == 0 and toml["collection"]["name_prefix"] == "Chef"
    assert toml["input"] == {"empty_name": "EMPTY"}
    assert toml["layers"] == [{"folder": "Hair", "name": "Hairdo", "blend": "screen", "opacity": 0.8,
                               "traits": {"rare": {"blend": "multiply", "opacity": 1.0}}}]


BREAK_OUT = '\n[one_of_ones]\nfolder = "/etc"'  # what a key or value would become if written raw
HOSTILE = r"""
const namePrefix = "x\n[one_of_ones]\nfolder = \"/etc\"";
const description = "a \"quoted\" \\ back\x7f\u0000 \u001b[2J \u202e tab\there \r\n[input]\n# end";
const extraMetadata = { "k\n[one_of_ones]\nfolder = \"/etc\"": "v\r\n[x]", "\u202e\u2066": 1 };
const layerConfigurations = [{ growEditionSizeTo: 5, layersOrder: [
  { name: "Back", "evil\n[one_of_ones]\nfolder = \"/etc\"\n#": 1,
    sublayerOptions: { "t\"]\n[one_of_ones]\nfolder = \"/etc\"": { blend: "multiply", trait: "x" } } },
  { name: "Hat\u0007\u009b", options: { displayName: "Hat\n[one_of_ones]" } },
]}];
const incompatible = { "a\n[rules]": ["b"] };
"""


def test_keys_and_values_that_try_to_break_out_of_the_toml_convert_to_exactly_the_intended_tables():
    text, notes = convert(HOSTILE, "config.js")
    toml = tomllib.loads(text)
    assert set(toml) == {"collection", "metadata", "layers"}  # no one_of_ones, input or rules table
    assert toml["collection"] == {"size": 5, "name_prefix": "x" + BREAK_OUT, "start": 1,
                                  "description": 'a "quoted" \\ back\x7f\x00 \x1b[2J \u202e tab\there \r\n[input]\n# end'}
    assert toml["metadata"]["extra"] == {"k" + BREAK_OUT: "v\r\n[x]", "\u202e\u2066": 1}
    assert toml["layers"] == [
        {"folder": "Back", "traits": {'t"]' + BREAK_OUT: {"blend": "multiply", "opacity": 1.0}}},
        {"folder": "Hat\x07\x9b", "name": "Hat\n[one_of_ones]"}]
    assert len(notes) == 4 and any("evil" + BREAK_OUT in n for n in notes)


def test_every_note_in_the_toml_is_one_comment_line_with_its_controls_escaped():
    text, notes = convert(HOSTILE, "con\nfig\x1b.js")
    head = text[:text.index("\n[collection]")].splitlines()
    assert all(line.startswith("# ") for line in head if line)  # nothing before the first table is TOML
    assert [line for line in head if line.startswith("# note: ")] == [f"# note: {n}".replace("\n", "\\n")
                                                                       .replace("\r", "\\r") for n in notes]
    assert "from con\\nfig\\x1b.js (" in head[0]
    assert not [c for c in text if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u202e\u2066")]


@pytest.mark.parametrize("value", ['"', "\\", '\\"', "\x00", "\x08\x09\x0a\x0c\x0d", "\x1b[2J", "\x7f", "\x85\x9b",
                                   "\u202a\u202e\u2066\u2069", "\u2028", "\u200e\u061c\xad", "\U000e0041",
                                   "plain é 帽 🎩", "'single'", "", "a\"\"\"b"])
def test_a_toml_string_reads_back_as_exactly_the_text_and_stays_on_its_line(value):
    written = toml_string(value)
    assert tomllib.loads(f"x = {written}\n") == {"x": value}
    assert tomllib.loads(f"[t]\n{written} = 1\n") == {"t": {value: 1}}  # as a quoted key too
    assert [c for c in written if unsafe(c)] == []  # no control, DEL, C1, bidi character or separator raw


def test_a_lone_surrogate_cannot_be_written_into_toml():
    with pytest.raises(ConfigError, match="half of a UTF-16 surrogate pair"):
        toml_string("bad\ud800")


def test_cli_prints_each_note_as_one_line_with_escapes(tmp_path, capsys):
    js = tmp_path / "config.js"
    js.write_text(HOSTILE, encoding="utf-8")
    assert main(["import-config", str(js)]) == 0
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 4 and len(err.splitlines()) == 4
    assert 'note: layerConfigurations[0].layersOrder[0].evil\\n[one_of_ones]\\nfolder = "/etc"\\n#: not converted' in notes
    assert "\x1b" not in err and set(tomllib.loads(out)) == {"collection", "metadata", "layers"}


def test_cli_writes_the_toml_once(tmp_path, capsys):
    js = tmp_path / "config.js"
    js.write_text(HASHLIPS)
    out = tmp_path / "c.toml"
    assert main(["import-config", str(js), "-o", str(out)]) == 0
    assert tomllib.loads(out.read_text())["collection"]["size"] == 8
    assert main(["import-config", str(js), "-o", str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["import-config", str(tmp_path / "missing.js")]) == 2


def test_converted_hashlips_project_renders_as_hashlips_draws_it(tmp_path):
    """HashLips v1: layers in layersOrder order, displayName as trait_type, blend/opacity per layer,
    bypassDNA layers left out of uniqueness but drawn and listed."""
    root = tmp_path / "layers"
    rng = np.random.default_rng(1)
    px = {}
    for folder, names in (("Background", ["Black#1", "Blue#1"]), ("Eyeball", ["Red#1", "White#1"]),
                          ("Eye color", ["Green#1", "Pink#1"]), ("Shine", ["Shapes#1"])):
        for n in names:
            a = rng.integers(0, 256, (6, 6, 4), dtype=np.uint8)
            a[..., 3] = 255 if folder == "Background" else rng.choice(np.array([0, 128, 255], np.uint8), (6, 6))
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(a, "RGBA").save(root / folder / f"{n}.png")
            px[folder, n.split("#")[0]] = a
    js = HASHLIPS.replace("growEditionSizeTo: 8", "growEditionSizeTo: 7")
    cfg = tmp_path / "c.toml"
    cfg.write_text(convert(js, "config.js")[0])
    out = tmp_path / "out"
    list(gpucomp.generate(root, out, cfg, backend="cpu", seed=2))
    meta = json.loads((out / "_metadata.json").read_text())
    assert len(meta) == 7
    keys = set()
    for entry in meta:
        attrs = [(a["trait_type"], a["value"]) for a in entry["attributes"]]
        types = [t for t, _ in attrs]
        assert types in (["Background", "Awesome Eye Color", "Eye color", "Shine"], ["Background", "Eyeball"])
        folders = {"Awesome Eye Color": "Eyeball"}
        traits = [SimpleNamespace(box=(0, 0, 6, 6), pixels=px[folders.get(t, t), v]) for t, v in attrs]
        blends = [("multiply", 0.5) if t == "Eye color" else ("normal", 1) for t, _ in attrs]
        got = np.asarray(Image.open(out / "images" / f"{entry['edition']}.png").convert("RGBA")).astype(float)
        assert np.abs(got - reference((6, 6), traits, blends)).max() <= 1.0
        key = tuple(v for t, v in attrs if t != "Shine")
        assert key not in keys
        keys.add(key)


def solid_layers(root, size=(6, 6), folders=("Background", "Eyeball")):
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in ("Red#1", "Blue#1"):
            Image.new("RGBA", size, (200, 30, 40, 255)).save(root / folder / f"{name}.png")
    return root


def test_solana_network_becomes_solana_metadata_numbered_from_0_as_hashlips_writes_it(tmp_path):
    """HashLips v1 with `network = NETWORK.sol`: editions from 0, symbol, fee, external_url and
    creators from solanaMetadata, the image a file name (main.js ignores baseUri for Solana)."""
    text, notes = convert(HASHLIPS.replace("NETWORK.eth", "NETWORK.sol"), "config.js")
    toml = tomllib.loads(text)
    assert toml["collection"]["start"] == 0 and toml["collection"]["base_uri"] == ""  # file names, not a URI
    assert toml["metadata"] == {"extra": {"artist": "Jo 'the' painter"}, "engine_dna": "hashlips", "format": "solana",
                                "symbol": "YC",
                                "seller_fee_basis_points": 1000, "external_url": "https://www.youtube.com/c/hashlipsnft",
                                "creators": [{"address": "7fXNuer5sbZtaTEPhtJ5g5gNtuyRoKkvxdjEjEnPN4mC", "share": 100}]}
    assert any(n.startswith("baseUri: HashLips writes no base URI for Solana") for n in notes)
    (tmp_path / "c.toml").write_text(text)
    assert load_config(tmp_path / "c.toml").start == 0
    eth = tomllib.loads(convert(HASHLIPS, "config.js")[0])
    assert eth["collection"]["start"] == 1 and "format" not in eth["metadata"]  # solanaMetadata unused on eth


@pytest.mark.parametrize("layer_size, written", [
    ((512, 512), None),  # the engine's format is the layers' size: nothing to do
    ((1024, 1024), {"name": "format", "width": 512, "height": 512, "filter": "nearest"}),  # smoothing: false
])
def test_format_width_and_height_become_a_sized_copy_where_the_layers_differ(tmp_path, layer_size, written):
    root = solid_layers(tmp_path / "layers", layer_size, ("Background", "Eyeball", "Eye color", "Shine"))
    text, notes = convert(HASHLIPS, "config.js", root)
    sizes = tomllib.loads(text).get("output", {}).get("sizes")
    assert sizes == ([written] if written else None)
    assert any("format: 512x512, the layers are 1024x1024" in n and "images/format/" in n for n in notes) == bool(written)
    smooth = tomllib.loads(convert(HASHLIPS.replace("smoothing: false", "smoothing: true"), "config.js", root)[0])
    assert smooth.get("output", {}).get("sizes", [{"filter": "lanczos"}])[0]["filter"] == "lanczos"


def test_format_without_the_layers_folder_is_a_note_saying_how_to_have_it_done():
    _, notes = convert(HASHLIPS, "config.js")
    assert any(n.startswith("format: 512x512: the engine scales every layer") and "--layers" in n for n in notes)


def test_output_jpeg_makes_jpeg_images():
    js = 'const layerConfigurations = [{ growEditionSizeTo: 2, layersOrder: [{ name: "A" }] }];\nconst outputJPEG = true;'
    assert tomllib.loads(convert(js, "config.js")[0])["output"] == {"format": "jpeg"}


NFTCHEF_EVERY_SETTING = '''
const layerConfigurations = [{ growEditionSizeTo: 2, layersOrder: [{ name: "A" }] }];
const background = { generate: true, brightness: "80%" }; const baseUri = "ipfs://x"; const buildDir = "b";
const debugLogs = true; const description = "d"; const emptyLayerName = "NONE";
const extraAttributes = () => [{ trait_type: "x", value: 1 }]; const extraMetadata = { a: 1 };
const forcedCombinations = { a: ["b"] }; const format = { width: 64, height: 64, smoothing: true };
const hashImages = true; const incompatible = { a: ["b"] }; const layersDir = "l"; const outputJPEG = false;
const preview = { thumbPerRow: 5 }; const preview_gif = { numberOfImages: 5 }; const rarityDelimiter = "#";
const shuffleLayerConfigurations = true; const startIndex = 0; const traitValueOverrides = { a: "A" };
const uniqueDnaTorrance = 10000; const useRootTraitType = true; const text = { only: true }; const gif = { export: true };
const pixelFormat = { ratio: 2 / 128 }; const network = NETWORK.eth; const solanaMetadata = { symbol: "Y" };
const namePrefix = "N"; const myOwnThing = 5;
module.exports = { background, baseUri, buildDir, debugLogs, description, emptyLayerName, extraAttributes,
  extraMetadata, forcedCombinations, format, hashImages, incompatible, layerConfigurations, layersDir, outputJPEG,
  preview, preview_gif, rarityDelimiter, shuffleLayerConfigurations, startIndex, traitValueOverrides,
  uniqueDnaTorrance, useRootTraitType, text, gif, pixelFormat, network, solanaMetadata, namePrefix, myOwnThing };
'''


def test_every_exported_setting_is_converted_noted_or_of_no_effect():
    """Nothing is dropped without a line: each setting either lands in the TOML, or has a note, or is
    one that changes no image, number or metadata (the engines' utilities and console)."""
    from gpucomp.interop.import_config import NO_EFFECT

    text, notes = convert(NFTCHEF_EVERY_SETTING, "config.js")
    toml = tomllib.loads(text)
    landed = {"baseUri": toml["collection"]["base_uri"], "description": toml["collection"]["description"],
              "emptyLayerName": toml["input"]["empty_name"], "extraMetadata": toml["metadata"]["extra"],
              "rarityDelimiter": toml["input"]["delimiter"], "startIndex": toml["collection"]["start"],
              "shuffleLayerConfigurations": toml["collection"]["shuffle"], "namePrefix": toml["collection"]["name_prefix"],
              "layerConfigurations": toml["layers"], "network": toml["collection"]["start"],
              "solanaMetadata": None, "outputJPEG": None}  # eth: solanaMetadata unused; outputJPEG false: PNG
    for key in read_js_config(NFTCHEF_EVERY_SETTING, "config.js"):
        noted = [n for n in notes if n.startswith((key + ":", key + " ", key + "."))]
        assert key in landed or key in NO_EFFECT or noted, key
    assert any(n.startswith("myOwnThing: not a setting") for n in notes)
    for key in ("background", "extraAttributes", "hashImages", "useRootTraitType", "traitValueOverrides", "text",
                "gif", "incompatible", "forcedCombinations", "format"):
        assert any(n.startswith((key + ":", key + " ", key + ".")) for n in notes), key


def test_a_setting_declared_but_not_exported_is_not_seen_as_the_engine_does_not():
    js = HASHLIPS.replace("  namePrefix,\n", "")
    text, notes = convert(js, "config.js")
    assert "name_prefix" not in tomllib.loads(text)["collection"]
    assert any(n.startswith("namePrefix is declared but not in module.exports") for n in notes)


def test_trait_value_overrides_become_value_options_of_the_traits_they_hit(tmp_path):
    for path in ("Clothes/shirt one #3.png", "Clothes/shirt two#3.png", "Clothes/z1,tee#1.png", "Hat/Helmet#1.png"):
        (tmp_path / "layers" / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGBA", (4, 4), (9, 9, 9, 255)).save(tmp_path / "layers" / path)
    js = '''const layerConfigurations = [{ growEditionSizeTo: 2, layersOrder: [{ name: "Clothes" }, { name: "Hat" }] }];
    const traitValueOverrides = { "shirt one": "One", "shirt two": "Two", tee: "Tee", Helmet: "Space Helmet", Cap: "x" };
    const startIndex = 0;'''
    text, notes = convert(js, "config.js", tmp_path / "layers")
    toml = tomllib.loads(text)
    clothes, hat = toml["layers"]
    assert clothes["traits"] == {"shirt one": {"value": "shirt one "}, "shirt two": {"value": "Two"},
                                 "tee": {"value": "Tee"}}  # "shirt one" misses the raw "shirt one "
    assert hat["traits"] == {"Helmet": {"value": "Space Helmet"}}
    assert any(n.startswith("traitValueOverrides.Cap: matches no trait") for n in notes)
    assert any(n.startswith("traitValueOverrides.shirt one: matches no trait") for n in notes)
    (tmp_path / "c.toml").write_text(text)
    out = tmp_path / "out"
    gpucomp.run(tmp_path / "layers", out, tmp_path / "c.toml", size=2, seed=1)
    values = {a["value"] for n in range(2) for a in json.loads((out / "metadata" / f"{n}.json").read_text())["attributes"]}
    assert values <= {"shirt one ", "Two", "Tee", "Space Helmet"}
    _, notes = convert(js, "config.js")
    assert any(n.startswith("traitValueOverrides: pass --layers") for n in notes)


def test_incompatible_and_forced_become_rules_with_the_layers_folder(tmp_path):
    root = tmp_path / "layers"
    for path in ("Background/Red#1.png", "Background/Blue#1.png", "Hair/Dark Long#1.png", "Hair/Short#1.png",
                 "Hat/Cap#1.png", "Hat/Crown#1.png"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4, 4), 200, np.uint8), "RGBA").save(root / path)
    js = '''const layerConfigurations = [{ growEditionSizeTo: 3,
      layersOrder: [{ name: "Background" }, { name: "Hair" }, { name: "Hat" }] }];
    const incompatible = { Red: ["Dark Long"], floral: ["Cap"] };
    const forcedCombinations = { Blue: ["Crown"] };'''
    text, notes = convert(js, "config.js", root)
    toml = tomllib.loads(text)
    assert toml["rules"] == [{"never": ["Background/Red", "Hair/Dark Long"]}, {"always": ["Background/Blue", "Hat/Crown"]}]
    assert any("'floral' with 'Cap' not converted: a name is in no layer" in n for n in notes)
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    list(gpucomp.generate(root, out, cfg, backend="cpu", seed=1))
    for entry in json.loads((out / "_metadata.json").read_text()):
        attrs = {a["trait_type"]: a["value"] for a in entry["attributes"]}
        assert not (attrs["Background"] == "Red" and attrs["Hair"] == "Dark Long")
        assert attrs["Background"] != "Blue" or attrs["Hat"] == "Crown"
    assert "incompatible: pass --layers" in " ".join(convert(js, "config.js")[1])


# --- writing the TOML: complete or absent under its name, and never over an existing file without --force ---

@pytest.fixture
def js(tmp_path):
    path = tmp_path / "config.js"
    path.write_text(HASHLIPS)
    return path


def only(folder, *names) -> None:
    """`folder` holds exactly these names: no temporary file, no half TOML."""
    assert sorted(os.listdir(folder)) == sorted(names)


def test_the_written_toml_is_the_whole_conversion(js, tmp_path):
    out = tmp_path / "c.toml"
    assert main(["import-config", str(js), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == convert(HASHLIPS, str(js))[0]
    only(tmp_path, "config.js", "c.toml")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO], ids=errno.errorcode.get)
def test_a_write_that_fails_midway_leaves_nothing_and_blocks_no_later_try(js, tmp_path, capsys, monkeypatch, code):
    out = tmp_path / "c.toml"
    failed = fail_writes(monkeypatch, code)
    assert main(["import-config", str(js), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert failed == [out] and f"error: {out}: " in err and "Traceback" not in err
    only(tmp_path, "config.js")  # neither a half TOML under its name nor the temporary
    monkeypatch.undo()
    assert main(["import-config", str(js), "-o", str(out)]) == 0  # no empty file left to refuse
    assert tomllib.loads(out.read_text(encoding="utf-8"))["collection"]["size"] == 8


@pytest.mark.parametrize("what", ["file", "dangling link"])
def test_an_existing_name_is_refused_without_force_and_left_as_it_was(js, tmp_path, capsys, what):
    out = tmp_path / "c.toml"
    if what == "file":
        out.write_text("mine")
    else:
        out.symlink_to(tmp_path / "elsewhere.toml")
    assert main(["import-config", str(js), "-o", str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    if what == "file":
        assert out.read_text() == "mine"
    else:
        assert os.readlink(out) == str(tmp_path / "elsewhere.toml")
    only(tmp_path, "config.js", "c.toml")


def test_force_replaces_an_existing_file_with_the_whole_conversion(js, tmp_path):
    out = tmp_path / "c.toml"
    out.write_text("mine")
    assert main(["import-config", str(js), "-o", str(out), "--force"]) == 0
    assert out.read_text(encoding="utf-8") == convert(HASHLIPS, str(js))[0]
    only(tmp_path, "config.js", "c.toml")


def test_a_file_made_meanwhile_under_the_name_is_not_replaced(js, tmp_path, capsys, monkeypatch):
    """Nothing is checked first and written later: the name is taken in one step (a link), which
    fails when another process made the file while the TOML was being written."""
    out = tmp_path / "c.toml"
    real = files.link_new

    def someone_else_first(tmp, path):
        out.write_text("theirs")
        real(tmp, path)

    monkeypatch.setattr(files, "link_new", someone_else_first)
    assert main(["import-config", str(js), "-o", str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "theirs"
    only(tmp_path, "config.js", "c.toml")


def test_where_hard_links_are_refused_the_name_is_still_taken_only_when_free(js, tmp_path, capsys, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)  # FAT, some network file systems
    out = tmp_path / "c.toml"
    assert main(["import-config", str(js), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == convert(HASHLIPS, str(js))[0]
    assert main(["import-config", str(js), "-o", str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    only(tmp_path, "config.js", "c.toml")
