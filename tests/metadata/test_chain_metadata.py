"""Chain-exact metadata: ERC-1155 and Tezos TZIP-21 items, fields left out on request, Solana's
on-chain limits checked before anything renders, 0-based Solana numbering, and the upload layouts
(`gpucomp export`: Sugar's assets/ folder, ERC-1155 {id} names)."""
import json
import os

import pytest

import gpucomp
from gpucomp.cli import main
from gpucomp.config import Config, load_config, with_overrides
from gpucomp.errors import ConfigError, OutputError
from gpucomp.metadata.tokens import MetadataOptions, item_metadata, options_for_config, options_from_table
from gpucomp.outdir.update import update_metadata
from gpucomp.publish.export import erc1155_name, export

SOL_A = "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV"
SOL_B = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"
TZ_A = "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb"
TZ_B = "KT1PWx2mnDueood7fEmfbBDKx1D9BAnnXitn"
DNA = "0123456789abcdef0123456789abcdef01234567"
ATTRS = [("Background", "Blue"), ("Level", "07")]


# --- formats ------------------------------------------------------------------------------------

def test_erc1155_exact():
    opts = options_from_table({"format": "erc1155"}, {"base_uri": "ipfs://CID"}, "c.toml")
    meta = item_metadata(10, ATTRS, DNA, opts)
    want = {"name": "Item #10", "description": "", "image": "ipfs://CID/10.png", "decimals": 0, "dna": DNA,
            "edition": 10, "attributes": [{"trait_type": "Background", "value": "Blue"},
                                          {"trait_type": "Level", "value": "07"}],
            "compiler": "gpucomp"}
    assert meta == want and list(meta) == list(want)


def test_erc1155_file_names_are_64_lower_case_hex_digits():
    assert erc1155_name(10) == "0" * 63 + "a.json"
    assert erc1155_name(0) == "0" * 64 + ".json"
    assert erc1155_name(2**256 - 1) == "f" * 64 + ".json"
    with pytest.raises(ValueError):
        erc1155_name(2**256)


def test_tezos_tzip21_exact():
    opts = options_from_table(
        {"format": "tezos", "symbol": "APE", "seller_fee_basis_points": 750, "external_url": "https://apes.example",
         "creators": [{"address": TZ_A, "share": 60}, {"address": TZ_B, "share": 40}],
         "display_types": {"Level": "number"}},
        {"name_prefix": "Ape", "description": "Apes", "base_uri": "ipfs://CID/"}, "c.toml")
    meta = item_metadata(3, ATTRS, DNA, opts)
    image = "ipfs://CID/3.png"
    want = {
        "name": "Ape #3", "symbol": "APE", "description": "Apes", "decimals": 0, "isBooleanAmount": True,
        "artifactUri": image, "displayUri": image, "thumbnailUri": image,
        "formats": [{"uri": image, "mimeType": "image/png"}],
        "creators": [TZ_A, TZ_B],
        # 7.5% of a sale with 6 decimals, split 60/40
        "royalties": {"decimals": 6, "shares": {TZ_A: 45000, TZ_B: 30000}},
        "externalUri": "https://apes.example",
        "dna": DNA, "edition": 3,
        "attributes": [{"name": "Background", "value": "Blue"},
                       {"display_type": "number", "name": "Level", "value": 7}],
        "compiler": "gpucomp",
    }
    assert meta == want and list(meta) == list(want)
    assert sum(meta["royalties"]["shares"].values()) / 10**6 == 0.075


def test_tezos_addresses_and_shares_are_checked():
    with pytest.raises(ConfigError, match=r"^c.toml: metadata.creators\[0\].address: not a Tezos address"):
        options_from_table({"format": "tezos", "creators": [{"address": SOL_A, "share": 100}]}, {}, "c.toml")
    with pytest.raises(ConfigError, match=r"^c.toml: metadata.creators: shares must add up to 100 for tezos"):
        options_from_table({"format": "tezos", "creators": [{"address": TZ_A, "share": 90}]}, {}, "c.toml")


@pytest.mark.parametrize("fmt", ["erc721", "solana", "erc1155", "tezos"])
def test_omit_leaves_out_dna_edition_and_compiler(fmt):
    opts = options_from_table({"format": fmt, "omit": ["dna", "edition", "compiler"]}, {}, "c.toml")
    full = item_metadata(4, ATTRS, DNA, options_from_table({"format": fmt}, {}, "c.toml"))
    meta = item_metadata(4, ATTRS, DNA, opts)
    assert not {"dna", "edition", "compiler"} & set(meta)
    assert meta == {k: v for k, v in full.items() if k not in ("dna", "edition", "compiler")}
    assert list(meta) == [k for k in full if k in meta]  # the other fields keep their order


def test_omit_names_only_known_fields():
    with pytest.raises(ConfigError, match=r"^c.toml: metadata.omit: 'image' cannot be left out; these can: "
                                          r"dna, edition, compiler$"):
        options_from_table({"omit": ["image"]}, {}, "c.toml")
    with pytest.raises(ConfigError, match=r"^c.toml: metadata.omit: expected an array"):
        options_from_table({"omit": "dna"}, {}, "c.toml")


def test_default_options_write_what_they_always_wrote():
    # new keys appear in the manifest's options only when set, so earlier collections read the same
    assert "omit" not in MetadataOptions().to_dict() and "collection_name" not in MetadataOptions().to_dict()
    opts = MetadataOptions(omit=("dna",), collection_name="Apes")
    assert MetadataOptions.from_dict(opts.to_dict()) == opts


@pytest.mark.parametrize("fmt", ["erc721", "solana", "erc1155", "tezos"])
def test_numeric_looking_values_stay_as_written(fmt):
    values = [("A", "07"), ("B", "1e3"), ("C", "2.50"), ("D", "-0"), ("E", "true")]
    meta = item_metadata(1, values, DNA, options_from_table({"format": fmt}, {}, "c.toml"))
    assert [a["value"] for a in meta["attributes"]] == ["07", "1e3", "2.50", "-0", "true"]
    typed = options_from_table({"format": fmt, "display_types": {"A": "number", "C": "boost_number"}}, {}, "c.toml")
    assert [a["value"] for a in item_metadata(1, values, DNA, typed)["attributes"]] == [7, "1e3", 2.5, "-0", "true"]


# --- Solana's on-chain limits, before anything renders -------------------------------------------

def solana(table=None, **cfg):
    return Config(metadata={"format": "solana", **(table or {})}, start=cfg.pop("start", 0), **cfg)


@pytest.mark.parametrize("cfg, message", [
    # 29 bytes + " #99" = 33 bytes: the longest name is the one with the highest number
    (solana(name_prefix="x" * 29, size=100), r"collection.name_prefix: solana names are at most 32 bytes on chain, "
                                             r"and item 99 would be 'x{29} #99' \(33 bytes\); shorten the prefix "
                                             r"to at most 28 bytes"),
    (solana(name_prefix="é" * 15, size=10), r"collection.name_prefix: .* at most 32 bytes .*\(33 bytes\)"),
    (solana({"symbol": "ÄÄÄÄÄÄ"}), r"metadata.symbol: at most 10 bytes for solana .*\(12 bytes\)"),
    (solana({"collection_name": "C" * 33}), r"metadata.collection_name: the collection's name is at most 32 bytes"),
    (solana(base_uri="https://x.example/" + "a" * 175, size=1000),
     r"collection.base_uri: solana URIs are at most 200 bytes on chain, and '.*/999.json' is 202"),
    (solana({"creators": [{"address": f"{SOL_A[:-1]}{c}", "share": 20 if c != "F" else 0} for c in "ABCDEF"]}),
     r"metadata.creators: at most 5 creators for solana \(an on-chain limit\), got 6"),
    (solana({"creators": [{"address": SOL_A, "share": 60}, {"address": SOL_B, "share": 30}]}),
     r"metadata.creators: shares must add up to 100 for solana, got 90 \(60 \+ 30\)"),
    (solana({"seller_fee_basis_points": 10001}), r"metadata.seller_fee_basis_points: must be 0 to 10000"),
])
def test_solana_limits_name_the_key_and_the_limit(cfg, message):
    with pytest.raises(ConfigError, match=r"^opts: " + message):
        options_for_config(cfg, "opts")


def test_solana_limits_pass_at_the_limit():
    options_for_config(solana(name_prefix="x" * 29, size=10), "opts")  # 'x'*29 + ' #9' = 32 bytes
    options_for_config(solana({"symbol": "ÄÄÄÄÄ"}), "opts")  # 10 bytes
    options_for_config(solana(base_uri="https://x.example/" + "a" * 173, size=1000), "opts")  # 200 bytes


def test_a_limit_is_refused_before_anything_is_written(demo_layers, tmp_path):
    (tmp_path / "c.toml").write_text('[collection]\nname_prefix = "A long name for the collection"\n'
                                     '[metadata]\nformat = "solana"\n', encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"c.toml: collection.name_prefix: solana names are at most 32 bytes"):
        gpucomp.run(demo_layers, out, tmp_path / "c.toml", size=10)
    assert not out.exists()
    assert main(["validate", str(demo_layers), "-c", str(tmp_path / "c.toml"), "-n", "10"]) == 2


def test_extend_past_the_name_limit_is_refused_before_rendering(demo_layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=10, start=0, name_prefix="x" * 29, base_uri="",
                metadata={"format": "solana"})
    before = sorted(os.listdir(out / "images"))
    with pytest.raises(ConfigError, match=r"item 10 would be 'x{29} #10' \(33 bytes\)"):
        list(gpucomp.extend(out, 1))  # a Generation: checks run when iteration starts
    assert sorted(os.listdir(out / "images")) == before


def test_solana_numbers_from_0_unless_start_is_set(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[metadata]\nformat = "solana"\n', encoding="utf-8")
    assert load_config(path).start == 0
    path.write_text('[collection]\nstart = 5\n[metadata]\nformat = "solana"\n', encoding="utf-8")
    assert load_config(path).start == 5
    path.write_text('[metadata]\nformat = "erc721"\n', encoding="utf-8")
    assert load_config(path).start == 1
    assert with_overrides(Config(), metadata={"format": "solana"}).start == 0
    assert with_overrides(Config(), metadata={"format": "solana"}, start=1).start == 1


# --- update-metadata with fields left out --------------------------------------------------------

def test_update_metadata_can_leave_out_fields_but_not_bring_back_a_dna_it_dropped(demo_layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=6, seed=2)
    update_metadata(out, {"omit": ("dna", "compiler")})
    meta = json.loads((out / "metadata" / "1.json").read_text(encoding="utf-8"))
    assert "dna" not in meta and "compiler" not in meta and meta["edition"] == 1
    with pytest.raises(OutputError, match=r"1.json: has no dna \(it was left out\)"):
        update_metadata(out, {"omit": ()})
    update_metadata(out, {"format": "tezos", "omit": ("dna",)})  # TZIP-21 attributes read back too
    meta = json.loads((out / "metadata" / "1.json").read_text(encoding="utf-8"))
    assert meta["decimals"] == 0 and "name" in meta["attributes"][0]


# --- export: Sugar's assets/ and ERC-1155 names --------------------------------------------------

SOLANA_TOML = """
[collection]
seed = 3
base_uri = ""
[metadata]
format = "solana"
symbol = "DEMO"
collection_name = "Demo Collection"
seller_fee_basis_points = 500
creators = [{ address = "%s", share = 100 }]
""" % SOL_A


@pytest.fixture
def sol(demo_layers, tmp_path):
    (tmp_path / "c.toml").write_text(SOLANA_TOML, encoding="utf-8")
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, tmp_path / "c.toml", size=7, shuffle=True)
    return out


def test_sugar_layout(sol):
    dest = export(sol, "sugar")
    assert dest == sol / "assets"
    names = sorted(os.listdir(dest))
    assert names == sorted([f"{n}.png" for n in range(7)] + [f"{n}.json" for n in range(7)]
                           + ["collection.json", "collection.png"])
    for n in range(7):
        for src, name in ((sol / "images" / f"{n}.png", f"{n}.png"), (sol / "metadata" / f"{n}.json", f"{n}.json")):
            assert os.path.samefile(src, dest / name)  # hard links: no second copy
        meta = json.loads((dest / f"{n}.json").read_text(encoding="utf-8"))
        assert meta["image"] == f"{n}.png" and meta["properties"]["files"][0]["uri"] == f"{n}.png"
        assert meta["name"] == f"Item #{n}"
    coll = json.loads((dest / "collection.json").read_text(encoding="utf-8"))
    assert coll == {"name": "Demo Collection", "symbol": "DEMO", "description": "", "seller_fee_basis_points": 500,
                    "image": "collection.png", "attributes": [],
                    "properties": {"files": [{"uri": "collection.png", "type": "image/png"}], "category": "image",
                                   "creators": [{"address": SOL_A, "share": 100}]}}
    assert (dest / "collection.png").read_bytes() == (sol / "images" / "0.png").read_bytes()
    assert not [p for p in os.listdir(dest) if p.startswith(".gpucomp-tmp-")]


def test_sugar_export_again_and_as_copies(sol):
    export(sol, "sugar")
    (sol / "assets" / "collection.png").unlink()
    (sol / "assets" / "collection.png").write_bytes(b"my cover")  # the user's own cover is kept
    (sol / "assets" / "9.png").write_bytes(b"stale")  # left by an earlier, larger export
    (sol / "assets" / "notes.txt").write_text("mine")
    export(sol, "sugar", copy=True)
    dest = sol / "assets"
    assert not (dest / "9.png").exists() and (dest / "notes.txt").read_text() == "mine"
    assert (dest / "collection.png").read_bytes() == b"my cover"
    for n in range(7):
        assert not os.path.samefile(sol / "images" / f"{n}.png", dest / f"{n}.png")
        assert (sol / "images" / f"{n}.png").read_bytes() == (dest / f"{n}.png").read_bytes()


def test_export_replaces_links_and_never_writes_through_them(sol, tmp_path):
    victim = tmp_path / "victim.json"
    victim.write_text("untouched")
    (sol / "assets").mkdir()
    os.symlink(victim, sol / "assets" / "0.json")
    export(sol, "sugar")
    assert victim.read_text() == "untouched"
    assert not os.path.islink(sol / "assets" / "0.json")


def test_export_refuses_a_link_as_its_folder(sol, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, sol / "assets")
    with pytest.raises(OutputError, match=r"assets: is a symbolic link"):
        export(sol, "sugar")
    assert os.listdir(elsewhere) == []


def test_sugar_needs_solana_numbered_from_0(demo_layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=4, seed=1)
    with pytest.raises(OutputError, match=r"the sugar layout needs metadata.format = solana, but this collection's "
                                          r"is 'erc721'"):
        export(out, "sugar")
    out2 = tmp_path / "out2"
    gpucomp.run(demo_layers, out2, size=4, seed=1, metadata={"format": "solana"}, start=1)
    with pytest.raises(OutputError, match=r"Sugar needs items numbered 0 to 3 without gaps, and this collection "
                                          r"starts at 1"):
        export(out2, "sugar")
    assert not (out / "assets").exists() and not (out2 / "assets").exists()


def test_sugar_takes_a_jpeg_primary_and_lists_only_files_it_uploads(demo_layers, tmp_path):
    """A JPEG primary with a WebP copy and a x2 size: assets/<n>.jpg (the primary, linked), <n>.json
    whose image and properties.files name it alone (the other files are not in assets/, so Sugar
    would publish relative paths), collection.jpg and a collection.json naming it."""
    (tmp_path / "c.toml").write_text(SOLANA_TOML + '[output]\nformat = ["jpeg", "webp"]\n[[output.sizes]]\n'
                                     'name = "x2"\nscale = 2\n', encoding="utf-8")
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, tmp_path / "c.toml", size=4)
    meta0 = json.loads((out / "metadata" / "0.json").read_text(encoding="utf-8"))
    assert [f["uri"] for f in meta0["properties"]["files"]] == ["0.jpg", "0.webp", "x2/0.jpg", "x2/0.webp"]
    (out / "assets").mkdir()
    (out / "assets" / "3.png").write_bytes(b"an earlier PNG export's")  # Sugar refuses two images for one item
    dest = export(out, "sugar")
    assert sorted(os.listdir(dest)) == sorted([f"{n}.jpg" for n in range(4)] + [f"{n}.json" for n in range(4)]
                                              + ["collection.json", "collection.jpg"])
    for n in range(4):
        assert os.path.samefile(out / "images" / f"{n}.jpg", dest / f"{n}.jpg")
        meta = json.loads((dest / f"{n}.json").read_text(encoding="utf-8"))
        assert meta["image"] == f"{n}.jpg"
        assert meta["properties"]["files"] == [{"uri": f"{n}.jpg", "type": "image/jpeg"}]
        whole = json.loads((out / "metadata" / f"{n}.json").read_text(encoding="utf-8"))
        assert {**whole, "properties": {**whole["properties"], "files": whole["properties"]["files"][:1]}} == meta
    coll = json.loads((dest / "collection.json").read_text(encoding="utf-8"))
    assert coll["image"] == "collection.jpg"
    assert coll["properties"]["files"] == [{"uri": "collection.jpg", "type": "image/jpeg"}]
    assert (dest / "collection.jpg").read_bytes() == (out / "images" / "0.jpg").read_bytes()


def test_sugar_keeps_full_uris_and_refuses_a_webp_primary(demo_layers, tmp_path):
    from gpucomp.publish.export import sugar_metadata

    meta = {"image": "ipfs://CID/0.jpg", "properties": {"files": [
        {"uri": "ipfs://CID/0.jpg", "type": "image/jpeg"}, {"uri": "ipfs://CID/x2/0.jpg", "type": "image/jpeg"},
        {"uri": "x2/0.webp", "type": "image/webp"}]}}
    assert [f["uri"] for f in sugar_metadata(meta, "0.jpg")["properties"]["files"]] == ["ipfs://CID/0.jpg",
                                                                                         "ipfs://CID/x2/0.jpg"]
    plain = {"image": "0.png", "properties": {"files": [{"uri": "0.png", "type": "image/png"}]}}
    assert sugar_metadata(plain, "0.png") is plain  # linked as it is
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=3, seed=1, metadata={"format": "solana"}, formats=["webp", "png"])
    with pytest.raises(OutputError, match=r"Sugar takes PNG, JPEG or GIF item images .* the primary image \(the "
                                          r"first format listed\) is webp; list \"png\" or \"jpeg\" first"):
        export(out, "sugar")
    assert not (out / "assets").exists()

def test_erc1155_layout(demo_layers, tmp_path):
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=12, seed=1, metadata={"format": "erc1155"})
    dest = export(out, "erc1155")
    assert sorted(os.listdir(dest)) == sorted(f"{n:064x}.json" for n in range(1, 13))
    assert os.path.samefile(dest / ("0" * 63 + "a.json"), out / "metadata" / "10.json")


def test_cli_generate_export_checks_before_rendering(demo_layers, tmp_path):
    out = tmp_path / "out"
    assert main(["generate", str(demo_layers), "-o", str(out), "-n", "3", "-q", "--export", "sugar"]) == 2
    assert not out.exists()  # an erc721 collection numbered from 1 does not fit Sugar: refused up front
    (tmp_path / "c.toml").write_text(SOLANA_TOML, encoding="utf-8")
    assert main(["generate", str(demo_layers), "-o", str(out), "-c", str(tmp_path / "c.toml"), "-n", "3", "-q",
                 "--export", "sugar"]) == 0
    assert sorted(os.listdir(out / "assets"))[:2] == ["0.json", "0.png"]
    assert main(["export", str(out), "--layout", "sugar", "--copy", "-q"]) == 0
