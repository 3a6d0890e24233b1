"""Contact sheets (gpucomp.publish.preview): layout, pixels, order, transparency, errors, bounded memory, CLI."""
from __future__ import annotations

import weakref

import pytest
from PIL import Image

from gpucomp.errors import ConfigError, GpucompError, OutputError
from gpucomp.publish import preview, thumbs
from gpucomp.publish.preview import make_sheets, sheet_geometry
from gpucomp.publish.thumbs import thumb_size

W, H = 40, 30


def colour(n: int) -> tuple[int, int, int]:
    """A distinct flat colour per item number (no two of 1..300 alike)."""
    return ((n * 53) % 256, (n * 97 + 40) % 256, (n * 11 + 7) % 256)


def make_collection(root, count=23, size=(W, H), rgba_every=3):
    """OUT/images/1..count.png, flat colours; every `rgba_every`-th one is an opaque RGBA image."""
    (root / "images").mkdir(parents=True)
    for n in range(1, count + 1):
        if rgba_every and n % rgba_every == 0:
            Image.new("RGBA", size, colour(n) + (255,)).save(root / "images" / f"{n}.png")
        else:
            Image.new("RGB", size, colour(n)).save(root / "images" / f"{n}.png")
    return root


def load(path) -> Image.Image:
    """The sheet at `path` as RGB, file closed."""
    with Image.open(path) as im:
        return im.convert("RGB")


def colours(im: Image.Image) -> set:
    return {c for _, c in im.getcolors(im.width * im.height)}


def centre(sheet: Image.Image, slot: int, geo: dict, columns: int, thumb: int):
    x = geo["gap"] + (slot % columns) * geo["cell_w"] + thumb // 2
    y = geo["gap"] + (slot // columns) * geo["cell_h"] + thumb // 2
    return sheet.getpixel((x, y))


@pytest.fixture
def out(tmp_path):
    return make_collection(tmp_path / "out")


def test_sheet_count_names_and_sizes(out):
    paths = make_sheets(out, thumb=64, columns=5, rows=2, label=False)
    assert [p.name for p in paths] == ["sheet-0001.png", "sheet-0002.png", "sheet-0003.png"]  # ceil(23 / 10)
    assert all(p.parent == out / "preview" for p in paths)
    # gap = max(2, 64 // 32) = 2; cell = 64 + 2; full sheets 2 + 5*66 by 2 + 2*66
    assert load(paths[0]).size == (332, 134)
    assert load(paths[1]).size == (332, 134)
    assert load(paths[2]).size == (332, 68)  # 3 items left: one row, full width
    assert not [p for p in (out / "preview").iterdir() if p.name.startswith(".gpucomp-tmp-")]


def test_250_items_make_3_sheets(tmp_path):
    out = make_collection(tmp_path / "out", count=250, size=(8, 8))
    paths = make_sheets(out, thumb=16, columns=10, rows=10)
    assert len(paths) == 3
    geo = sheet_geometry(16, 10, 10, True)
    assert load(paths[0]).size == (geo["width"], geo["height"])
    assert load(paths[2]).height == geo["gap"] + 5 * geo["cell_h"]  # 50 items: 5 rows


@pytest.mark.parametrize("thumb", [64, 16, 96])  # as is, downscaled 40x30 -> 16x12, enlarged x2 -> 80x60
def test_tile_centre_is_the_source_colour(out, thumb):
    paths = make_sheets(out, thumb=thumb, columns=5, rows=2, label=False)
    geo = sheet_geometry(thumb, 5, 2, False)
    for sheet_index, path in enumerate(paths):
        sheet = load(path)
        for slot in range(10):
            n = sheet_index * 10 + slot + 1
            if n > 23:
                break
            assert centre(sheet, slot, geo, 5, thumb) == colour(n), (path.name, slot, n)


def test_whole_tile_is_flat_and_aspect_kept(out):
    thumb = 16
    paths = make_sheets(out, thumb=thumb, numbers=[7], label=False)
    geo = sheet_geometry(thumb, 10, 10, False)
    sheet = load(paths[0])
    tw, th = thumb_size(W, H, thumb)
    assert (tw, th) == (16, 12)
    x0, y0 = geo["gap"], geo["gap"] + (thumb - th) // 2
    tile = sheet.crop((x0, y0, x0 + tw, y0 + th))
    assert tile.getcolors() == [(tw * th, colour(7))]  # Lanczos on a flat colour keeps it, edges too
    # letterbox rows above and below the 16x12 tile are sheet background
    assert sheet.getpixel((x0 + 5, y0 - 1)) == thumbs.SHEET_BACKGROUND
    assert sheet.getpixel((x0 + 5, y0 + th)) == thumbs.SHEET_BACKGROUND


def test_order_is_numeric(out):
    paths = make_sheets(out, thumb=16, columns=5, rows=5, label=False)
    geo = sheet_geometry(16, 5, 5, False)
    sheet = load(paths[0])
    assert centre(sheet, 1, geo, 5, 16) == colour(2)  # a name sort would put 10 here
    assert centre(sheet, 9, geo, 5, 16) == colour(10)
    assert centre(sheet, 22, geo, 5, 16) == colour(23)


def test_explicit_numbers_keep_their_order(out):
    paths = make_sheets(out, thumb=16, columns=3, rows=1, numbers=[10, 2, 17], label=False)
    geo = sheet_geometry(16, 3, 1, False)
    sheet = load(paths[0])
    assert [centre(sheet, s, geo, 3, 16) for s in range(3)] == [colour(10), colour(2), colour(17)]


def test_labels_on_and_off(out):
    on = make_sheets(out, thumb=32, columns=5, rows=2, dest=out / "on")
    off = make_sheets(out, thumb=32, columns=5, rows=2, dest=out / "off", label=False)
    g_on, g_off = sheet_geometry(32, 5, 2, True), sheet_geometry(32, 5, 2, False)
    assert g_on["label_h"] > 0 and g_off["label_h"] == 0
    s_on, s_off = load(on[0]), load(off[0])
    assert s_on.height == g_on["height"] > s_off.height == g_off["height"]
    # the label strip under the first tile holds text (light pixels); without labels there is none
    strip = s_on.crop((g_on["gap"], g_on["gap"] + 32, g_on["gap"] + 32, g_on["gap"] + 32 + g_on["label_h"]))
    assert any(sum(px) > 3 * 150 for px in colours(strip))
    bg = thumbs.SHEET_BACKGROUND
    below = s_off.crop((0, g_off["gap"] + 32, s_off.width, g_off["gap"] + 32 + g_off["gap"]))
    assert colours(below) == {bg}


def test_long_labels_on_tiny_thumbs_are_clipped(tmp_path):
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    for n in (123456789, 987654321):
        Image.new("RGB", (8, 8), (200, 10, 10)).save(out / "images" / f"{n}.png")
    paths = make_sheets(out, thumb=8, columns=2, rows=1)
    geo = sheet_geometry(8, 2, 1, True)
    sheet = load(paths[0])
    gap_col = sheet.crop((geo["gap"] + 8, geo["gap"] + 8, geo["cell_w"] + geo["gap"], sheet.height))
    assert colours(gap_col) == {thumbs.SHEET_BACKGROUND}  # text did not spill into the gap


def test_transparent_images(tmp_path):
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(out / "images" / "1.png")        # fully transparent
    Image.new("RGBA", (64, 64), (255, 0, 0, 128)).save(out / "images" / "2.png")    # half red
    Image.new("LA", (64, 64), (90, 255)).save(out / "images" / "3.png")             # opaque grey + alpha
    p = Image.new("P", (64, 64), 1)
    p.putpalette([0, 0, 0, 10, 200, 30])
    p.info["transparency"] = 0
    p.save(out / "images" / "4.png", transparency=0)                                 # palette, opaque index
    paths = make_sheets(out, thumb=64, columns=4, rows=1, label=False)
    geo = sheet_geometry(64, 4, 1, False)
    sheet = load(paths[0])
    x0 = y0 = geo["gap"]
    tile1 = sheet.crop((x0, y0, x0 + 64, y0 + 64))
    assert colours(tile1) == set(thumbs.CHECKER)  # checkerboard shows through, both squares
    red = centre(sheet, 1, geo, 4, 64)
    assert red[0] > 200 and red[1] < 130 and red[1] > 50  # red blended over light grey
    assert centre(sheet, 2, geo, 4, 64) == (90, 90, 90)
    assert centre(sheet, 3, geo, 4, 64) == (10, 200, 30)


def test_missing_image_is_named(out):
    with pytest.raises(OutputError, match=r"99\.png: image missing"):
        make_sheets(out, numbers=[1, 99, 2])


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_is_named(out, damage):
    f = out / "images" / "17.png"
    data = f.read_bytes()
    f.write_bytes(b"not a png at all" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(OutputError, match=r"17\.png: cannot be read as an image") as info:
        make_sheets(out, thumb=16, columns=5, rows=2, workers=2)
    assert isinstance(info.value, GpucompError)
    assert not [p for p in (out / "preview").iterdir() if p.name.startswith(".gpucomp-tmp-")]


def test_no_images_or_no_folder(tmp_path):
    with pytest.raises(OutputError, match="not a folder"):
        make_sheets(tmp_path / "nowhere")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "images" / "notes.png.txt").write_text("x")
    with pytest.raises(OutputError, match="no numbered images"):
        make_sheets(tmp_path / "empty")
    (tmp_path / "noimages").mkdir()
    with pytest.raises(OutputError, match="cannot list images"):
        make_sheets(tmp_path / "noimages")


def test_only_numbered_pngs_are_listed(out):
    (out / "images" / "cover.png").write_bytes(b"not read")
    (out / "images" / "007.png").write_bytes(b"not read")
    (out / "images" / ".gpucomp-tmp-abc").write_bytes(b"not read")
    assert thumbs.list_numbers(out / "images") == list(range(1, 24))


@pytest.mark.parametrize("kwargs, match", [
    ({"thumb": 7}, "thumb must be 8..1024"),
    ({"thumb": 1025}, "thumb must be 8..1024"),
    ({"thumb": 64.0}, "thumb must be a whole number"),
    ({"columns": 0}, "columns must be >= 1"),
    ({"rows": -1}, "rows must be >= 1"),
    ({"workers": -2}, "workers must be >= 0"),
    ({"thumb": 128, "columns": 70}, "lower --columns, --rows or --thumb"),
    ({"thumb": 1024, "rows": 8}, "lower --columns, --rows or --thumb"),
    ({"numbers": []}, "numbers is empty"),
    ({"numbers": [1, "2"]}, "numbers must be whole numbers"),
])
def test_argument_validation(out, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_sheets(out, **kwargs)
    assert not (out / "preview").exists()  # nothing written on bad arguments


def test_largest_allowed_sheet_is_within_the_cap():
    geo = sheet_geometry(1024, 7, 7, True)
    assert geo["width"] <= preview.MAX_SHEET_SIDE and geo["height"] <= preview.MAX_SHEET_SIDE


def test_memory_is_bounded(tmp_path, monkeypatch):
    """Never more than 2*workers thumbnails (+ the one being pasted) alive, never two canvases."""
    out = make_collection(tmp_path / "out", count=250, size=(8, 8))
    live = {"thumbs": 0, "thumbs_peak": 0, "canvases": 0, "canvases_peak": 0}

    def track(kind, im):
        live[kind] += 1
        live[kind + "_peak"] = max(live[kind + "_peak"], live[kind])
        weakref.finalize(im, lambda: live.__setitem__(kind, live[kind] - 1))
        return im

    real_thumb, real_canvas = preview.thumbnail, preview._new_canvas
    monkeypatch.setattr(preview, "thumbnail", lambda *a: track("thumbs", real_thumb(*a)))
    monkeypatch.setattr(preview, "_new_canvas", lambda *a: track("canvases", real_canvas(*a)))
    seen = []
    paths = make_sheets(out, thumb=16, columns=10, rows=10, workers=2, progress=lambda d, t: seen.append((d, t)))
    assert len(paths) == 3
    assert live["canvases_peak"] == 1
    assert 1 <= live["thumbs_peak"] <= 2 * 2 + 2, live
    assert seen == [(i, 250) for i in range(1, 251)]


def test_stale_sheets_of_a_longer_run_are_removed(out):
    assert len(make_sheets(out, thumb=16, columns=5, rows=2)) == 3
    (out / "preview" / "keep-me.png").write_bytes(b"x")
    paths = make_sheets(out, thumb=16, columns=5, rows=2, numbers=[1, 2])
    assert sorted(p.name for p in (out / "preview").iterdir()) == ["keep-me.png", "sheet-0001.png"]
    assert paths == [out / "preview" / "sheet-0001.png"]


def test_on_a_generated_collection(demo_layers, tmp_path):
    import gpucomp

    out = tmp_path / "coll"
    for _ in gpucomp.generate(demo_layers, out, size=12, seed=1):
        pass
    paths = make_sheets(out, thumb=32, columns=4, rows=2)
    assert len(paths) == 2
    src = load(out / "images" / "1.png")
    assert src.size == (64, 64)
    geo = sheet_geometry(32, 4, 2, True)
    tile = load(paths[0]).crop((geo["gap"], geo["gap"], geo["gap"] + 32, geo["gap"] + 32))
    assert tile.tobytes() == src.resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=3.0).tobytes()


def test_on_a_collection_whose_primary_image_is_webp(demo_layers, tmp_path):
    """No PNG at all: the sheets show each item's primary image (images/<n>.webp, lossless here, so
    the tile is the composite's thumbnail); a x4 copy is larger, so it is not used."""
    import gpucomp
    from gpucomp.config import Config, with_overrides

    cfg = with_overrides(Config(), formats=["webp"], sizes=[{"name": "x4", "scale": 4}])
    webp = type(cfg.formats[0])("webp", {**cfg.formats[0].settings, "lossless": True})
    out = tmp_path / "coll"
    for _ in gpucomp.generate(demo_layers, out, size=5, seed=1, formats=(webp,), sizes=cfg.sizes):
        pass
    assert not list((out / "images").glob("*.png"))
    paths = make_sheets(out, thumb=32, columns=5, rows=1)
    assert len(paths) == 1
    src = load(out / "images" / "1.webp")
    geo = sheet_geometry(32, 5, 1, True)
    tile = load(paths[0]).crop((geo["gap"], geo["gap"], geo["gap"] + 32, geo["gap"] + 32))
    assert tile.tobytes() == src.resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=3.0).tobytes()

def test_cli(out, capsys):
    from gpucomp.cli import build_parser, main

    parser = build_parser()
    args = parser.parse_args(["preview", str(out), "--thumb", "16", "--columns", "4", "--rows", "3",
                              "--no-labels", "-o", str(out / "sheets")])
    assert (args.thumb, args.columns, args.rows, args.label) == (16, 4, 3, False)
    assert main(["preview", str(out), "--thumb", "16", "--columns", "4", "--rows", "3",
                 "--no-labels", "-o", str(out / "sheets")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "sheets" / f"sheet-000{i}.png") for i in (1, 2)]  # ceil(23 / 12)
    assert load(printed[0]).height == sheet_geometry(16, 4, 3, False)["height"]
    defaults = parser.parse_args(["preview", str(out)])
    assert (defaults.thumb, defaults.columns, defaults.rows, defaults.label, defaults.dest) == (128, 10, 10, True, None)


def test_a_finished_collection_missing_an_item_is_said_before_any_sheet(demo_layers, tmp_path):
    """A finished collection (provenance.json lists every item) with images removed: the sheets
    would have holes, so the preview names the missing items and how to render them again."""
    import gpucomp

    out = tmp_path / "c"
    gpucomp.run(demo_layers, out, size=14, seed=3)
    (out / "images" / "5.png").unlink()
    (out / "images" / "12.png").unlink()
    with pytest.raises(OutputError, match=r"5\.png: image missing \(2 of the 14 items to show have none: 5, 12\); "
                                          r"`gpucomp resume`"):
        make_sheets(out, thumb=16)
    assert not (out / "preview").exists() or not any((out / "preview").iterdir())
    list(gpucomp.resume(out))  # re-renders the missing items
    assert len(make_sheets(out, thumb=16, columns=4, rows=4)) == 1  # all 14 again
