"""Metadata formats (ERC-721/OpenSea, Solana Metaplex), their options, and update_metadata."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib

import pytest

import gpucomp
from gpucomp._shared.files import json_bytes
from gpucomp.config import Config
from gpucomp.demo import make_layers
from gpucomp.errors import ConfigError, OutputError
from gpucomp.metadata.rarity import OPENRARITY_COLUMNS
from gpucomp.metadata.tokens import (
    FORMATS,
    TABLE_KEYS,
    MetadataOptions,
    check_traits,
    item_metadata,
    options_for_config,
    options_from_table,
)
from gpucomp.outdir.lock import OutputLock
from gpucomp.outdir.update import update_metadata

SOL_A = "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV"
SOL_B = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"
ATTRS = [("Background", "Blue"), ("Level", "7"), ("Speed", "2.5")]
DNA = "0123456789abcdef0123456789abcdef01234567"


# --- item_metadata: exact output ----------------------------------------------------------------

def test_erc721_default_options_exact():
    meta = item_metadata(3, ATTRS[:1], DNA, MetadataOptions())
    want = {
        "name": "Item #3",
        "description": "",
        "image": "ipfs://REPLACE-WITH-CID/3.png",
        "dna": DNA,
        "edition": 3,
        "attributes": [{"trait_type": "Background", "value": "Blue"}],
        "compiler": "gpucomp",
    }
    assert meta == want
    assert list(meta) == list(want)


def test_erc721_full_options_exact():
    opts = options_from_table(
        {"external_url": "https://apes.example", "extra": {"collection": {"name": "Apes", "family": "A"}, "artist": "Me"},
         "display_types": {"Level": "number", "Speed": "boost_percentage"}},
        {"name_prefix": "Ape", "description": "Apes ☕", "base_uri": "ipfs://CID/"}, "c.toml")
    meta = item_metadata(12, ATTRS, DNA, opts)
    want = {
        "name": "Ape #12",
        "description": "Apes ☕",
        "image": "ipfs://CID/12.png",
        "dna": DNA,
        "edition": 12,
        "attributes": [
            {"trait_type": "Background", "value": "Blue"},
            {"display_type": "number", "trait_type": "Level", "value": 7},
            {"display_type": "boost_percentage", "trait_type": "Speed", "value": 2.5},
        ],
        "compiler": "gpucomp",
        "external_url": "https://apes.example",
        "collection": {"name": "Apes", "family": "A"},
        "artist": "Me",
    }
    assert meta == want
    assert list(meta) == list(want)
    assert [list(a) for a in meta["attributes"]] == [list(a) for a in want["attributes"]]
    assert type(meta["attributes"][1]["value"]) is int


def test_solana_exact():
    opts = options_from_table(
        {"format": "solana", "symbol": "APE", "seller_fee_basis_points": 500, "external_url": "https://apes.example",
         "creators": [{"address": SOL_A, "share": 60}, {"address": SOL_B, "share": 40}], "extra": {"animation": "x"}},
        {"name_prefix": "Ape", "description": "Apes", "base_uri": "https://arweave.net/abc/"}, "c.toml")
    meta = item_metadata(5, ATTRS[:2], DNA, opts)
    want = {
        "name": "Ape #5",
        "symbol": "APE",
        "description": "Apes",
        "seller_fee_basis_points": 500,
        "image": "https://arweave.net/abc/5.png",
        "external_url": "https://apes.example",
        "edition": 5,
        "attributes": [{"trait_type": "Background", "value": "Blue"}, {"trait_type": "Level", "value": "7"}],
        "properties": {
            "files": [{"uri": "https://arweave.net/abc/5.png", "type": "image/png"}],
            "category": "image",
            "creators": [{"address": SOL_A, "share": 60}, {"address": SOL_B, "share": 40}],
        },
        "animation": "x",
    }
    assert meta == want
    assert list(meta) == list(want)
    assert list(meta["properties"]) == ["files", "category", "creators"]


def test_solana_without_base_uri_uses_file_names():
    opts = MetadataOptions(format="solana", base_uri="")
    meta = item_metadata(9, [], DNA, opts)
    assert meta == {
        "name": "Item #9", "symbol": "", "description": "", "seller_fee_basis_points": 0, "image": "9.png",
        "edition": 9, "attributes": [],
        "properties": {"files": [{"uri": "9.png", "type": "image/png"}], "category": "image", "creators": []},
    }


@pytest.mark.parametrize("cfg", [Config(), Config(name_prefix="Blob", description="é \"q\"", base_uri="ipfs://Q/")])
def test_erc721_matches_the_pipelines_current_bytes(cfg):
    names, layers = ["Red", "Hat ☕"], ["Body", "Head"]
    old = json_bytes({  # the field set and order gpucomp wrote before formats existed
        "name": f"{cfg.name_prefix} #4", "description": cfg.description,
        "image": f"{cfg.base_uri.rstrip('/')}/4.png", "dna": DNA, "edition": 4,
        "attributes": [{"trait_type": lt, "value": v} for lt, v in zip(layers, names, strict=True)], "compiler": "gpucomp"})
    new = json_bytes(item_metadata(4, list(zip(layers, names, strict=True)), DNA, options_for_config(cfg)))
    assert new == old


def test_options_for_config_reads_a_metadata_table_or_options():
    class Cfg:
        name_prefix, description, base_uri = "P", "D", "ipfs://U"
        metadata = {"format": "solana", "symbol": "S"}

    opts = options_for_config(Cfg())
    assert (opts.format, opts.symbol, opts.name_prefix, opts.description, opts.base_uri) == ("solana", "S", "P", "D", "ipfs://U")
    Cfg.metadata = MetadataOptions(symbol="T", name_prefix="ignored")
    assert options_for_config(Cfg()) == MetadataOptions(symbol="T", name_prefix="P", description="D", base_uri="ipfs://U")
    Cfg.metadata = {"format": "nope"}
    with pytest.raises(ConfigError, match="config: metadata.format"):
        options_for_config(Cfg())


def test_bytes_are_deterministic_across_processes(tmp_path):
    # Hash seeds differ between the processes: any set or hash-ordered structure would show.
    script = textwrap.dedent(f"""
        import sys, tomllib
        from gpucomp.metadata.tokens import item_metadata, options_from_table
        from gpucomp._shared.files import json_bytes
        table = tomllib.loads('''
        format = "solana"
        creators = [{{address = "{SOL_A}", share = 50}}, {{address = "{SOL_B}", share = 50}}]
        [extra]
        zeta = 1
        alpha = {{b = 2, a = [1, 2, "x"]}}
        [display_types]
        Level = "boost_number"
        Speed = "number"
        ''')
        opts = options_from_table(table, {{}}, "c")
        sys.stdout.buffer.write(b"".join(json_bytes(item_metadata(n, {ATTRS!r}, "d", opts)) for n in range(1, 4)))
    """)
    outs = {subprocess.run([sys.executable, "-c", script], capture_output=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(outs) == 1
    text = outs.pop().decode()
    assert text.index('"zeta"') < text.index('"alpha"') < text.index('"b"') < text.index('"a"')


# --- extra, display_type ------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["name", "image", "attributes", "dna", "edition", "properties", "symbol"])
def test_extra_cannot_override_reserved_keys(key):
    with pytest.raises(ConfigError, match=f"^c.toml: metadata.extra.{key}: '{key}' is written by gpucomp"):
        options_from_table({"extra": {key: "x"}}, {}, "c.toml")


def test_extra_must_be_json():
    table = tomllib.loads("[extra]\nok = 1\nwhen = 1979-05-27T07:32:00Z\n")
    with pytest.raises(ConfigError, match="c.toml: metadata.extra.when: a datetime cannot be written to JSON"):
        options_from_table(table, {}, "c.toml")
    with pytest.raises(ConfigError, match=r"c.toml: metadata.extra.x\[1\]: nan cannot"):
        options_from_table({"extra": {"x": [1, float("nan")]}}, {}, "c.toml")


def test_extra_is_copied_not_shared():
    opts = options_from_table({"extra": {"tags": ["a"]}}, {}, "c")
    meta = item_metadata(1, [], DNA, opts)
    meta["tags"].append("b")
    assert item_metadata(1, [], DNA, opts)["tags"] == ["a"]


@pytest.mark.parametrize("text,want", [("7", 7), ("-3", -3), ("2.5", 2.5), ("+1.0", 1.0), ("1e3", 1000.0), (".5", 0.5)])
def test_display_type_values_become_numbers(text, want):
    opts = MetadataOptions(display_types={"Level": "date"})
    value = item_metadata(1, [("Level", text)], DNA, opts)["attributes"][0]["value"]
    assert value == want and type(value) is type(want)


@pytest.mark.parametrize("text", ["seven", "7 ", "1_000", "nan", "inf", "1e999", "٣", ""])
def test_display_type_needs_a_number(text):
    opts = MetadataOptions(display_types={"Level": "number"})
    with pytest.raises(ConfigError, match="display_type 'number' needs numeric values, "
                                          f"but trait 'Level' has the value {text!r}"):
        item_metadata(1, [("Level", text)], DNA, opts)


def test_display_type_must_be_known():
    with pytest.raises(ConfigError, match="c: metadata.display_types.Level: must be one of number, boost_number, "
                                          "boost_percentage, date, got 'percent'"):
        options_from_table({"display_types": {"Level": "percent"}}, {}, "c")


def test_check_traits_before_rendering():
    opts = MetadataOptions(display_types={"Level": "number"})
    check_traits(opts, [("Body", ["Red"]), ("Level", ["1", "2", "10"])], "c")
    with pytest.raises(ConfigError, match="c: metadata.display_types.Level: no layer is named 'Level'; layers: Body"):
        check_traits(opts, [("Body", ["Red"])], "c")
    with pytest.raises(ConfigError, match="trait 'Level' has the value 'max'"):
        check_traits(opts, [("Level", ["1", "max"])], "c")
    with pytest.raises(ConfigError, match="traits '7' and '07' are the same number"):
        check_traits(opts, [("Level", ["7", "07"])], "c")
    check_traits(opts, [("Level", ["7"]), ("Level", ["7", "8"])], "c")  # the same layer in two stacks


# --- options: validation, errors, round trip ----------------------------------------------------

def test_creators_validation():
    ok = options_from_table({"format": "solana", "creators": [{"address": SOL_A, "share": 100}]}, {}, "c")
    assert ok.creators == ((SOL_A, 100),)
    # Shares only have to add up for solana (erc721 ignores creators).
    assert options_from_table({"creators": [{"address": "0xabc", "share": 30}]}, {}, "c").creators == (("0xabc", 30),)
    cases = [
        ({"format": "solana", "creators": [{"address": SOL_A, "share": 60}, {"address": SOL_B, "share": 30}]},
         r"c: metadata.creators: shares must add up to 100 for solana, got 90 \(60 \+ 30\)"),
        ({"format": "solana", "creators": [{"address": "0xabc", "share": 100}]},
         r"c: metadata.creators\[0\].address: not a Solana address"),
        ({"creators": [{"address": SOL_A, "share": 101}]}, r"c: metadata.creators\[0\].share: must be 0 to 100"),
        ({"creators": [{"address": SOL_A, "share": 50}, {"address": SOL_A, "share": 50}]},
         r"c: metadata.creators\[1\].address: '.*' is listed twice"),
        ({"creators": [{"address": SOL_A}]}, r"c: metadata.creators\[0\]: needs both address and share"),
        ({"creators": [{"address": SOL_A, "share": 1, "royalty": 2}]},
         r"c: metadata.creators\[0\]: unknown key royalty; known: address, share"),
        ({"creators": [{"address": " ", "share": 1}]}, r"c: metadata.creators\[0\].address: must not be empty"),
        ({"creators": {"address": SOL_A}}, "c: metadata.creators: expected an array"),
    ]
    for table, message in cases:
        with pytest.raises(ConfigError, match=message):
            options_from_table(table, {}, "c")


def test_options_from_table_errors():
    src = "collection.toml"
    cases = [
        ({"fromat": "solana"}, f"^{src}: unknown key metadata.fromat; known: format, external_url, symbol, "
                               "seller_fee_basis_points, creators, extra, display_types, omit, collection_name, "
                               "engine_dna$"),
        ({"creators": [{"address": SOL_A, "share": "x"}]},
         rf"^{src}: metadata.creators\[0\].share: expected int, got str 'x'$"),
        ({"seller_fee_basis_points": True}, f"^{src}: metadata.seller_fee_basis_points: expected int, got bool True$"),
        ({"seller_fee_basis_points": 10001}, f"^{src}: metadata.seller_fee_basis_points: must be 0 to 10000"),
        ({"format": "eth"}, f"^{src}: metadata.format: must be one of erc721, solana, erc1155, tezos, got 'eth'$"),
        ({"symbol": 5}, f"^{src}: metadata.symbol: expected str, got int 5$"),
        ({"format": "solana", "symbol": "ELEVENCHARS"}, f"^{src}: metadata.symbol: at most 10 bytes for solana"),
        ({"extra": [1]}, f"^{src}: metadata.extra: expected a table"),
    ]
    for table, message in cases:
        with pytest.raises(ConfigError, match=message):
            options_from_table(table, {}, src)
    with pytest.raises(ConfigError, match=f"^{src}: collection.base_uri: expected str, got int 3$"):
        options_from_table({}, {"base_uri": 3}, src)
    with pytest.raises(ConfigError, match=rf"^{src}: \[metadata\] must be a table$"):
        options_from_table([], {}, src)


def test_options_from_a_toml_file_table():
    table = tomllib.loads(f"""
format = "solana"
symbol = "BLOB"
seller_fee_basis_points = 250
creators = [{{address = "{SOL_A}", share = 100}}]
display_types = {{Level = "number"}}
[extra]
collection = {{name = "Blobs"}}
""")
    opts = options_from_table(table, {"name_prefix": "Blob", "size": 10}, "c")
    assert opts == MetadataOptions(format="solana", name_prefix="Blob", symbol="BLOB", seller_fee_basis_points=250,
                                   creators=((SOL_A, 100),), extra={"collection": {"name": "Blobs"}},
                                   display_types={"Level": "number"})


def test_to_dict_round_trip_and_old_manifests():
    opts = MetadataOptions(format="solana", name_prefix="P", description="D", base_uri="", external_url="u",
                           symbol="S", seller_fee_basis_points=9, creators=((SOL_A, 70), (SOL_B, 30)),
                           extra={"k": [1, {"a": None}]}, display_types={"L": "date"})
    d = json.loads(json.dumps(opts.to_dict()))
    assert d["creators"] == [{"address": SOL_A, "share": 70}, {"address": SOL_B, "share": 30}]
    assert MetadataOptions.from_dict(d) == opts
    assert MetadataOptions.from_dict({}) == MetadataOptions()
    old = {"name_prefix": "Z", "description": "d", "base_uri": "ipfs://X", "layers": [[]]}
    assert MetadataOptions.from_dict(old) == MetadataOptions(name_prefix="Z", description="d", base_uri="ipfs://X")
    with pytest.raises(ConfigError, match=r"^m.json: metadata.creators\[0\].share: expected int"):
        MetadataOptions.from_dict({"creators": [{"address": SOL_A, "share": 1.5}]}, "m.json")


# --- update_metadata on a real collection -------------------------------------------------------

@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    return make_layers(tmp_path_factory.mktemp("meta") / "layers", layers=4, traits=14, size=32, seed=3)


@pytest.fixture
def collection(layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(layers, out, size=8, seed=1)
    return out


def snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def read_meta(out):
    return {int(p.stem): json.loads(p.read_text()) for p in (out / "metadata").glob("*.json")}


def test_pipeline_metadata_equals_item_metadata(collection):
    for n, meta in read_meta(collection).items():
        attrs = [(a["trait_type"], a["value"]) for a in meta["attributes"]]
        want = json_bytes(item_metadata(n, attrs, meta["dna"], options_for_config(Config())))
        assert (collection / "metadata" / f"{n}.json").read_bytes() == want


def test_update_rewrites_metadata_and_nothing_else(collection):
    out = collection
    images = snapshot(out / "images")
    before = read_meta(out)
    manifest_before = json.loads((out / "gpucomp.json").read_text())
    others = {name: (out / name).read_bytes() for name in ("rarity.json", "provenance.json", "summary.json")}
    logs = []
    changed = update_metadata(out, {"base_uri": "ipfs://NEWCID/", "name_prefix": "Blob", "description": "new"},
                              log=logs.append)
    assert changed == 8 and logs == ["metadata: 8 of 8 files rewritten (erc721)"]
    assert snapshot(out / "images") == images
    assert {name: (out / name).read_bytes() for name in others} == others
    after = read_meta(out)
    assert sorted(after) == list(range(1, 9))
    for n, meta in after.items():
        assert meta == {**before[n], "name": f"Blob #{n}", "description": "new", "image": f"ipfs://NEWCID/{n}.png"}
    collected = json.loads((out / "_metadata.json").read_text())
    assert collected == [after[n] for n in range(1, 9)]
    manifest = json.loads((out / "gpucomp.json").read_text())
    want = {**MetadataOptions().to_dict(), "name_prefix": "Blob", "description": "new", "base_uri": "ipfs://NEWCID/"}
    assert {k: manifest["metadata"][k] for k in want} == want
    assert MetadataOptions.from_dict(manifest["metadata"]) == MetadataOptions.from_dict(want)
    for key, value in manifest_before["metadata"].items():  # what is not an option is kept
        if key not in want:
            assert manifest["metadata"][key] == (value if key != "table" else
                                                 {k: v for k, v in want.items() if k in TABLE_KEYS})
    # The config resume/extend/rerender rebuild from gets the new options too.
    config = manifest_before.get("source", {}).get("config")
    if config is not None:
        config.update(name_prefix="Blob", description="new", base_uri="ipfs://NEWCID/",
                      metadata={k: v for k, v in want.items() if k in TABLE_KEYS})
    assert {k: v for k, v in manifest.items() if k != "metadata"} == \
        {k: v for k, v in manifest_before.items() if k != "metadata"}
    assert not (out / ".gpucomp.lock").exists()


def test_resume_from_the_manifest_keeps_the_update(collection):
    from gpucomp.outdir.pipeline import resume

    update_metadata(collection, {"base_uri": "ipfs://KEEP", "name_prefix": "Kept", "description": "d"})
    meta = {k: v[0] for k, v in snapshot(collection / "metadata").items()}
    for _ in resume(collection):
        pass
    assert {k: v[0] for k, v in snapshot(collection / "metadata").items()} == meta


def test_update_is_idempotent(collection):
    update_metadata(collection, {"base_uri": "ipfs://X"})
    meta = snapshot(collection / "metadata")
    assert update_metadata(collection, {"base_uri": "ipfs://X"}) == 0
    assert update_metadata(collection, {}) == 0  # the manifest remembers the options
    assert snapshot(collection / "metadata") == meta


def test_update_back_to_the_defaults_restores_the_original_bytes(collection):
    original = snapshot(collection / "metadata")
    collected = (collection / "_metadata.json").read_bytes()
    update_metadata(collection, {"base_uri": "https://x", "external_url": "https://e", "extra": {"k": 1}})
    assert update_metadata(collection, {"base_uri": MetadataOptions().base_uri, "external_url": "", "extra": {}}) == 8
    assert {k: v[0] for k, v in snapshot(collection / "metadata").items()} == {k: v[0] for k, v in original.items()}
    assert (collection / "_metadata.json").read_bytes() == collected


def test_update_to_solana_and_back(collection):
    original = {k: v[0] for k, v in snapshot(collection / "metadata").items()}
    update_metadata(collection, {"format": "solana", "symbol": "BLOB", "base_uri": "",
                                 "creators": [(SOL_A, 100)]})
    meta = read_meta(collection)
    assert meta[2]["image"] == "2.png" and meta[2]["properties"]["creators"] == [{"address": SOL_A, "share": 100}]
    assert "dna" not in meta[2]
    # Solana metadata has no dna, so it cannot be turned back into erc721 without the plan: refused, nothing written.
    solana = {k: v[0] for k, v in snapshot(collection / "metadata").items()}
    manifest = (collection / "gpucomp.json").read_bytes()
    with pytest.raises(OutputError, match=r"metadata/1.json: has no dna .* re-run `gpucomp generate`"):
        update_metadata(collection, {"format": "erc721"})
    assert {k: v[0] for k, v in snapshot(collection / "metadata").items()} == solana
    assert (collection / "gpucomp.json").read_bytes() == manifest
    assert original != solana


def test_numeric_traits_keep_their_names(layers, tmp_path):
    numeric = tmp_path / "layers"
    shutil.copytree(layers, numeric)
    eyes = numeric / "04-Eyes"
    for p, name in zip(sorted(eyes.iterdir()), ["07", "2.50", "3"], strict=True):
        p.rename(eyes / f"{name}#{p.name.split('#')[1]}")
    out = tmp_path / "out"
    gpucomp.run(numeric, out, size=8, seed=1)
    original = {k: v[0] for k, v in snapshot(out / "metadata").items()}
    assert update_metadata(out, {"display_types": {"Eyes": "number"}}) == 8
    values = {m["attributes"][3]["value"] for m in read_meta(out).values()}
    assert values <= {7, 2.5, 3} and all(type(v) in (int, float) for v in values)
    with pytest.raises(ConfigError, match="trait 'Body' has the value"):
        update_metadata(out, {"display_types": {"Body": "number"}})
    assert update_metadata(out, {"display_types": {}}) == 8
    assert {k: v[0] for k, v in snapshot(out / "metadata").items()} == original  # '07', not '7'


def test_update_refused_while_the_output_is_locked(collection):
    meta = snapshot(collection / "metadata")
    with OutputLock(collection):
        with pytest.raises(OutputError, match="another gpucomp run is writing to this folder"):
            update_metadata(collection, {"base_uri": "ipfs://X"})
    assert snapshot(collection / "metadata") == meta
    assert update_metadata(collection, {"base_uri": "ipfs://X"}) == 8


def test_missing_metadata_file_is_a_clear_error_and_generate_repairs_it(layers, collection):
    (collection / "metadata" / "5.json").unlink()
    meta = snapshot(collection / "metadata")
    manifest = (collection / "gpucomp.json").read_bytes()
    with pytest.raises(OutputError, match=r"out/metadata/5.json: missing; re-run `gpucomp generate` with the same "
                                          r"layers and settings into .*out, which repairs it"):
        update_metadata(collection, {"base_uri": "ipfs://X"})
    assert snapshot(collection / "metadata") == meta and (collection / "gpucomp.json").read_bytes() == manifest
    gpucomp.run(layers, collection, size=8, seed=1)
    assert update_metadata(collection, {"base_uri": "ipfs://X"}) == 8


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"attributes": [{"trait_type": "A"}]}',
                                     b'{"attributes": [], "edition": 99}', b"\xff\xfe"])
def test_broken_metadata_file_is_named(collection, content):
    (collection / "metadata" / "3.json").write_bytes(content)
    with pytest.raises(OutputError, match=r"metadata/3.json: unreadable \(.*\); re-run `gpucomp generate`"):
        update_metadata(collection, {"base_uri": "ipfs://X"})
    assert json.loads((collection / "metadata" / "1.json").read_text())["image"] != "ipfs://X/1.png"


def test_not_a_gpucomp_output(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(OutputError, match="not a gpucomp output"):
        update_metadata(tmp_path, {"base_uri": "ipfs://X"})
    with pytest.raises(OutputError, match="not a gpucomp output"):
        update_metadata(tmp_path / "missing", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]  # no lock file left behind


def test_unfinished_collection_is_refused(collection):
    (collection / "provenance.json").unlink()
    with pytest.raises(OutputError, match="collection is not finished .*gpucomp resume"):
        update_metadata(collection, {})


def test_bad_changes_are_refused_before_writing(collection):
    meta = snapshot(collection / "metadata")
    with pytest.raises(ConfigError, match="update-metadata: unknown option 'base_url'; known: format, name_prefix"):
        update_metadata(collection, {"base_url": "x"})
    with pytest.raises(ConfigError, match="update-metadata: seller_fee_basis_points: must be 0 to 10000"):
        update_metadata(collection, {"seller_fee_basis_points": -1})
    with pytest.raises(ConfigError, match="update-metadata: extra.image: 'image' is written by gpucomp"):
        update_metadata(collection, {"extra": {"image": "x"}})
    assert snapshot(collection / "metadata") == meta


def test_update_metadata_checks_display_types_like_generate(tmp_path):
    from gpucomp.demo import make_layers

    layers = make_layers(tmp_path / "layers", layers=4, traits=14, size=32, seed=3)
    out = tmp_path / "out"
    gpucomp.run(layers, out, size=4, seed=1)
    before = (out / "metadata" / "1.json").read_bytes()
    with pytest.raises(ConfigError, match="Body"):
        update_metadata(out, {"display_types": {"Body": "number"}})  # trait names are not numbers
    assert (out / "metadata" / "1.json").read_bytes() == before


# --- attribute order: the layers' order, never the alphabet ----------------------------------------
#
# Every other fixture names its layers in alphabetical order (Background, Body, Clothes, Eyes), so
# a sort by name anywhere between the plan and the files would go unseen. Here the folders'
# natural order (1, 2, 10) is neither the alphabetical order of their display names nor the
# string order of the folder names, and a config puts them in yet another order.

ORDER_LAYERS = {"1-Zebra": ["Black", "White"], "2-Apple": ["Red", "Green"], "10-Mango": ["Ring", "Dot", "Star"]}


@pytest.fixture(scope="module")
def order_layers(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("order") / "layers"
    for li, (folder, traits) in enumerate(ORDER_LAYERS.items()):
        (root / folder).mkdir(parents=True)
        for ti, name in enumerate(traits):
            px = [(40 * li + 60 * ti, 90 * ti, 30 * li, 255 if li == 0 else 128)] * 16
            im = Image.new("RGBA", (4, 4))
            im.putdata(px)
            im.save(root / folder / f"{name}.png")
    return root


def layer_order_files(out):
    """Layer names in the order each output file shows them: {item: [trait_type...]} from the
    item files and from _metadata.json, rarity.json's layers, rarity.csv's header, rarity.txt."""
    items = {n: [a["trait_type"] for a in m["attributes"]] for n, m in read_meta(out).items()}
    combined = json.loads((out / "_metadata.json").read_text(encoding="utf-8"))
    rarity = json.loads((out / "rarity.json").read_text(encoding="utf-8"))
    header = (out / "rarity.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    text = [line.split(": ", 1)[1] for line in (out / "rarity.txt").read_text(encoding="utf-8").splitlines()
            if line.startswith("Layer ")]
    return {
        "items": items,
        "combined": {m["edition"]: [a["trait_type"] for a in m["attributes"]] for m in combined},
        "combined_numbers": [m["edition"] for m in combined],
        "rarity_json": [layer["name"] for layer in rarity["layers"]],
        "rarity_csv": [c for c in header[4:] if c not in OPENRARITY_COLUMNS],  # those follow the layers
        "rarity_txt": text,
    }


def check_values_follow_the_layers(out):
    """Each item's attribute values, the CSV row and rarity.json's rarest items put every trait
    under its own layer."""
    meta = read_meta(out)
    rows = (out / "rarity.csv").read_text(encoding="utf-8").splitlines()
    header = rows[0].split(",")
    rarity = json.loads((out / "rarity.json").read_text(encoding="utf-8"))
    traits_of = {layer["name"]: [t["name"] for t in layer["traits"]] for layer in rarity["layers"]}
    for row in rows[1:]:
        cells = dict(zip(header, row.split(","), strict=True))
        attrs = {a["trait_type"]: a["value"] for a in meta[int(cells["number"])]["attributes"]}
        assert {k: v for k, v in cells.items() if k in attrs} == attrs
    for item in rarity["summary"]["rarest"]:
        assert [t in traits_of[name] for name, t in zip(traits_of, item["traits"], strict=True)] == [True] * len(traits_of)


def test_attributes_follow_the_natural_order_of_the_layer_folders(order_layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(order_layers, out, size=6, seed=2)
    want = ["Zebra", "Apple", "Mango"]  # 1, 2, 10: not Apple, Mango, Zebra and not 1, 10, 2
    got = layer_order_files(out)
    assert got["items"] == {n: want for n in range(1, 7)}
    assert got["combined"] == got["items"] and got["combined_numbers"] == list(range(1, 7))
    assert got["rarity_json"] == got["rarity_csv"] == got["rarity_txt"] == want
    check_values_follow_the_layers(out)


def test_attributes_follow_the_order_of_the_config(order_layers, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent("""
        [[layers]]
        folder = "10-Mango"
        [[layers]]
        folder = "1-Zebra"
        name = "Yak"
        [[layers]]
        folder = "2-Apple"
    """), encoding="utf-8")
    out = tmp_path / "out"
    gpucomp.run(order_layers, out, cfg, size=6, seed=2)
    want = ["Mango", "Yak", "Apple"]
    got = layer_order_files(out)
    assert got["items"] == got["combined"] == {n: want for n in range(1, 7)}
    assert got["rarity_json"] == got["rarity_csv"] == got["rarity_txt"] == want
    check_values_follow_the_layers(out)


def test_attributes_of_stacks_follow_each_stacks_order(order_layers, tmp_path):
    """Each item lists its own stack's layers in that stack's order; the rarity report lists
    the layers in the order they first appear, stack after stack."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent("""
        [collection]
        shuffle = true
        [[stacks]]
        size = 3
        layers = ["2-Apple", "1-Zebra"]
        [[stacks]]
        size = 4
        layers = ["10-Mango", "1-Zebra", "2-Apple"]
    """), encoding="utf-8")
    out = tmp_path / "out"
    gpucomp.run(order_layers, out, cfg, seed=5)
    got = layer_order_files(out)
    orders = sorted(map(tuple, got["items"].values()))
    assert orders == [("Apple", "Zebra")] * 3 + [("Mango", "Zebra", "Apple")] * 4
    assert got["combined"] == got["items"] and got["combined_numbers"] == list(range(1, 8))
    assert got["rarity_json"] == got["rarity_csv"] == got["rarity_txt"] == ["Apple", "Zebra", "Mango"]
    check_values_follow_the_layers(out)


def test_item_metadata_keeps_the_order_it_is_given():
    attrs = [("Zebra", "7"), ("Apple", "Red"), ("Mango", "2.5")]
    for fmt in FORMATS:
        opts = MetadataOptions(format=fmt, display_types={"Zebra": "number"})
        meta = item_metadata(1, attrs, DNA, opts)
        key = "name" if fmt == "tezos" else "trait_type"  # TZIP-21 names the trait type `name`
        assert [a[key] for a in meta["attributes"]] == ["Zebra", "Apple", "Mango"]
        assert [a["value"] for a in meta["attributes"]] == [7, "Red", "2.5"]


# --- limits checked before anything is written ---------------------------------------------------

HUGE_DESCRIPTION = '"' * (9 << 20)  # 9 MiB of quotes: 18 MiB once JSON escapes them, past the 16 MiB an item holds


def test_metadata_too_large_for_an_item_is_refused_before_anything_renders(layers, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"config: one item's metadata would be 18874\d{3} bytes, more than the "
                                          r"16777216 gpucomp writes \(the description is 9437184 bytes\)"):
        gpucomp.run(layers, out, size=3, seed=1, description=HUGE_DESCRIPTION)
    assert not (out / "images").exists() and not (out / "metadata").exists()


def test_an_update_too_large_for_an_item_rewrites_nothing(collection):
    before = snapshot(collection / "metadata")
    with pytest.raises(ConfigError, match="update-metadata: one item's metadata would be"):
        update_metadata(collection, {"description": HUGE_DESCRIPTION})
    assert snapshot(collection / "metadata") == before


@pytest.mark.parametrize("start, size", [(2**53 - 2, 3), (2**53, 1), (2**53 - 1000, 1001)])
def test_numbers_past_what_a_double_holds_are_refused(layers, tmp_path, start, size):
    """Marketplaces and JavaScript read JSON numbers as doubles: 2^53 + 1 reads as 2^53, so two
    editions would be one. Refused before anything is written."""
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"past 2\^53 - 1 \(9007199254740991\).*lower collection.start"):
        gpucomp.run(layers, out, size=size, seed=1, start=start)
    assert not (out / "images").exists()


def test_numbers_up_to_what_a_double_holds_are_fine(layers, tmp_path):
    gpucomp.run(layers, tmp_path / "out", size=2, seed=1, start=2**53 - 2)
    meta = json.loads((tmp_path / "out" / "metadata" / f"{2**53 - 1}.json").read_text())
    assert meta["edition"] == 2**53 - 1 and float(meta["edition"]) == 2**53 - 1
