"""Traits made of parts, stacking positions and per-trait options: an nftchef-style project rendered
end to end, checked against a float64 reference written from nftchef's rules (not from our code),
and the render-layer expansion itself."""
import json
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import gpucomp
from gpucomp.compositing import composite_dense, finalize, reference
from gpucomp.errors import LayerError
from gpucomp.layers.layerset import load_layers
from gpucomp.plan.collection import stack_layerset
from gpucomp.plan.options import LayerOption, TraitOption

H = W = 10


def art(path, seed, opaque=False):
    """A distinct RGBA image per file: transparent, opaque and half-transparent pixels."""
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    if opaque:
        px[..., 3] = 255
    else:
        px[..., 3] = rng.choice(np.array([0, 0, 90, 180, 255], np.uint8), (H, W))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(px, "RGBA").save(path)
    return px


# The project, and what nftchef draws for each trait value: (file, z, blend, opacity), in the order
# nftchef's sortLayers puts one layer's files (z < 0 by z, z = 0 by DNA string, z > 0 by z).
FILES = {
    "1-Background/z-5,Blue#1.png": True,
    "1-Background/z-5,Red#1.png": True,
    "2-Back/Backpack#50/1backpack-lines.png": False,
    "2-Back/Backpack#50/backpack-FILL.png": False,
    "3-Body/Body.png": False,
    "4-Glasses/Purple Glasses#25/Glasses front.png": False,
    "4-Glasses/Purple Glasses#25/z-1,Glasses back.png": False,
    "4-Glasses/Round#25.png": False,
    "5-Hat/Cap#10?blend=multiply&opacity=50.png": False,
    "5-Hat/z1,Crown#10.png": False,
    "6-Hair/common#70/Long#20.png": False,
    "6-Hair/common#70/Short#20.png": False,
    "6-Hair/rare#30/1-line.png": False,
    "6-Hair/rare#30/2-fill.png": False,
}
DRAWS = {
    ("Background", "Blue"): [("1-Background/z-5,Blue#1.png", -5, "normal", 1.0)],
    ("Background", "Red"): [("1-Background/z-5,Red#1.png", -5, "normal", 1.0)],
    ("Back", "Backpack"): [("2-Back/Backpack#50/1backpack-lines.png", 0, "normal", 1.0),
                           ("2-Back/Backpack#50/backpack-FILL.png", 0, "normal", 1.0)],
    ("Back", None): [],
    ("Body", "Body"): [("3-Body/Body.png", 0, "normal", 1.0)],
    ("Glasses", "Purple Glasses"): [("4-Glasses/Purple Glasses#25/z-1,Glasses back.png", -1, "normal", 1.0),
                                    ("4-Glasses/Purple Glasses#25/Glasses front.png", 0, "normal", 1.0)],
    ("Glasses", "Round"): [("4-Glasses/Round#25.png", 0, "normal", 1.0)],
    ("Hat", "Cap"): [("5-Hat/Cap#10?blend=multiply&opacity=50.png", 0, "multiply", 0.5)],
    ("Hat", "Crown"): [("5-Hat/z1,Crown#10.png", 1, "normal", 1.0)],
    ("Hat", None): [],  # a stack without the Hat layer
    ("Hair", "Long"): [("6-Hair/common#70/Long#20.png", 0, "normal", 1.0)],
    ("Hair", "Short"): [("6-Hair/common#70/Short#20.png", 0, "normal", 1.0)],
    ("Hair", "rare"): [("6-Hair/rare#30/1-line.png", 0, "normal", 1.0), ("6-Hair/rare#30/2-fill.png", 0, "normal", 1.0)],
}
LAYERS = ["Background", "Back", "Body", "Glasses", "Hat", "Hair"]


@pytest.fixture
def nftchef(tmp_path):
    root = tmp_path / "layers"
    pixels = {rel: art(root / rel, k, opaque) for k, (rel, opaque) in enumerate(FILES.items())}
    (root / "2-Back" / "NONE#50.png").write_bytes(b"")  # nftchef's empty trait: a 0-byte file
    return root, pixels


def expected(attrs: dict, pixels: dict) -> np.ndarray:
    """nftchef's picture: every drawn file, a stable sort by z over the layers in order, each
    layer's files in their own order; float64 W3C compositing, rounded."""
    drawn = [(z, li, k, rel, blend, op) for li, layer in enumerate(LAYERS)
             for k, (rel, z, blend, op) in enumerate(DRAWS[layer, attrs.get(layer)])]
    drawn.sort(key=lambda d: d[0])  # stable: ties keep layer order, then the layer's own order
    full = [SimpleNamespace(box=(0, 0, H, W), pixels=pixels[d[3]]) for d in drawn]
    ref = reference((H, W), full, [(d[4], d[5]) for d in drawn])
    return ref


def test_nftchef_project_pixels_and_metadata(nftchef, tmp_path):
    root, pixels = nftchef
    out = tmp_path / "out"
    list(gpucomp.generate(root, out, size=40, seed=3, backend="cpu"))
    meta = json.loads((out / "_metadata.json").read_text())
    values = set()
    for entry in meta:
        attrs = {a["trait_type"]: a["value"] for a in entry["attributes"]}
        values |= set(attrs.items())
        assert attrs.keys() <= set(LAYERS) and len(attrs) == len(entry["attributes"])
        got = np.asarray(Image.open(out / "images" / f"{entry['edition']}.png").convert("RGBA")).astype(np.float64)
        assert np.abs(got - expected(attrs, pixels)).max() <= 1.0, attrs
    # values are trait names: folders for parts, no `z1,`, no query, no part file names; NONE is not listed
    assert values <= {k for k in DRAWS if k[1] is not None}
    assert ("Glasses", "Purple Glasses") in values and ("Hair", "rare") in values and ("Hat", "Crown") in values
    assert any("Back" not in {a["trait_type"] for a in e["attributes"]} for e in meta)


def test_parts_are_one_trait_with_the_folder_name(nftchef):
    root, _ = nftchef
    ls = load_layers(root)
    by = {layer.folder: {t.name: t for t in layer.traits} for layer in ls.layers}
    assert set(by["2-Back"]) == {"Backpack", "NONE"} and by["2-Back"]["NONE"].empty
    assert by["2-Back"]["Backpack"].weight == 50 and by["2-Back"]["NONE"].weight == 50
    glasses = by["4-Glasses"]["Purple Glasses"]
    assert [(p.image.path.name, p.z) for p in glasses.parts] == [("z-1,Glasses back.png", -1), ("Glasses front.png", None)]
    assert set(by["6-Hair"]) == {"Long", "Short", "rare"}
    assert by["6-Hair"]["Long"].parts is None  # a plain nested trait stays on the standard path
    cap = by["5-Hat"]["Cap"]
    assert (cap.parts[0].blend, cap.parts[0].opacity) == ("multiply", 0.5)


def test_standard_layers_get_no_render_view(tmp_path):
    root = tmp_path / "layers"
    art(root / "A" / "x#1.png", 1)
    art(root / "A" / "y#2.png", 2)
    ls = load_layers(root)
    assert stack_layerset({"A": ls.layers[0]}, root, W, H, [LayerOption("A")]).render is None


def test_render_view_orders_slots_and_maps_combos(nftchef):
    root, _ = nftchef
    ls = load_layers(root)
    opts = [LayerOption(layer.folder) for layer in ls.layers]
    stack = stack_layerset({layer.folder: layer for layer in ls.layers}, root, W, H, opts)
    view = stack.render
    order = [(layer.folder, layer.blend, layer.opacity) for layer in view.layerset.layers]
    assert order == [("1-Background", "normal", 1.0), ("4-Glasses", "normal", 1.0),  # z -5, z -1
                     ("2-Back", "normal", 1.0), ("2-Back", "normal", 1.0), ("3-Body", "normal", 1.0),
                     ("4-Glasses", "normal", 1.0), ("5-Hat", "multiply", 0.5), ("6-Hair", "normal", 1.0),
                     ("6-Hair", "normal", 1.0), ("5-Hat", "normal", 1.0)]  # z 1: Crown on top
    names = [[t.name for t in layer.traits] for layer in stack.layers]
    row = np.array([[names[li].index(n) for li, n in enumerate(
        ["Blue", "NONE", "Body", "Round", "Crown", "rare"])]])
    drawn = [view.layerset.layers[r].traits[t].path.name for r, t in enumerate(view.combos(row)[0])]
    assert [d for d in drawn if d] == ["z-5,Blue#1.png", "Body.png", "Round#25.png", "1-line.png", "2-fill.png",
                                       "z1,Crown#10.png"]


def test_trait_options_in_the_config_move_and_blend_a_trait(tmp_path):
    root = tmp_path / "layers"
    px = {n: art(root / n, k, opaque=(k == 0)) for k, n in enumerate(["1-Bg/Bg.png", "2-Hat/Cap.png", "2-Hat/Top.png",
                                                                      "3-Face/Face.png"])}
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[layers]]\nfolder = "1-Bg"\n[[layers]]\nfolder = "2-Hat"\n'
                   'traits = { Cap = { z = 1, blend = "screen", opacity = 0.25 } }\n[[layers]]\nfolder = "3-Face"\n')
    out = tmp_path / "out"
    list(gpucomp.generate(root, out, cfg, size=2, seed=1, backend="cpu"))
    for entry in json.loads((out / "_metadata.json").read_text()):
        hat = {a["trait_type"]: a["value"] for a in entry["attributes"]}["Hat"]
        hat_px = SimpleNamespace(box=(0, 0, H, W), pixels=px[f"2-Hat/{hat}.png"])
        full = [SimpleNamespace(box=(0, 0, H, W), pixels=px[n]) for n in ("1-Bg/Bg.png", "3-Face/Face.png")]
        if hat == "Cap":  # z = 1: above the face
            ref = reference((H, W), [full[0], full[1], hat_px], [("normal", 1), ("normal", 1), ("screen", 0.25)])
        else:
            ref = reference((H, W), [full[0], hat_px, full[1]])
        got = np.asarray(Image.open(out / "images" / f"{entry['edition']}.png").convert("RGBA")).astype(np.float64)
        assert np.abs(got - ref).max() <= 1.0


def test_trait_options_naming_no_trait_are_an_error(tmp_path):
    root = tmp_path / "layers"
    art(root / "Hat" / "Cap.png", 1)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[layers]]\nfolder = "Hat"\ntraits = { Cop = { z = 1 } }\n')
    with pytest.raises(gpucomp.errors.ConfigError, match="'Cop'.*not traits of this layer"):
        list(gpucomp.generate(root, tmp_path / "out", cfg, size=1, backend="cpu"))


@pytest.mark.parametrize("name, message", [
    ("y?blend=screen#10.png", "the weight must come before"),
    ("y#10?blend=hue.png", "blend 'hue' is not one gpucomp draws"),
    ("y#10?opacity=150.png", "opacity '150' must be a percentage"),
    ("y#10?glow=1.png", "unknown option 'glow'"),
])
def test_bad_file_name_options_name_the_file(tmp_path, name, message):
    root = tmp_path / "layers"
    art(root / "Hat" / "x#1.png", 1)
    art(root / "Hat" / name, 2)
    with pytest.raises(LayerError, match=message):
        load_layers(root)


def test_branching_into_a_second_trait_is_refused(tmp_path):
    root = tmp_path / "layers"
    art(root / "Type" / "male#10" / "male-1.png", 1)
    art(root / "Type" / "male#10" / "hair" / "a#1.png", 2)
    with pytest.raises(LayerError, match="hair.*a folder without a weight.*second trait"):
        load_layers(root)


def test_dense_contract_matches_reference_for_render_layers(nftchef):
    """The render layers composite (float32 contract) within 1 of the float64 reference."""
    root, pixels = nftchef
    ls = load_layers(root)
    stack = stack_layerset({layer.folder: layer for layer in ls.layers}, root, W, H,
                           [LayerOption(layer.folder) for layer in ls.layers])
    view = stack.render
    row = np.zeros((1, len(stack.layers)), np.int32)
    combo = view.combos(row)[0]
    traits = [layer.traits[t] for layer, t in zip(view.layerset.layers, combo, strict=True)]
    got = finalize(composite_dense((H, W), traits, [(la.blend, la.opacity) for la in view.layerset.layers]), False)
    attrs = {layer: stack.layers[li].traits[0].name for li, layer in enumerate(LAYERS)}
    attrs = {k: (None if v == "NONE" else v) for k, v in attrs.items()}
    assert np.abs(got.astype(np.float64) - expected(attrs, pixels)).max() <= 1.0


def test_option_types_in_the_config(tmp_path):
    from gpucomp.config import load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text('[[layers]]\nfolder = "Hat"\ntraits = { Cap = { z = -2, opacity = 1 } }\n')
    assert load_config(cfg).layers[0].traits == (("Cap", TraitOption(-2, None, 1.0)),)
    cfg.write_text('[[layers]]\nfolder = "Hat"\ntraits = { Cap = { z = "up" } }\n')
    with pytest.raises(gpucomp.errors.ConfigError, match=r"traits.Cap.z: expected int"):
        load_config(cfg)


def test_nftchef_order_inside_a_trait(tmp_path):
    """nftchef's sortLayers: z = 0 parts in string order of their addresses (ids: `10` before `2`);
    z != 0 parts in walk order, where required files come out reversed."""
    root = tmp_path / "layers"
    for k, name in enumerate(["back", "front", "mid"]):
        art(root / "H" / "z1,h#10" / f"{name}.png", k)
        art(root / "G" / "g#10" / f"{name}.png", k)
    for k in range(12):
        art(root / "M" / "m#1" / f"p{k:02d}.png", k)
    by = {layer.folder: layer.traits[0] for layer in load_layers(root).layers}
    assert [p.image.path.stem for p in by["H"].parts] == ["mid", "front", "back"]
    assert [p.image.path.stem for p in by["G"].parts] == ["back", "front", "mid"]
    assert [p.image.path.stem for p in by["M"].parts] == ["p00", "p10", "p11"] + [f"p{k:02d}" for k in range(1, 10)]
    # (the DNA entry `0.0.10:p10.png` sorts before `0.0.1:p01.png`: '0' < ':')


def test_jpeg_and_webp_traits_and_one_warning_for_other_files(tmp_path):
    root = tmp_path / "layers"
    px = art(root / "Bg" / "Plain.png", 1, opaque=True)
    Image.fromarray(px[..., :3]).save(root / "Bg" / "Photo#2.jpg", quality=95)
    Image.fromarray(px).save(root / "Bg" / "Glass.webp", lossless=True)
    (root / "Bg" / "notes.txt").write_text("hi")
    (root / "Bg" / "Old.gif").write_bytes(b"GIF89a")
    with pytest.warns(gpucomp.errors.LayerWarning, match=r"2 file\(s\).*Bg/notes.txt, Bg/Old.gif$") as caught:
        ls = load_layers(root)
    assert len(caught) == 1
    traits = {t.name: t for t in ls.layers[0].traits}
    assert set(traits) == {"Plain", "Photo", "Glass"} and traits["Photo"].weight == 2
    assert traits["Photo"].opaque_full and np.array_equal(traits["Glass"].pixels, px)


def test_a_broken_jpeg_names_the_file(tmp_path):
    root = tmp_path / "layers"
    art(root / "Bg" / "Plain.png", 1)
    (root / "Bg" / "Bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(LayerError, match=r"Bad.jpg: cannot decode it as JPEG"):
        load_layers(root)


def test_rerender_after_a_part_changed_redoes_only_its_items(nftchef, tmp_path):
    root, pixels = nftchef
    out = tmp_path / "out"
    list(gpucomp.generate(root, out, size=30, seed=3, backend="cpu"))
    before = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    pixels["4-Glasses/Purple Glasses#25/z-1,Glasses back.png"] = art(
        root / "4-Glasses/Purple Glasses#25/z-1,Glasses back.png", 99)
    redone = {item.number for item in gpucomp.rerender(out)}
    meta = json.loads((out / "_metadata.json").read_text())
    purple = {e["edition"] for e in meta if {"trait_type": "Glasses", "value": "Purple Glasses"} in e["attributes"]}
    assert redone == purple and purple
    for entry in meta:
        attrs = {a["trait_type"]: a["value"] for a in entry["attributes"]}
        got = np.asarray(Image.open(out / "images" / f"{entry['edition']}.png").convert("RGBA")).astype(np.float64)
        assert np.abs(got - expected(attrs, pixels)).max() <= 1.0
    assert all(before[f"{n}.png"] == (out / "images" / f"{n}.png").stat().st_mtime_ns
               for n in {e["edition"] for e in meta} - purple)


# --- HashLips Art Engine 2 naming: __w, __z on layer folders and files, __x/__y, one option name drawn together


def small(path, seed, shape):
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 256, shape + (4,), dtype=np.uint8)
    px[..., 3] = rng.choice(np.array([0, 100, 255], np.uint8), shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(px, "RGBA").save(path)
    return px


def placed(px, x, y):
    full = np.zeros((H, W, 4), np.uint8)
    full[y:y + px.shape[0], x:x + px.shape[1]] = px
    return SimpleNamespace(box=(0, 0, H, W), pixels=full)


def test_art_engine_2_project(tmp_path):
    root = tmp_path / "layers"
    bg = {n: art(root / "01-Background__z-10" / f"{n}__w{w}.png", k, opaque=True)
          for k, (n, w) in enumerate((("Blue", 1), ("Red", 3)))}
    front = art(root / "02-Eyes__z10" / "Round__w2.png", 5)
    back = small(root / "02-Eyes__z10" / "Round__z-1__x2__y3.png", 6, (4, 5))
    art(root / "02-Eyes__z10" / "Wide__w1.png", 7)
    body = art(root / "03-Body" / "Body.png", 8)
    cap = small(root / "04-Hat" / "Cap__w1__x4__y0.png", 9, (3, 6))
    ls = load_layers(root)
    assert [la.name for la in ls.layers] == ["Background", "Eyes", "Body", "Hat"]
    round_ = next(t for t in ls.layers[1].traits if t.name == "Round")
    # a file's __z adds to its folder's, as the engine does (tests/test_engines.py): 10 - 1 = 9, over the body
    assert round_.weight == 2 and [(p.image.path.name, p.z) for p in round_.parts] == [
        ("Round__z-1__x2__y3.png", 9), ("Round__w2.png", 10)]  # by z
    out = tmp_path / "out"
    list(gpucomp.generate(root, out, size=4, seed=1, backend="cpu"))
    for entry in json.loads((out / "_metadata.json").read_text()):
        attrs = {a["trait_type"]: a["value"] for a in entry["attributes"]}
        full = lambda px: SimpleNamespace(box=(0, 0, H, W), pixels=px)  # noqa: E731
        eyes = [placed(back, 2, 3), full(front)] if attrs["Eyes"] == "Round" else [
            full(np.asarray(Image.open(root / "02-Eyes__z10" / "Wide__w1.png")))]
        stack = [full(bg[attrs["Background"]]), full(body), placed(cap, 4, 0), *eyes]
        got = np.asarray(Image.open(out / "images" / f"{entry['edition']}.png").convert("RGBA")).astype(np.float64)
        assert np.abs(got - reference((H, W), stack)).max() <= 1.0, attrs


def test_a_placed_image_past_the_canvas_is_named(tmp_path):
    root = tmp_path / "layers"
    art(root / "Bg" / "Blue.png", 1)
    small(root / "Hat" / "Cap__x8__y0.png", 2, (3, 6))
    with pytest.raises(LayerError, match=r"Cap__x8__y0.png: placed at x=\d+, y=\d+ .* runs past the 10x10 canvas"):
        load_layers(root)


# --- Art Engine 2 `edge-cases`: an option draws other assets when another layer has a value


@pytest.fixture
def edge_project(tmp_path):
    """Body x Eyes x Hat, every combination. Hat `Cap` draws two other assets (one at z -1, behind the
    body, placed at an offset) when Body is Robot; `Top` has two edge cases, the first by file name
    (Body = Robot) winning over the second (Eyes = Wide) when both apply."""
    root = tmp_path / "layers"
    px = {}
    for k, rel in enumerate(["1-Body/Human__w1.png", "1-Body/Robot__w1.png", "2-Eyes/Dot__w1.png",
                             "2-Eyes/Wide__w1.png", "3-Hat/Cap__w1.png", "3-Hat/Top__w1.png",
                             "3-Hat/edge-cases/Cap__tBody__vRobot.png", "3-Hat/edge-cases/Top__tBody__vRobot.png",
                             "3-Hat/edge-cases/Top__tEyes__vWide.png"]):
        px[rel] = art(root / rel, 40 + k, opaque=rel.startswith("1-"))
    px["back"] = small(root / "3-Hat/edge-cases/Cap__tBody__vRobot__z-1__x2__y3.png", 60, (4, 5))
    return root, px


def edge_expected(attrs: dict, px: dict) -> np.ndarray:
    """Art Engine 2's rule written out: the Hat option's own file, or the assets of its first edge
    case whose layer has the value; drawn by z (stable over the layer order)."""
    full = lambda p: SimpleNamespace(box=(0, 0, H, W), pixels=p)  # noqa: E731
    hat = attrs["Hat"]
    if hat == "Cap" and attrs["Body"] == "Robot":
        hats = [(-1, placed(px["back"], 2, 3)), (0, full(px["3-Hat/edge-cases/Cap__tBody__vRobot.png"]))]
    elif hat == "Top" and attrs["Body"] == "Robot":
        hats = [(0, full(px["3-Hat/edge-cases/Top__tBody__vRobot.png"]))]
    elif hat == "Top" and attrs["Eyes"] == "Wide":
        hats = [(0, full(px["3-Hat/edge-cases/Top__tEyes__vWide.png"]))]
    else:
        hats = [(0, full(px[f"3-Hat/{hat}__w1.png"]))]
    drawn = [(0, full(px[f"1-Body/{attrs['Body']}__w1.png"])), (0, full(px[f"2-Eyes/{attrs['Eyes']}__w1.png"])), *hats]
    return reference((H, W), [im for _, im in sorted(drawn, key=lambda d: d[0])])


def check_edge_images(out, px):
    meta = json.loads((out / "_metadata.json").read_text())
    for entry in meta:
        attrs = {a["trait_type"]: a["value"] for a in entry["attributes"]}
        got = np.asarray(Image.open(out / "images" / f"{entry['edition']}.png").convert("RGBA")).astype(np.float64)
        assert np.abs(got - edge_expected(attrs, px)).max() <= 1.0, attrs
    return meta


def test_edge_cases_replace_an_option_when_another_layer_has_a_value(edge_project, tmp_path):
    root, px = edge_project
    ls = load_layers(root)
    hat = {t.name: t for t in ls.layers[2].traits}
    assert set(hat) == {"Cap", "Top"}  # the edge-cases folder is no trait
    assert [(e.layer, e.value, [p.image.path.name for p in e.parts]) for e in hat["Cap"].edge_cases] == [
        ("Body", "Robot", ["Cap__tBody__vRobot.png", "Cap__tBody__vRobot__z-1__x2__y3.png"])]
    assert [(e.layer, e.value) for e in hat["Top"].edge_cases] == [("Body", "Robot"), ("Eyes", "Wide")]
    out = tmp_path / "out"
    list(gpucomp.generate(root, out, size=8, seed=2, backend="cpu"))
    meta = check_edge_images(out, px)
    assert len({tuple(sorted((a["trait_type"], a["value"]) for a in e["attributes"])) for e in meta}) == 8
    # the metadata is that of the same project without edge cases: same items, same DNA, same values
    plain = tmp_path / "plain"
    shutil.copytree(root, plain)
    shutil.rmtree(plain / "3-Hat" / "edge-cases")
    list(gpucomp.generate(plain, tmp_path / "out2", size=8, seed=2, backend="cpu"))
    strip = lambda m: [{k: e[k] for k in ("edition", "dna", "attributes")} for e in m]  # noqa: E731
    assert strip(meta) == strip(json.loads((tmp_path / "out2" / "_metadata.json").read_text()))


def test_edge_cases_in_a_stack_without_the_named_layer_do_not_apply(edge_project, tmp_path):
    root, px = edge_project
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[stacks]]\nsize = 4\nlayers = ["1-Body", "3-Hat"]\n')
    out = tmp_path / "out"
    list(gpucomp.generate(root, out, cfg, seed=1, backend="cpu"))
    for entry in json.loads((out / "_metadata.json").read_text()):
        attrs = {a["trait_type"]: a["value"] for a in entry["attributes"]}
        hat = attrs["Hat"]  # Top's Eyes edge case cannot apply; its Body one still does
        rel = f"3-Hat/edge-cases/{hat}__tBody__vRobot.png" if attrs["Body"] == "Robot" else f"3-Hat/{hat}__w1.png"
        stack = [SimpleNamespace(box=(0, 0, H, W), pixels=px[f"1-Body/{attrs['Body']}__w1.png"])]
        if hat == "Cap" and attrs["Body"] == "Robot":
            stack.insert(0, placed(px["back"], 2, 3))
        stack.append(SimpleNamespace(box=(0, 0, H, W), pixels=px[rel]))
        got = np.asarray(Image.open(out / "images" / f"{entry['edition']}.png").convert("RGBA")).astype(np.float64)
        assert np.abs(got - reference((H, W), stack)).max() <= 1.0, attrs


def test_a_changed_edge_case_file_rerenders_the_option_and_is_not_resumed(edge_project, tmp_path):
    root, px = edge_project
    out = tmp_path / "out"
    list(gpucomp.generate(root, out, size=8, seed=2, backend="cpu"))
    assert list(gpucomp.generate(root, out, size=8, seed=2, backend="cpu")) == []  # resumed: nothing to do
    before = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    rel = "3-Hat/edge-cases/Cap__tBody__vRobot.png"
    px[rel] = art(root / rel, 99)
    with pytest.raises(gpucomp.errors.OutputError, match="trait art changed"):
        list(gpucomp.generate(root, out, size=8, seed=2, backend="cpu"))
    redone = {item.number for item in gpucomp.rerender(out)}
    meta = check_edge_images(out, px)
    caps = {e["edition"] for e in meta if {"trait_type": "Hat", "value": "Cap"} in e["attributes"]}
    assert redone == caps and caps
    assert all(before[f"{n}.png"] == (out / "images" / f"{n}.png").stat().st_mtime_ns
               for n in {e["edition"] for e in meta} - caps)


@pytest.mark.parametrize("name, message", [
    ("Cap__tBody.png", "named `<Option>__t<Layer>__v<Value>`"),
    ("Cap__tBody__vRobot__tEyes.png", "named `<Option>__t<Layer>__v<Value>`"),
    ("Hood__tBody__vRobot.png", "option 'Hood', which is not a trait of layer '3-Hat'"),
    ("Cap__tLegs__vRobot.png", "`__tLegs` names no other layer"),
    ("Cap__tHat__vTop.png", "`__tHat` names no other layer"),
    ("Cap__tBody__vAlien.png", "`__vAlien` is not a trait of layer 'Body'"),
    ("Cap#5__tBody__vRobot.png", "a weight on an edge case means nothing"),
])
def test_bad_edge_cases_name_the_file(tmp_path, name, message):
    root = tmp_path / "layers"
    for k, rel in enumerate(["1-Body/Human.png", "1-Body/Robot.png", "3-Hat/Cap.png", "3-Hat/Top.png"]):
        art(root / rel, k)
    art(root / "3-Hat" / "edge-cases" / name, 9)
    with pytest.raises(LayerError, match=re.escape(message)):
        load_layers(root)


@pytest.mark.gpu
def test_gpu_edge_cases_match_cpu_byte_for_byte(edge_project, tmp_path):
    root, _ = edge_project
    a = gpucomp.run(root, tmp_path / "cpu", size=8, seed=2, backend="cpu")
    b = gpucomp.run(root, tmp_path / "gpu", size=8, seed=2, backend="cuda", batch_size=3)
    assert a["backend"]["backend"] == "cpu" and b["backend"]["backend"] == "cuda"
    for n in range(1, 9):
        png = f"images/{n}.png"
        assert (tmp_path / "cpu" / png).read_bytes() == (tmp_path / "gpu" / png).read_bytes()


def test_parts_with_stacks_extend_and_resume(nftchef, tmp_path):
    """Render views are per stack (a stack without the Hat layer has its own); extend and resume
    keep the pixels nftchef's rules give."""
    root, pixels = nftchef
    cfg = tmp_path / "c.toml"
    layers = '", "'.join(sorted(p.name for p in root.iterdir()))
    no_hat = '", "'.join(sorted(p.name for p in root.iterdir() if p.name != "5-Hat"))
    cfg.write_text(f'[[stacks]]\nsize = 12\nlayers = ["{layers}"]\n[[stacks]]\nsize = 8\nlayers = ["{no_hat}"]\n')
    out = tmp_path / "out"
    list(gpucomp.generate(root, out, cfg, seed=4, backend="cpu"))
    list(gpucomp.extend(out, 5))
    assert list(gpucomp.generate(root, out, cfg, seed=4, backend="cpu")) == []  # resumed: nothing left to do
    meta = json.loads((out / "_metadata.json").read_text())
    assert len(meta) == 25 and sum("Hat" not in {a["trait_type"] for a in e["attributes"]} for e in meta) >= 8
    for entry in meta:
        attrs = {a["trait_type"]: a["value"] for a in entry["attributes"]}
        got = np.asarray(Image.open(out / "images" / f"{entry['edition']}.png").convert("RGBA")).astype(np.float64)
        assert np.abs(got - expected(attrs, pixels)).max() <= 1.0, attrs


@pytest.mark.gpu
def test_gpu_render_layers_match_cpu_byte_for_byte(nftchef, tmp_path):
    root, _ = nftchef
    a = gpucomp.run(root, tmp_path / "cpu", size=30, seed=3, backend="cpu")
    b = gpucomp.run(root, tmp_path / "gpu", size=30, seed=3, backend="cuda", batch_size=4)
    assert a["backend"]["backend"] == "cpu" and b["backend"]["backend"] == "cuda"
    for n in range(1, 31):
        assert (tmp_path / "cpu/images" / f"{n}.png").read_bytes() == (tmp_path / "gpu/images" / f"{n}.png").read_bytes()


def test_changed_trait_options_are_not_resumed_into_an_old_collection(tmp_path):
    root = tmp_path / "layers"
    for k, n in enumerate(["1-Bg/Bg.png", "2-Hat/Cap.png", "2-Hat/Top.png"]):
        art(root / n, k, opaque=(k == 0))
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[layers]]\nfolder = "1-Bg"\n[[layers]]\nfolder = "2-Hat"\ntraits = { Cap = { opacity = 0.5 } }\n')
    out = tmp_path / "out"
    list(gpucomp.generate(root, out, cfg, size=2, backend="cpu"))
    assert list(gpucomp.generate(root, out, cfg, size=2, backend="cpu")) == []
    cfg.write_text(cfg.read_text().replace("0.5", "0.25"))
    with pytest.raises(gpucomp.errors.OutputError, match="trait art changed \\(2-Hat/Cap\\)"):
        list(gpucomp.generate(root, out, cfg, size=2, backend="cpu"))
