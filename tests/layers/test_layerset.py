"""Reading a layers folder: trait names and weights, ordering, PNG modes, cropping, bad input."""
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from gpucomp.errors import LayerError
from gpucomp.layers.layerset import list_layer_folders, load_layers
from gpucomp.layers.naming import layer_display_name, natural_key, parse_trait_name


def save(path, pixels=None, mode="RGBA", size=(8, 8), **params):
    """Write a PNG with Pillow (default: an opaque 8x8 RGBA square)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if pixels is None:
        pixels = np.full(size[::-1] + (4,), 200, np.uint8)
    Image.fromarray(pixels, mode).save(path, format="PNG", **params)
    return path


def png_bytes(pixels, mode="RGBA"):
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, format="PNG")
    return buf.getvalue()


def one_layer(tmp_path, *names):
    for n in names:
        save(tmp_path / "layers" / "Body" / n)
    return tmp_path / "layers"


# --- names and weights -------------------------------------------------------------------------

@pytest.mark.parametrize("stem, name, weight", [
    ("Name#3", "Name", 3.0),
    ("Name#0.15", "Name", 0.15),
    ("Name#.5", "Name", 0.5),
    ("Name#0", "Name", 0.0),
    ("Name", "Name", 1.0),
    ("Rose-Pink Hat#7", "Rose-Pink Hat", 7.0),
    ("Café ☕ Noir#2", "Café ☕ Noir", 2.0),
    ("A#B#4", "A#B", 4.0),  # the weight is after the last delimiter
])
def test_parse_trait_name(stem, name, weight):
    assert parse_trait_name(stem, "#", "src") == (name, weight)


@pytest.mark.parametrize("text", ["0,3", "abc", "-1", "+2", "1e3", "", "nan", "inf", "3 "])
def test_parse_trait_name_rejects_malformed_weight(text):
    with pytest.raises(LayerError, match="some/file.png"):
        parse_trait_name(f"Hat#{text}", "#", "some/file.png")


def test_parse_trait_name_other_delimiter_and_empty_name():
    assert parse_trait_name("Hat_5", "_", "f") == ("Hat", 5.0)
    assert parse_trait_name("Hat#5", "_", "f") == ("Hat#5", 1.0)
    with pytest.raises(LayerError, match="no name"):
        parse_trait_name("  #5", "#", "f")


def test_load_reads_names_and_weights(tmp_path):
    files = ["Plain.png", "Gold#3.png", "Silver#0.15.png", "Rose-Pink Hat#2.png", "Zürich Blue ☕#5.png"]
    ls = load_layers(one_layer(tmp_path, *files))
    got = {t.name: t.weight for t in ls.layers[0].traits}
    assert got == {"Plain": 1.0, "Gold": 3.0, "Silver": 0.15, "Rose-Pink Hat": 2.0, "Zürich Blue ☕": 5.0}
    for t in ls.layers[0].traits:
        assert t.path.parent == tmp_path / "layers" / "Body"


@pytest.mark.parametrize("fname", ["Hat#0,3.png", "Hat#abc.png", "Hat#-1.png"])
def test_load_rejects_malformed_weight_naming_the_file(tmp_path, fname):
    layers = one_layer(tmp_path, "Ok#1.png", fname)
    with pytest.raises(LayerError) as err:
        load_layers(layers)
    assert str(layers / "Body" / fname) in str(err.value)


# --- ordering ------------------------------------------------------------------------------------

def test_natural_key_orders_numbers_by_value():
    names = ["10-x", "2-x", "1-y", "Hat 10", "Hat 9", "hat 9b"]
    assert sorted(names, key=natural_key) == ["1-y", "2-x", "10-x", "Hat 9", "hat 9b", "Hat 10"]


@pytest.mark.parametrize("name", ["²", "1²", "Level 10² Gold", "٣-x"])
def test_natural_key_never_crashes_on_unicode_digits(name):
    key = natural_key(name)
    assert key[-1] == name
    sorted([name, "1-a", "a"], key=natural_key)  # comparable with ordinary names


@pytest.mark.parametrize("folder, shown", [
    ("01-Background", "Background"), ("2_Body", "Body"), ("10 Eyes", "Eyes"), ("3.Hat", "Hat"),
    ("Background", "Background"), ("2024", "2024"), ("01-", "01-"), ("7-Eleven Cap", "Eleven Cap"),
])
def test_layer_display_name(folder, shown):
    assert layer_display_name(folder) == shown


def test_layer_folders_in_natural_order(tmp_path):
    root = tmp_path / "layers"
    for folder in ["10-Hat", "2-Body", "1-Background", ".hidden"]:
        save(root / folder / "T#1.png")
    (root / "notes.txt").write_text("not a layer")
    assert list_layer_folders(root) == ["1-Background", "2-Body", "10-Hat"]
    ls = load_layers(root)
    assert [la.folder for la in ls.layers] == ["1-Background", "2-Body", "10-Hat"]
    assert [la.name for la in ls.layers] == ["Background", "Body", "Hat"]


def test_traits_in_natural_order_and_explicit_layer_order(tmp_path):
    root = tmp_path / "layers"
    for n in ["Hat 10#1.png", "Hat 2#1.png", "Hat 1#1.png"]:
        save(root / "01-Top" / n)
    save(root / "02-Base" / "B.png")
    ls = load_layers(root)
    assert [t.name for t in ls.layers[0].traits] == ["Hat 1", "Hat 2", "Hat 10"]
    ls = load_layers(root, order=["02-Base", "01-Top"], display_names={"01-Top": "Headwear"})
    assert [la.name for la in ls.layers] == ["Base", "Headwear"]


def test_layer_order_naming_a_missing_folder(tmp_path):
    root = one_layer(tmp_path, "A.png")
    with pytest.raises(LayerError, match="Nope"):
        load_layers(root, order=["Body", "Nope"])


# --- PNG modes -----------------------------------------------------------------------------------

def load_single(tmp_path, pixels, mode, **params):
    save(tmp_path / "layers" / "L" / "T.png", pixels, mode, **params)
    t = load_layers(tmp_path / "layers").layers[0].traits[0]
    return t


def full(t):
    """The uncropped canvas of a trait as (H, W, 4)."""
    out = np.zeros(t.canvas + (4,), np.uint8)
    if t.box is not None:
        y0, x0, y1, x1 = t.box
        out[y0:y1, x0:x1] = t.pixels
    return out


def test_mode_p_with_transparency(tmp_path):
    idx = (np.arange(30).reshape(5, 6) % 3).astype(np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    path = tmp_path / "layers" / "L" / "T.png"
    path.parent.mkdir(parents=True)
    im.save(path, format="PNG", transparency=bytes([0, 128, 255]))  # index 0 clear, 1 half, 2 opaque
    t = load_layers(tmp_path / "layers").layers[0].traits[0]
    got = full(t)
    want_rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)[idx]
    want_a = np.array([0, 128, 255], np.uint8)[idx]
    assert np.array_equal(got[..., 3], want_a)
    visible = want_a > 0
    assert np.array_equal(got[..., :3][visible], want_rgb[visible])


def test_mode_l(tmp_path):
    g = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    t = load_single(tmp_path, g, "L")
    assert t.box == (0, 0, 6, 8) and t.opaque_full
    assert np.array_equal(t.pixels, np.dstack([g, g, g, np.full_like(g, 255)]))


def test_mode_la(tmp_path):
    g = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    a = np.full_like(g, 77)
    a[0, 0] = 255
    t = load_single(tmp_path, np.dstack([g, a]), "LA")
    assert not t.opaque_full
    assert np.array_equal(t.pixels, np.dstack([g, g, g, a]))


def test_mode_rgb(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    t = load_single(tmp_path, rgb, "RGB")
    assert t.opaque_full and t.box == (0, 0, 7, 9) and t.canvas == (7, 9)
    assert np.array_equal(t.pixels[..., :3], rgb) and (t.pixels[..., 3] == 255).all()


def test_mode_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    v = np.array([[0, 128, 129, 32767, 32768, 257 * 100, 65534, 65535]], np.uint16).repeat(2, axis=0)
    path = tmp_path / "layers" / "L" / "T.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(v).save(path, format="PNG")
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    t = load_layers(tmp_path / "layers").layers[0].traits[0]
    want = np.rint(v / 257).astype(np.uint8)  # v * 255 / 65535; v / 257 is never exactly x.5
    assert list(want[0]) == [0, 0, 1, 127, 128, 100, 255, 255]
    assert np.array_equal(t.pixels[..., 0], want)
    assert np.array_equal(t.pixels[..., 1], want) and np.array_equal(t.pixels[..., 2], want)
    assert (t.pixels[..., 3] == 255).all()


def test_mode_16_bit_grayscale_colour_key_is_transparent(tmp_path):
    v = np.full((3, 4), 1000, np.uint16)
    v[1, 2] = 0
    path = tmp_path / "layers" / "L" / "T.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(v).save(path, format="PNG", transparency=1000)  # tRNS: grey 1000 is clear
    t = load_layers(tmp_path / "layers").layers[0].traits[0]
    assert t.box == (1, 2, 2, 3)
    assert t.pixels.tolist() == [[[0, 0, 0, 255]]]


def test_rgba_pixels_kept_exactly(tmp_path):
    px = np.random.default_rng(2).integers(0, 256, (10, 12, 4), dtype=np.uint8)
    px[..., 3] = np.maximum(px[..., 3], 1)
    t = load_single(tmp_path, px, "RGBA")
    assert t.box == (0, 0, 10, 12) and np.array_equal(t.pixels, px)
    assert not t.opaque_full


# --- cropping ------------------------------------------------------------------------------------

def test_crop_to_alpha_bounding_box(tmp_path):
    px = np.zeros((20, 30, 4), np.uint8)
    px[..., :3] = 99  # colour under alpha 0 must not count
    px[3, 10] = [1, 2, 3, 4]
    px[7, 20] = [5, 6, 7, 255]
    px[5, 15] = [9, 9, 9, 128]
    t = load_single(tmp_path, px, "RGBA")
    assert t.box == (3, 10, 8, 21)
    assert t.canvas == (20, 30)
    assert np.array_equal(t.pixels, px[3:8, 10:21])
    assert not t.opaque_full


def test_fully_transparent_trait_has_no_box(tmp_path):
    px = np.zeros((6, 6, 4), np.uint8)
    px[..., :3] = 255
    t = load_single(tmp_path, px, "RGBA")
    assert t.box is None and t.pixels.size == 0 and not t.opaque_full and t.canvas == (6, 6)


def test_demo_layers_background_is_opaque_full(demo_layers):
    ls = load_layers(demo_layers)
    assert (ls.height, ls.width) == (64, 64)
    assert all(t.opaque_full for t in ls.layers[0].traits)
    assert not any(t.opaque_full for la in ls.layers[1:] for t in la.traits)
    assert ls.combinations == np.prod([len(la.traits) for la in ls.layers])


def test_loading_leaves_warning_filters_alone(tmp_path):
    root = tmp_path / "layers"
    for li in range(3):
        for ti in range(12):
            save(root / f"{li}-L" / f"T{ti}.png", size=(4, 4))
    before = list(warnings.filters)
    for _ in range(5):
        load_layers(root, workers=8)
        assert warnings.filters == before


# --- bad input: every error is a LayerError that names the file or folder -----------------------

def error_for(root):
    with pytest.raises(LayerError) as err:
        load_layers(root)
    return str(err.value)


def test_truncated_png(tmp_path):
    data = png_bytes(np.random.default_rng(3).integers(0, 256, (32, 32, 4), dtype=np.uint8))
    bad = tmp_path / "layers" / "L" / "Bad#1.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(data[: len(data) // 2])
    assert str(bad) in error_for(tmp_path / "layers")


def test_png_with_bad_image_data(tmp_path):
    """A well-formed chunk layout (valid CRCs) whose IDAT is not a deflate stream."""
    junk = bytes(range(7, 250)) * 4
    ihdr = struct.pack(">IIBBBBB", 16, 16, 8, 6, 0, 0, 0)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", junk) + chunk(b"IEND", b"")
    bad = tmp_path / "layers" / "L" / "Bad.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(data)
    msg = error_for(tmp_path / "layers")
    assert str(bad) in msg and "decode" in msg


def test_png_with_flipped_bytes(tmp_path):
    data = bytearray(png_bytes(np.random.default_rng(4).integers(0, 256, (16, 16, 4), dtype=np.uint8)))
    for i in range(40, len(data) - 12, 7):
        data[i] ^= 0x5A
    bad = tmp_path / "layers" / "L" / "Bad.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(bytes(data))
    assert str(bad) in error_for(tmp_path / "layers")


def test_zero_byte_file(tmp_path):
    bad = tmp_path / "layers" / "L" / "Empty#2.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")
    msg = error_for(tmp_path / "layers")
    assert str(bad) in msg and "empty" in msg


def test_not_a_png(tmp_path):
    root = one_layer(tmp_path, "Good.png")
    bad = root / "Body" / "Photo.png"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG")
    bad.write_bytes(buf.getvalue())
    msg = error_for(root)
    assert str(bad) in msg and "not a PNG" in msg


def test_mismatched_canvas_sizes(tmp_path):
    root = tmp_path / "layers"
    save(root / "1-Back" / "A.png", size=(8, 8))
    save(root / "2-Top" / "B.png", size=(8, 8))
    odd = save(root / "2-Top" / "C.png", size=(8, 9))
    msg = error_for(root)
    assert str(odd) in msg and "8x9" in msg


def test_empty_layer_folder(tmp_path):
    root = one_layer(tmp_path, "A.png")
    (root / "Empty").mkdir()
    (root / "Empty" / "readme.txt").write_text("no pngs here")
    msg = error_for(root)
    assert str(root / "Empty") in msg and "empty" in msg


def test_no_layer_folders(tmp_path):
    (tmp_path / "layers").mkdir()
    assert str(tmp_path / "layers") in error_for(tmp_path / "layers")
    assert str(tmp_path / "missing") in error_for(tmp_path / "missing")


def test_duplicate_trait_name(tmp_path):
    root = one_layer(tmp_path, "Hat#1.png", "Hat#2.png", "Cap.png")
    msg = error_for(root)
    assert str(root / "Body" / "Hat#2.png") in msg and "Hat#1.png" in msg


def test_duplicate_trait_name_with_and_without_weight(tmp_path):
    root = one_layer(tmp_path, "Hat.png", "Hat#3.png")
    assert "'Hat'" in error_for(root)


def test_all_zero_weights(tmp_path):
    root = one_layer(tmp_path, "A#0.png", "B#0.png")
    save(root / "Other" / "X#1.png")
    msg = error_for(root)
    assert str(root / "Body") in msg and "weight 0" in msg


def test_some_zero_weights_are_fine(tmp_path):
    ls = load_layers(one_layer(tmp_path, "A#0.png", "B#2.png", "C#0.png"))
    assert list(ls.layers[0].weights) == [0.0, 2.0, 0.0]
    assert ls.combinations == 1


def test_hashlips_newer_naming_and_default_weight(tmp_path):
    root = tmp_path / "layers"
    for name in ("Red__w10.png", "Blue#2.png", "Plain.png", "Odd__wx.png"):
        save(root / "L" / name)
    ls = load_layers(root)
    assert [(t.name, t.weight) for t in ls.layers[0].traits] == [("Blue", 2.0), ("Odd__wx", 1.0), ("Plain", 1.0),
                                                                  ("Red", 10.0)]


def test_nested_weighted_folders(tmp_path):
    """nftchef layout: sub-folders compete with their siblings by weight, then pick inside."""
    root = tmp_path / "layers"
    for path in ("Hair/Bald#20.png", "Hair/Long#20/Brown#3.png", "Hair/Long#20/Black#1.png",
                 "Hair/Short#60/Brown.png", "Hair/Short#60/Dyed#0/Pink.png"):
        save(root / path)
    traits = {t.name: t.weight for t in load_layers(root).layers[0].traits}
    # Short#60 holds a file without a weight: a part of the trait `Short` (nftchef), not a rival of
    # Dyed#0, whose weight 0 never wins; so `Brown` is used once and keeps its plain name.
    assert traits == {"Bald": 20.0, "Black": 5.0, "Brown": 15.0, "Short": 60.0}
    save(root / "Hair" / "Long#20" / "Grey#0" / "Grey.png")
    (root / "Hair" / "Long#20" / "Empty#1").mkdir()
    with pytest.raises(LayerError, match="Empty#1: empty sub-folder"):
        load_layers(root)


def test_nested_folder_with_a_bad_weight_names_it(tmp_path):
    root = tmp_path / "layers"
    save(root / "Hair" / "Long#x" / "Brown.png")
    with pytest.raises(LayerError, match=r"Long#x: bad weight 'x'"):
        load_layers(root)


def test_layer_named_in_the_order_that_is_a_file(tmp_path):
    root = one_layer(tmp_path, "A.png")
    (root / "Notes").write_text("not a layer")
    with pytest.raises(LayerError) as err:
        load_layers(root, order=["Body", "Notes"])
    assert str(err.value) == f"{root / 'Notes'}: a layer must be a folder, this is a file; name a sub-folder of {root}"


@pytest.mark.parametrize("stem", ["Hat#٣", "Hat#१", "Hat#５", "Hat#1٠٠", "Hat__w٣", "Hat#²"])
def test_weights_are_ascii_numbers_as_the_message_asks(stem):
    """Python's \\d and float() take Arabic-Indic, Devanagari and full-width digits; no other engine
    reads them as numbers, and the error asks for a plain number: so they are refused, naming the file."""
    with pytest.raises(LayerError, match="bad weight"):
        parse_trait_name(stem, "#", "L/odd.png")


def test_a_weight_too_large_for_a_float_is_refused_in_both_namings():
    for stem in ("Hat#" + "9" * 400, "Hat__w" + "9" * 400):
        with pytest.raises(LayerError, match="larger than any weight"):
            parse_trait_name(stem, "#", "L/huge.png")


@pytest.mark.parametrize("stem", ["z" + "9" * 5000 + ",Hat#2", "Hat__z" + "1" * 5000, "Hat__x" + "7" * 20 + "__y1"])
def test_positions_past_nine_digits_are_an_error_not_a_traceback(stem):
    from gpucomp.layers.naming import parse_entry

    with pytest.raises(LayerError, match="more than 9 digits"):
        parse_entry(stem, "#", "L/far.png")


@pytest.mark.parametrize("stem", ["z٣,Hat#2", "Hat__z٣", "Hat__x５"])
def test_positions_with_other_digits_stay_part_of_the_name(stem):
    from gpucomp.layers.naming import parse_entry

    entry = parse_entry(stem, "#", "L/odd.png")
    assert entry.z is None and entry.offset is None


def unordered_project(root):
    """HashLips' own example layout: folders named without an order, the order in src/config.js."""
    for folder in ("Background", "Eyeball", "Eye color"):
        save(root / "layers" / folder / "A#1.png")
    return root / "layers"


def test_folders_without_an_order_warn_naming_the_order_used(tmp_path):
    from gpucomp.cli import main
    from gpucomp.errors import LayerWarning

    layers = unordered_project(tmp_path)
    with pytest.warns(LayerWarning, match=r"no stacking order .* bottom first: Background, Eye color, Eyeball; number"):
        assert main(["validate", str(layers), "-n", "1"]) == 0
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.js").write_text("const layerConfigurations = [];")
    with pytest.warns(LayerWarning, match=r"src/config.js is beside it: `gpucomp import-config .*config.js --layers"):
        assert main(["validate", str(layers), "-n", "1"]) == 0


@pytest.mark.parametrize("folders, toml", [
    (("01-Background", "02-Eyeball", "10-Eye color"), ""),  # numbered
    (("Background__z0", "Eyeball__z10"), ""),  # Art Engine 2's __z
    (("Background", "Eyeball"), '[[layers]]\nfolder = "Eyeball"\n[[layers]]\nfolder = "Background"\n'),  # listed
    (("Background",), ""),  # one layer has no order to get wrong
])
def test_folders_whose_order_is_given_do_not_warn(tmp_path, folders, toml):
    from gpucomp.cli import main

    for folder in folders:
        save(tmp_path / "layers" / folder / "A#1.png")
    args = ["validate", str(tmp_path / "layers"), "-n", "1"]
    if toml:
        (tmp_path / "c.toml").write_text(toml)
        args += ["-c", str(tmp_path / "c.toml")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(args) == 0


def test_a_projects_root_passed_for_its_layers_folder_is_asked_about(tmp_path):
    for folder in ("Background", "Eyes"):
        save(tmp_path / "layers" / folder / "A#1.png")
    (tmp_path / "out" / "gallery" / "thumbs").mkdir(parents=True)
    (tmp_path / "out" / "gallery" / "thumbs" / "1.txt").write_text("x")
    (tmp_path / "out" / "gallery" / "data").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(LayerError, match=r"holds a layers folder: is .*layers the one meant\?"):
            load_layers(tmp_path)


def test_a_layer_folder_named_wrong_gets_the_nearest_name_and_the_folders_there(tmp_path):
    for folder in ("01-Background", "02-Eyes"):
        save(tmp_path / folder / "A#1.png")
    with pytest.raises(LayerError, match=r"does not exist; did you mean '02-Eyes'\? "
                                         r"\(the folders there: 01-Background, 02-Eyes\)"):
        load_layers(tmp_path, order=["01-Background", "02-Eye"])
