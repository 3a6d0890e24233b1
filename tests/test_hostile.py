"""Hostile or broken input: every case either loads with exact pixels or fails while loading with a
LayerError/ConfigError that names the file and the problem, before anything is rendered or written."""
import csv
import io
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import unicodedata
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gpucomp
from gpucomp._shared.safe_text import unsafe
from gpucomp.cli import main
from gpucomp.config import Config, load_config, with_overrides
from gpucomp.errors import ConfigError, LayerError, LayerWarning, PlanError
from gpucomp.layers.decode import _max_png_bytes
from gpucomp.layers.layerset import MAX_PROBLEMS_SHOWN, load_layers
from gpucomp.layers.scan import MAX_NESTING, Walk
from gpucomp.plan.sampler import make_plan

SIG = b"\x89PNG\r\n\x1a\n"


# --- hand-made PNGs --------------------------------------------------------------------------------

def chunk(kind, body, crc=None):
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def ihdr(w, h, depth=8, ctype=6):
    return chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))


def scanlines(rows):
    """Filter type 0 before each row; `rows` is a list of bytes."""
    return b"".join(b"\0" + r for r in rows)


def make_png(w, h, depth, ctype, rows, before=b"", after=b""):
    """`before` goes between IHDR and IDAT, `after` between IDAT and IEND."""
    return (SIG + ihdr(w, h, depth, ctype) + before + chunk(b"IDAT", zlib.compress(scanlines(rows))) + after
            + chunk(b"IEND", b""))


def pack_bits(values, depth):
    bits = "".join(format(int(v), f"0{depth}b") for v in values)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def pillow_png(pixels, mode="RGBA", **params):
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, format="PNG", **params)
    return buf.getvalue()


def put(root, rel, data):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def opaque(w=8, h=8, value=200):
    return pillow_png(np.full((h, w, 4), value, np.uint8))


def load_one(tmp_path, data, name="T.png"):
    """Load a single-trait layers folder; the trait's full canvas as (H, W, 4)."""
    put(tmp_path / "layers", f"L/{name}", data)
    t = load_layers(tmp_path / "layers").layers[0].traits[0]
    out = np.zeros(t.canvas + (4,), np.uint8)
    if t.box is not None:
        y0, x0, y1, x1 = t.box
        out[y0:y1, x0:x1] = t.pixels
    return out


def layer_error(root, **kwargs):
    with pytest.raises(LayerError) as err:
        load_layers(root, **kwargs)
    return str(err.value)


def rgba(r, g, b, a):
    return np.stack([np.broadcast_to(np.asarray(c, np.uint8), np.shape(r)) for c in (r, g, b, a)], -1)


# --- 1. decompression bombs: refused from the IHDR, before Pillow sees the file ----------------------

@pytest.fixture
def no_pillow(monkeypatch):
    """Records every file a decoder sees (Pillow's Image.open, gpucomp's fast PNG reader, which
    hands what it does not read on to Pillow): a refused header must never reach either."""
    from gpucomp.layers import png_read

    calls = []
    real, fast = Image.open, png_read.decode

    def fast_then_pillow(header):
        got = fast(header)
        if got is not None:
            calls.append(header)
        return got

    monkeypatch.setattr(Image, "open", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(png_read, "decode", fast_then_pillow)
    return calls


@pytest.mark.parametrize("w, h", [(100_000, 100_000), (10_000, 10_000), (1, 2**31 - 1), (2**32 - 1, 2**32 - 1)])
def test_decompression_bomb_refused_before_decoding(tmp_path, no_pillow, w, h):
    # A few hundred bytes that declare gigapixels; the IDAT is a tiny valid deflate stream.
    data = SIG + ihdr(w, h) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    assert len(data) < 200
    bad = put(tmp_path / "layers", "L/Bomb#1.png", data)
    t0 = time.perf_counter()
    msg = layer_error(tmp_path / "layers")
    assert time.perf_counter() - t0 < 2
    assert str(bad) in msg and f"declared size {w}x{h}" in msg and "larger than" in msg
    assert no_pillow == []


@pytest.mark.parametrize("w, h", [(0, 8), (8, 0), (0, 0)])
def test_zero_size_header(tmp_path, no_pillow, w, h):
    bad = put(tmp_path / "layers", "L/T.png", SIG + ihdr(w, h) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    msg = layer_error(tmp_path / "layers")
    assert str(bad) in msg and f"{w}x{h}" in msg and "no pixels" in msg
    assert no_pillow == []


@pytest.mark.parametrize("data", [
    SIG,  # signature only
    SIG + b"\0\0\0\x0dIHDR\0\0",  # cut inside IHDR
    SIG + chunk(b"tEXt", b"a\0b") + ihdr(8, 8),  # IHDR not first
    SIG + chunk(b"IHDR", struct.pack(">IIBBBB", 8, 8, 8, 6, 0, 0)) + chunk(b"IEND", b""),  # 12-byte IHDR
], ids=["signature-only", "cut-ihdr", "ihdr-not-first", "short-ihdr"])
def test_malformed_header(tmp_path, no_pillow, data):
    bad = put(tmp_path / "layers", "L/T.png", data)
    msg = layer_error(tmp_path / "layers")
    assert str(bad) in msg and "IHDR" in msg
    assert no_pillow == []


# --- 2. every problem in one error ---------------------------------------------------------------

def test_all_problems_reported_together(tmp_path):
    root = tmp_path / "layers"
    put(root, "1-Back/Ok.png", opaque())
    empty = put(root, "1-Back/Empty.png", b"")
    jpeg = put(root, "2-Body/Photo.png", b"\xff\xd8\xff\xe0 not a png")
    weight = put(root, "2-Body/Hat#1,5.png", opaque())
    put(root, "2-Body/Cap#2.png", opaque())
    dup = put(root, "2-Body/Cap.png", opaque())  # natural order puts `Cap#2` first
    odd = put(root, "3-Top/Big.png", opaque(9, 8))
    put(root, "3-Top/Small.png", opaque())
    msg = layer_error(root)
    lines = msg.splitlines()
    assert lines[0] == f"{root}: 5 problems in the layers folder; fix them all, then run again:"
    assert len(lines) == 6
    for path, problem in [(empty, "empty"), (jpeg, "not a PNG"), (weight, "bad weight"), (dup, "used twice"),
                          (odd, "9x8")]:
        assert any(line.startswith(f"  {path}: ") and problem in line for line in lines), (path, msg)


def test_missing_folder_and_bad_file_together(tmp_path):
    root = tmp_path / "layers"
    bad = put(root, "Body/T.png", b"")
    msg = layer_error(root, order=["Body", "Nope"])
    assert str(bad) in msg and str(root / "Nope") in msg and "2 problems" in msg


def test_problem_list_is_capped(tmp_path):
    root = tmp_path / "layers"
    put(root, "L/Ok.png", opaque())
    for i in range(MAX_PROBLEMS_SHOWN + 7):
        put(root, f"L/Bad{i}.png", b"")
    lines = layer_error(root).splitlines()
    assert f"{MAX_PROBLEMS_SHOWN + 7} problems" in lines[0]
    assert len(lines) == 1 + MAX_PROBLEMS_SHOWN + 1 and lines[-1] == "  ... and 7 more"
    assert lines[1] == f"  {root / 'L' / 'Bad0.png'}: the file is empty (0 bytes); re-export it as a PNG"  # natural order


def test_single_problem_keeps_its_own_message(tmp_path):
    root = tmp_path / "layers"
    put(root, "L/Ok.png", opaque())
    bad = put(root, "L/Empty#2.png", b"")
    assert layer_error(root) == f"{bad}: the file is empty (0 bytes); re-export it as a PNG"


def test_size_mismatch_reports_the_odd_file_even_when_it_sorts_first(tmp_path):
    root = tmp_path / "layers"
    odd = put(root, "1-Back/A.png", opaque(16, 16))
    for name in ("B.png", "C.png", "D.png"):
        put(root, f"1-Back/{name}", opaque())
    msg = layer_error(root)
    assert msg.startswith(f"{odd}: size 16x16 differs from {root / '1-Back' / 'B.png'} (8x8)")


def test_zero_weight_check_waits_for_names_to_be_fixed(tmp_path):
    root = tmp_path / "layers"
    put(root, "L/A#0.png", opaque())
    bad = put(root, "L/B#x.png", opaque())
    msg = layer_error(root)
    assert str(bad) in msg and "weight 0" not in msg


# --- 3. paths: nothing outside the layers folder is read ----------------------------------------

@pytest.mark.parametrize("folder", ["/etc", "../outside", "a/b", "..", ".", "", "a\\b", "C:x", "C:\\layers"])
def test_config_layer_folder_must_be_a_plain_name(tmp_path, folder):
    path = tmp_path / "gpucomp.toml"
    path.write_text(f"[[layers]]\nfolder = '{folder}'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "layers[0].folder" in msg and repr(folder) in msg
    with pytest.raises(ConfigError):
        with_overrides(Config(), layers=(gpucomp.config.LayerOption(folder),))


def test_config_layer_folder_with_dots_inside_a_name_is_fine(tmp_path):
    path = tmp_path / "gpucomp.toml"
    path.write_text("[[layers]]\nfolder = 'v1..2 Hats'\n[[layers]]\nfolder = '.hidden'\n", encoding="utf-8")
    assert [lo.folder for lo in load_config(path).layers] == ["v1..2 Hats", ".hidden"]


@pytest.mark.parametrize("folder", ["../outside", "/etc", ".."])
def test_layer_order_with_a_path_is_refused_by_the_loader_too(tmp_path, folder):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    put(tmp_path, "outside/X.png", opaque())
    msg = layer_error(root, order=["L", folder])
    assert repr(folder) in msg and "plain folder name" in msg


def test_layer_folder_symlink_to_outside_is_refused(tmp_path):
    root = tmp_path / "layers"
    put(root, "1-Back/A.png", opaque())
    put(tmp_path, "elsewhere/Secret.png", opaque())
    (root / "2-Linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    msg = layer_error(root)  # the folder itself is named, not only the files in it
    assert msg == (f"{root / '2-Linked'}: links outside the layers folder ({(tmp_path / 'elsewhere').resolve()}); "
                   f"copy the folder in instead")


def test_layer_folder_symlink_inside_is_fine(tmp_path):
    root = tmp_path / "layers"
    put(root, "1-Back/A.png", opaque())
    (root / "2-Again").symlink_to(root / "1-Back", target_is_directory=True)
    assert [la.folder for la in load_layers(root).layers] == ["1-Back", "2-Again"]


def test_trait_symlink_to_outside_is_refused(tmp_path):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    secret = put(tmp_path, "secret.png", opaque())
    (root / "L" / "B.png").symlink_to(secret)
    msg = layer_error(root)
    assert str(root / "L" / "B.png") in msg and "outside the layers folder" in msg


def test_broken_trait_symlink_is_an_error(tmp_path):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    (root / "L" / "B.png").symlink_to(root / "L" / "gone.png")
    msg = layer_error(root)
    assert str(root / "L" / "B.png") in msg and "cannot read" in msg


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_refused_without_blocking(tmp_path):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    os.mkfifo(root / "L" / "Pipe.png")
    msg = layer_error(root)
    assert str(root / "L" / "Pipe.png") in msg and "not a regular file" in msg


def test_dots_in_trait_names_are_harmless(tmp_path):
    """Output files are numbered, so a trait called `..` or `Up..Down` never becomes a path."""
    root = tmp_path / "layers"
    put(root, "1-Back/Up..Down#2.png", opaque(value=10))
    put(root, "1-Back/.. #1.png", opaque(value=20))  # hidden file: ignored
    put(root, "2-Top/Hat..#1.png", pillow_png(np.zeros((8, 8, 4), np.uint8)))
    put(root, "2-Top/ ..#1.png", pillow_png(np.zeros((8, 8, 4), np.uint8)))
    ls = load_layers(root)
    assert [[t.name for t in la.traits] for la in ls.layers] == [["Up..Down"], ["..", "Hat.."]]
    out = tmp_path / "out"
    before = {p for p in tmp_path.rglob("*")}
    items = list(gpucomp.generate(root, out, size=2, seed=1, backend="cpu"))
    assert len(items) == 2
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(p == out or out in p.parents for p in new)


# --- 4. PNG flavours: exact pixels or a clear error ----------------------------------------------

GREY = np.array([[0, 60, 120, 255], [255, 180, 90, 30]], np.uint8)
ALPHA = np.array([[255, 0, 128, 1], [7, 255, 200, 0]], np.uint8)
COLOURS = np.random.default_rng(5).integers(0, 256, (2, 4, 3), dtype=np.uint8)


def case_rgba8():
    px = np.dstack([COLOURS, ALPHA])
    return pillow_png(px), px


def case_rgb8():
    return pillow_png(COLOURS, "RGB"), rgba(COLOURS[..., 0], COLOURS[..., 1], COLOURS[..., 2], 255)


def case_rgb8_colour_key():
    key = COLOURS[0, 1]
    data = make_png(4, 2, 8, 2, [r.tobytes() for r in COLOURS], before=chunk(b"tRNS", struct.pack(">HHH", *key)))
    a = np.where((COLOURS == key).all(-1), 0, 255)
    return data, rgba(COLOURS[..., 0], COLOURS[..., 1], COLOURS[..., 2], a)


def case_grey8():
    return pillow_png(GREY, "L"), rgba(GREY, GREY, GREY, 255)


def case_grey_alpha8():
    return pillow_png(np.dstack([GREY, ALPHA]), "LA"), rgba(GREY, GREY, GREY, ALPHA)


def case_palette():
    idx = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], np.uint8)
    pal = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 8, 7]], np.uint8)
    alpha = np.array([0, 64, 255, 255], np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette(pal.tobytes())
    buf = io.BytesIO()
    im.save(buf, format="PNG", transparency=alpha.tobytes())
    want = np.dstack([pal[idx], alpha[idx]])
    want[want[..., 3] == 0] = 0  # colour under alpha 0 is not compared
    return buf.getvalue(), want


def case_palette_2bit():
    idx = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], np.uint8)
    pal = np.array([[1, 2, 3], [40, 50, 60], [200, 100, 0], [255, 255, 255]], np.uint8)
    data = make_png(4, 2, 2, 3, [pack_bits(r, 2) for r in idx], before=chunk(b"PLTE", pal.tobytes()))
    return data, rgba(pal[idx][..., 0], pal[idx][..., 1], pal[idx][..., 2], 255)


def case_grey_1bit():
    g = np.array([[0, 1, 1, 0], [1, 0, 0, 1]], np.uint8)
    return make_png(4, 2, 1, 0, [pack_bits(r, 1) for r in g]), rgba(g * 255, g * 255, g * 255, 255)


def grey_low_depth_with_key(depth, key):
    g = (np.arange(8).reshape(2, 4) * 3 % (1 << depth)).astype(np.uint8)
    data = make_png(4, 2, depth, 0, [pack_bits(r, depth) for r in g], before=chunk(b"tRNS", struct.pack(">H", key)))
    v = g * (255 // ((1 << depth) - 1))
    return data, rgba(v, v, v, np.where(g == key, 0, 255))


def case_grey_2bit_key():
    return grey_low_depth_with_key(2, 2)


def case_grey_4bit_key():
    return grey_low_depth_with_key(4, 6)


def case_grey_16bit():
    v = np.array([[0, 257, 32768, 65535], [128, 129, 65534, 1000]], ">u2")
    g = np.rint(v / 257).astype(np.uint8)
    return make_png(4, 2, 16, 0, [r.tobytes() for r in v]), rgba(g, g, g, 255)


MODES = {name[5:]: fn for name, fn in dict(globals()).items() if name.startswith("case_")}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_png_flavours_decode_to_exact_pixels(tmp_path, mode):
    data, want = MODES[mode]()
    got = load_one(tmp_path, data)
    got[got[..., 3] == 0] = 0
    want = want.copy()
    want[want[..., 3] == 0] = 0
    assert got.shape == want.shape and np.array_equal(got, want), (got.tolist(), want.tolist())


V16 = np.array([[0, 257, 300, 65535], [40000, 65280, 128, 32896]], np.uint16)


@pytest.mark.parametrize("ctype, channels", [(2, 3), (6, 4), (4, 2)], ids=["rgb16", "rgba16", "grey-alpha16"])
def test_16_bit_colour_is_within_one_level(tmp_path, ctype, channels):
    """Pillow keeps the high byte of 16-bit colour; that is at most 1/255 off the rounded value
    and exact on the values 8-bit art turns into (multiples of 257)."""
    planes = [V16, V16[::-1], V16[:, ::-1], V16.T.reshape(2, 4)][:channels]
    px = np.stack(planes, -1).astype(">u2")
    got = load_one(tmp_path, make_png(4, 2, 16, ctype, [r.tobytes() for r in px])).astype(int)
    want = np.rint(px.astype(float) / 257).astype(int)
    if channels == 2:
        want = np.dstack([want[..., 0]] * 3 + [want[..., 1]])
    elif channels == 3:
        want = np.dstack([want, np.full(want.shape[:2], 255)])
    assert np.abs(got - want).max() <= 1
    exact = np.broadcast_to((px % 257 == 0).all(-1)[..., None], want.shape)
    assert np.array_equal(got[exact], want[exact])


def test_16_bit_rgb_colour_key_is_refused(tmp_path):
    """Pillow compares the 16-bit key with 8-bit pixels, so the wrong pixels would turn clear."""
    px = np.stack([V16, V16, V16], -1).astype(">u2")
    data = make_png(4, 2, 16, 2, [r.tobytes() for r in px], before=chunk(b"tRNS", struct.pack(">HHH", 0, 1, 0)))
    put(tmp_path / "layers", "L/T.png", data)
    msg = layer_error(tmp_path / "layers")
    assert str(tmp_path / "layers" / "L" / "T.png") in msg and "16-bit RGB" in msg and "RGBA" in msg


@pytest.mark.parametrize("frames", [2, 3])
def test_animated_png_is_refused(tmp_path, frames):
    ims = [Image.fromarray(np.full((8, 8, 4), 40 * i, np.uint8), "RGBA") for i in range(frames)]
    buf = io.BytesIO()
    ims[0].save(buf, format="PNG", save_all=True, append_images=ims[1:], duration=100, loop=0)
    bad = put(tmp_path / "layers", "L/Spin.png", buf.getvalue())
    msg = layer_error(tmp_path / "layers")
    assert str(bad) in msg and f"{frames} frames" in msg and "still frame" in msg


def crc_broken(where):
    """A valid 4x2 RGBA PNG with the CRC of one chunk wrong."""
    parts = {
        "IHDR": ihdr(4, 2),
        "tEXt-before": chunk(b"tEXt", b"Comment\0hi"),
        "IDAT": chunk(b"IDAT", zlib.compress(scanlines([bytes(range(16))] * 2))),
        "tEXt-after": chunk(b"tEXt", b"Comment\0bye"),
        "IEND": chunk(b"IEND", b""),
    }
    body = bytearray(parts[where])
    body[-1] ^= 0xFF
    parts[where] = bytes(body)
    return SIG + b"".join(parts.values())


@pytest.mark.parametrize("where", ["IHDR", "tEXt-before", "IDAT", "tEXt-after", "IEND"])
def test_chunk_with_bad_crc_is_an_error(tmp_path, where):
    """Pillow ignores the CRCs of IDAT and of chunks after it; we check every chunk."""
    bad = put(tmp_path / "layers", "L/T.png", crc_broken(where))
    msg = layer_error(tmp_path / "layers")
    kind = where.split("-")[0].encode()
    assert str(bad) in msg and f"chunk {kind!r}" in msg and "checksum" in msg


@pytest.mark.parametrize("junk", [b"x", b"garbage after the end" * 100, b"\0" * 4096, SIG + ihdr(99999, 99999)])
def test_trailing_bytes_after_iend_are_ignored(tmp_path, junk):
    data, want = case_rgba8()
    got = load_one(tmp_path, data + junk)
    assert np.array_equal(got, want)


def test_data_cut_before_iend_is_truncated(tmp_path):
    data, _ = case_rgba8()
    bad = put(tmp_path / "layers", "L/T.png", data[:-12])  # the IEND chunk is exactly 12 bytes
    msg = layer_error(tmp_path / "layers")
    assert str(bad) in msg and "truncated" in msg


def test_thousands_of_traits(tmp_path):
    root = tmp_path / "layers"
    for li in range(2):
        for ti in range(1000):
            px = np.zeros((8, 8, 4), np.uint8)
            px[ti % 8, li * 4 + ti // 250] = [ti % 256, li, 7, 255]
            put(root, f"{li}-L/T{ti}#{1 + ti % 3}.png", pillow_png(px))
    t0 = time.perf_counter()
    ls = load_layers(root)
    assert time.perf_counter() - t0 < 30
    assert ls.trait_count == 2000 and ls.combinations == 1_000_000
    assert [t.name for t in ls.layers[0].traits][:3] == ["T0", "T1", "T2"]
    assert ls.layers[1].traits[999].name == "T999" and ls.layers[1].traits[999].weight == 1.0
    assert ls.layers[0].traits[257].pixels.tolist() == [[[1, 0, 7, 255]]]
    plan = make_plan([layer.weights for layer in ls.layers], 500, 3)
    assert len({tuple(row) for row in plan.combos.tolist()}) == 500


@pytest.mark.parametrize("name", [
    "Café ☕ Noir#2.png", "日本語の帽子#1.png", "عربي#1.png", "\u202eevil\u202c#1.png", "zero\u200bwidth#1.png",
    "😀🎩#3.png", "a\u0301ccent#1.png", "tab\there#1.png", "quote'\"#1.png", "back\\slash#1.png",
])
def test_odd_unicode_names_load(tmp_path, name):
    put(tmp_path / "layers", f"L/{name}", opaque())
    t = load_layers(tmp_path / "layers").layers[0].traits[0]
    assert t.name == unicodedata.normalize("NFC", name.rsplit("#", 1)[0])


def test_decomposed_and_composed_names_are_the_same_trait(tmp_path):
    root = tmp_path / "layers"
    put(root, "L/" + unicodedata.normalize("NFC", "Café#1.png"), opaque())
    put(root, "L/" + unicodedata.normalize("NFD", "Café#2.png"), opaque())  # as a Mac writes it
    assert "'Café' is used twice" in layer_error(root)


@pytest.fixture
def bytes_names(tmp_path):
    """Skip where the file system refuses names that are not UTF-8 (macOS, Windows)."""
    probe = os.path.join(os.fsencode(tmp_path), b"probe\xff")
    try:
        open(probe, "wb").close()
    except OSError:
        pytest.skip("file system needs UTF-8 names")
    os.remove(probe)


def test_non_utf8_trait_name_is_refused(tmp_path, bytes_names):
    root = tmp_path / "layers"
    put(root, "L/Ok.png", opaque())
    bad = os.path.join(os.fsencode(root / "L"), b"Caf\xe9#1.png")  # Latin-1 from an old zip
    with open(bad, "wb") as f:
        f.write(opaque())
    msg = layer_error(root)
    assert "Caf" in msg and "not valid UTF-8" in msg and "rename" in msg


def test_non_utf8_layer_folder_is_refused(tmp_path, bytes_names):
    root = tmp_path / "layers"
    put(root, "A/Ok.png", opaque())
    folder = os.path.join(os.fsencode(root), b"Hats\xff")
    os.mkdir(folder)
    with open(os.path.join(folder, b"T.png"), "wb") as f:
        f.write(opaque())
    msg = layer_error(root)
    assert "Hats" in msg and "not valid UTF-8" in msg


@pytest.mark.parametrize("name", ["Hat.PNG", "Hat#2.Png", "Hat.pNg"])
def test_uppercase_suffix_is_a_trait(tmp_path, name):
    put(tmp_path / "layers", f"L/{name}", opaque())
    assert [t.name for t in load_layers(tmp_path / "layers").layers[0].traits] == ["Hat"]


def test_junk_files_are_ignored(tmp_path):
    root = tmp_path / "layers"
    put(root, "L/Hat#2.png", opaque())
    put(root, "L/.DS_Store", b"\0\0\0\1Bud1")
    put(root, "L/._Hat#2.png", b"\0\5\x16\7 AppleDouble")  # macOS resource fork, not a PNG
    put(root, "L/.hidden.png", b"")
    put(root, "L/Thumbs.db", b"\xd0\xcf\x11\xe0")
    put(root, "L/desktop.ini", b"[.ShellClassInfo]")
    put(root, "L/notes.txt", b"Hat: make it bigger")
    put(root, "L/Hat.psd", b"8BPS")
    put(root, ".git/config", b"[core]")
    put(root, "__MACOSX/L/._Hat#2.png", b"junk")  # unzipped from a Mac
    with pytest.warns(LayerWarning, match=r": 2 file\(s\).*left out: L/Hat.psd, L/notes.txt$"):  # named, not skipped
        ls = load_layers(root)
    assert [la.folder for la in ls.layers] == ["L"]
    assert [t.name for t in ls.layers[0].traits] == ["Hat"]


# --- 5. config values -------------------------------------------------------------------------

def config_error(tmp_path, text):
    path = tmp_path / "gpucomp.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    return msg


@pytest.mark.parametrize("text, needle", [
    ('collection = "big"\n', "[collection] must be a table"),
    ("collection = 5\n", "[collection] must be a table"),
    ("[[collection]]\nsize = 3\n", "[collection] must be a table"),
    ('layers = "Background"\n', "array of tables"),
    ("[layers]\nfolder = \"a\"\n", "array of tables"),
    ("layers = [1, 2]\n", "layers[0]"),
    ("[collection]\nseed = -1\n", "seed must be 0 or more"),
    ("[collection]\nsize = 10000000000\n", "size 10000000000 is more than"),
    ("[collection]\nsize = 18446744073709551616\n", "is more than"),
    ("[collection]\nsize = -5\n", "size must be at least 1"),
    ("[collection]\nsize = 1e3\n", "collection.size: expected int"),
    ("[collection]\nsize = inf\n", "collection.size: expected int"),
    ("[collection]\nsize = nan\n", "collection.size: expected int"),
    ("[collection]\nsize = [10]\n", "collection.size: expected int"),
    ("[collection]\nseed = 1.0\n", "collection.seed: expected int"),
    ("[collection.extra]\nfoo = 1\n", "unknown key collection.extra"),
    ("[run.gpu]\ndevice = 1\n", "unknown key run.gpu"),
    ("[extra.deep.table]\nx = 1\n", "unknown table [extra]"),
    ("[[layers]]\nfolder = \"a\"\n[layers.sub]\nx = 1\n", "unknown key(s) sub"),
    ("[[layers]]\nfolder = \"a\"\nname = 3\n", "layers[0].name"),
    ("[run]\nworkers = -1\n", "workers"),
    ("[collection]\nstart = -1\n", "start"),
])
def test_config_values(tmp_path, text, needle):
    assert needle in config_error(tmp_path, text)


def test_negative_seed_from_the_command_line_is_a_config_error():
    with pytest.raises(ConfigError, match="seed must be 0 or more"):
        with_overrides(Config(), seed=-3)


def test_largest_seed_works(tmp_path):
    path = tmp_path / "gpucomp.toml"
    path.write_text(f"[collection]\nseed = {2**63 - 1}\nsize = 2\n", encoding="utf-8")
    cfg = load_config(path)
    plan = make_plan([np.ones(3)], cfg.size, cfg.seed)
    assert len(plan) == 2


# --- 6. the file system's odd objects: links, loops, special files, things that change -----------------

def cli(*args, timeout=60):
    """`python -m gpucomp ARGS` in a subprocess with a deadline: (exit status, stdout + stderr). A case
    that hangs fails here instead of hanging the suite."""
    env = {**os.environ, "PYTHONPATH": str(Path(gpucomp.__file__).parents[1])}
    p = subprocess.run([sys.executable, "-m", "gpucomp", *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def clean_failure(*args, timeout=60):
    """The command fails with exit status 2 and an `error:` message, never a traceback; returns the output."""
    code, out = cli(*args, timeout=timeout)
    assert code == 2 and "error:" in out and "Traceback" not in out, out
    return out


def test_symlink_loop_among_traits_is_named(tmp_path):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    (root / "L" / "B.png").symlink_to("C.png")
    (root / "L" / "C.png").symlink_to("B.png")
    out = clean_failure("validate", root)
    assert f"{root / 'L' / 'B.png'}: cannot read (a link loop" in out and f"{root / 'L' / 'C.png'}: " in out


def test_link_to_its_own_folder_does_not_multiply_traits(tmp_path):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    put(root, "L/B.png", opaque(value=9))
    (root / "L" / "again").symlink_to(".")  # once meant 41 copies of every trait
    msg = layer_error(root)
    assert msg.startswith(f"{root / 'L' / 'again'}: leads to {root / 'L'}, a folder already read") and "loop" in msg


def test_two_links_to_their_own_folder_fail_at_once(tmp_path):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    for name in ("a", "b"):  # the nested walk used to branch 2**40 ways: minutes
        (root / "L" / name).symlink_to(".")
    t0 = time.perf_counter()
    out = clean_failure("validate", root, timeout=60)
    assert time.perf_counter() - t0 < 30
    assert "2 problems" in out and all(f"{root / 'L' / n}: leads to" in out for n in "ab")


@pytest.mark.parametrize("link, target", [("L/up", ".."), ("L/Deep#2/top", "../..")],
                         ids=["to-layers-folder", "from-deeper"])
def test_links_back_up_the_tree_are_loops(tmp_path, link, target):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    put(root, "L/Deep#2/B.png", opaque())
    (root / link).symlink_to(target)
    msg = layer_error(root)
    assert f"{root / link}: leads to" in msg and "already read" in msg


def test_layer_folder_that_is_the_layers_folder_is_a_loop(tmp_path):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    (root / "Loop").symlink_to(".")
    assert layer_error(root) == f"{root / 'Loop'}: links to the layers folder itself (a loop); remove the link"


def test_second_link_to_one_sub_folder_is_refused(tmp_path):
    root = tmp_path / "layers"
    put(root, "Hair/Long#2/Brown.png", opaque())
    put(root, "Hair/Short#1/Black.png", opaque())
    (root / "Hair" / "Longer#5").symlink_to("Long#2")  # would count Brown twice, under two weights
    msg = layer_error(root)
    assert msg.startswith(f"{root / 'Hair' / 'Longer#5'}: leads to {root / 'Hair' / 'Long#2'}")


def test_sub_folder_linking_outside_is_refused_unlisted(tmp_path, monkeypatch):
    root = tmp_path / "layers"
    put(root, "Hair/Long#2/Brown.png", opaque())
    put(tmp_path, "private/Secret#1.png", opaque())
    (root / "Hair" / "Out#1").symlink_to(tmp_path / "private", target_is_directory=True)
    listed = []
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p: listed.append(Path(p).resolve()) or real(p))
    msg = layer_error(root)
    assert f"{root / 'Hair' / 'Out#1'}: links outside the layers folder" in msg
    assert (tmp_path / "private").resolve() not in listed


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs unix sockets")
def test_socket_among_traits_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    monkeypatch.chdir(root / "L")  # socket paths are limited to ~100 bytes: bind a relative one
    with socket.socket(socket.AF_UNIX) as s:
        s.bind("Sock#2.png")
        msg = layer_error(root)
    assert f"{root / 'L' / 'Sock#2.png'}: not a regular file (a socket)" in msg


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="making a device node needs root")
def test_device_among_traits_is_refused_unopened(tmp_path, monkeypatch):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    dev = root / "L" / "Zero.png"
    try:
        os.mknod(dev, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero: read whole, it never ends
    except OSError as err:
        pytest.skip(f"cannot make a device node here ({err})")
    opened = []
    real = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: opened.append(str(p)) or real(p, *a, **k))
    msg = layer_error(root)
    assert f"{dev}: not a regular file (a device)" in msg and str(dev) not in opened


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_pipe_swapped_in_after_the_check_does_not_block(tmp_path, monkeypatch):
    """A trait replaced by a named pipe between the type check and the open: the open must not wait
    for a writer (O_NONBLOCK) and the file is refused. The test unblocks a stuck read itself."""
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    pipe = root / "L" / "B.png"
    os.mkfifo(pipe)
    real_stat, plain = os.stat, os.stat(root / "L" / "A.png")
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: plain if str(p) == str(pipe) else real_stat(p, *a, **k))
    result = []
    worker = threading.Thread(target=lambda: result.append(pytest.raises(LayerError, load_layers, root)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))  # a writer that closes at once: the read ends
        worker.join(10)
        pytest.fail("opening a named pipe among the traits blocked")
    assert f"{pipe}: not a regular file" in str(result[0].value)


def test_unreadable_trait_file(tmp_path, monkeypatch):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    bad = put(root, "L/B.png", opaque())
    real = os.open

    def deny(p, *a, **k):  # chmod 000 does not stop root, so refuse the open the way the kernel would
        if str(p) == str(bad):
            raise PermissionError(13, "Permission denied", str(p))
        return real(p, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    assert layer_error(root) == f"{bad}: cannot read (Permission denied); replace it with a PNG file"


@pytest.mark.parametrize("where", ["L", "L/Sub#2", "."])
def test_folder_that_cannot_be_listed(tmp_path, monkeypatch, where):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    put(root, "L/Sub#2/B.png", opaque())
    locked = (root / where).resolve()
    real = os.scandir

    def deny(p):
        if Path(p).resolve() == locked:
            raise PermissionError(13, "Permission denied", str(p))
        return real(p)

    monkeypatch.setattr(os, "scandir", deny)
    msg = layer_error(root)
    assert f"{root / where if where != '.' else root}: cannot list the folder (Permission denied)" in msg


def test_trait_that_vanishes_before_it_is_read(tmp_path, monkeypatch):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    gone = put(root, "L/B.png", opaque())
    real = Walk.layer
    monkeypatch.setattr(Walk, "layer", lambda self, folder: [real(self, folder), gone.unlink()][0])
    assert layer_error(root) == f"{gone}: cannot read (No such file or directory); replace it with a PNG file"


def test_trait_that_grows_while_it_is_read(tmp_path, monkeypatch):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    real = gpucomp.layers.decode._check_head

    def append_after_check(path, head, size):
        real(path, head, size)
        with open(path, "ab") as f:
            f.write(b"more")

    monkeypatch.setattr(gpucomp.layers.decode, "_check_head", append_after_check)
    assert "changed while it was read" in layer_error(root)


@pytest.mark.parametrize("name, needle", [("Hat.png", "empty sub-folder"), ("Hat#2.png", "bad weight '2.png'")])
def test_folder_named_like_a_png(tmp_path, name, needle):
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    (root / "L" / name).mkdir()
    msg = layer_error(root)
    assert f"{root / 'L' / name}: " in msg and needle in msg


def test_non_utf8_sub_folder_is_refused(tmp_path, bytes_names):
    root = tmp_path / "layers"
    put(root, "Hair/Long#2/A.png", opaque())
    folder = os.path.join(os.fsencode(root / "Hair"), b"Caf\xe9#1")
    os.mkdir(folder)
    with open(os.path.join(folder, b"T.png"), "wb") as f:
        f.write(opaque())
    msg = layer_error(root)
    assert "Caf" in msg and "not valid UTF-8" in msg


def test_sub_folders_nested_too_deep(tmp_path):
    root = tmp_path / "layers"
    deep = "/".join(["d#1"] * (MAX_NESTING + 1))
    put(root, f"L/{deep}/T.png", opaque())
    put(root, "L/Top.png", opaque())
    msg = layer_error(root)
    assert f"nested more than {MAX_NESTING} deep" in msg
    put(tmp_path / "ok", "L/" + "/".join(["d#1"] * MAX_NESTING) + "/T#1.png", opaque())  # the limit itself loads
    assert [t.name for t in load_layers(tmp_path / "ok").layers[0].traits] == ["T"]


@pytest.mark.parametrize("limit, value", [("MAX_ENTRIES", 40), ("MAX_FOLDERS", 5)])
def test_walk_stops_at_a_size_no_layers_folder_has(tmp_path, monkeypatch, limit, value):
    root = tmp_path / "big"
    for i in range(12):
        put(root, f"L{i}/Sub#1/T{i}.png", opaque())
        put(root, f"L{i}/Other#1/U{i}.png", opaque())
    monkeypatch.setattr(gpucomp.layers.scan, limit, value)
    msg = layer_error(root)
    assert msg.startswith(f"{root}: more than ") and "this is not a layers folder" in msg and "stopped in" in msg
    assert "\n" not in msg  # one message: the walk stopped, it did not go on collecting problems


def test_validate_of_the_file_system_root_stops_quickly(tmp_path):
    t0 = time.perf_counter()
    clean_failure("validate", "/", "-n", "1", timeout=120)
    assert time.perf_counter() - t0 < 90


# --- 7. weights at the limits of a float ---------------------------------------------------------

BIG, TINY = "1" + "0" * 200, "0." + "0" * 200 + "1"  # 1e200 and 1e-201, written as plain numbers


@pytest.mark.parametrize("paths, bad, needle", [
    ([f"L/Big#{BIG}/X#{BIG}.png", "L/Y.png"], f"L/Big#{BIG}", "too large"),  # 1e200 x 1e200 = inf
    ([f"L/A#{BIG}.png", f"L/B#{BIG}.png", "L/Sub#1/C.png"], f"L/A#{BIG}.png", "too large"),  # x their sum
    ([f"L/Small#{TINY}/X#{TINY}.png", "L/Y.png"], f"L/Small#{TINY}/X#{TINY}.png", "too small"),  # 1e-402 = 0
    ([f"L/A#{TINY}.png", f"L/B#{BIG}.png"], f"L/A#{TINY}.png", "too small next to"),  # share rounds to 0
], ids=["folder-times-file", "top-level-times-sum", "underflow", "share-underflow"])
def test_weights_that_stop_being_numbers_are_named(tmp_path, paths, bad, needle):
    root = tmp_path / "layers"
    for p in paths:
        put(root, p, opaque())
    out = clean_failure("generate", root, "-n", "1", "-o", tmp_path / "out")
    assert f"{root / bad}: weight" in out and needle in out
    assert not (tmp_path / "out").exists()


def test_deeply_nested_weights_stay_usable(tmp_path):
    root = tmp_path / "layers"
    for depth in range(MAX_NESTING + 1):  # at every level a folder of weight 1 beside a file of weight 999
        put(root, "L/" + "d#1/" * depth + (f"S{depth}#999.png" if depth < MAX_NESTING else "T#1.png"), opaque())
    weights = {t.name: t.weight for t in load_layers(root).layers[0].traits}
    assert weights["S0"] == 999 and 0 < weights["T"] < 1e-40


@pytest.mark.parametrize("weights", [[np.array([1.0, np.inf])], [np.array([np.nan, 1.0])], [np.array([1.0, -1.0])],
                                     [np.array([1e-320, 1e10])], [np.array([1e308, 1e308])]],
                         ids=["inf", "nan", "negative", "share-underflow", "sum-overflow"])
def test_planner_refuses_weights_that_are_not_usable_numbers(weights):
    with pytest.raises(PlanError, match="layer 1"):
        make_plan(weights, 1, 0)


# --- 8. layer folder names in two Unicode forms ---------------------------------------------------

NFC, NFD = (unicodedata.normalize(form, "Café") for form in ("NFC", "NFD"))


def test_layer_folder_in_two_unicode_forms_is_refused(tmp_path):
    root = tmp_path / "layers"
    put(root, f"{NFC}/A.png", opaque())
    put(root, f"{NFD}/B.png", opaque())
    out = clean_failure("validate", root, "-n", "1")
    assert f"layer folders {NFD!r} and {NFC!r}" in out and "('Cafe\\u0301' and 'Caf\\xe9'" in out


def test_decomposed_layer_folder_shows_composed(tmp_path):
    root = tmp_path / "layers"
    put(root, f"01-{NFD}/A.png", opaque())
    out = tmp_path / "out"
    list(gpucomp.generate(root, out, size=1, backend="cpu"))
    meta = (out / "metadata" / "1.json").read_bytes()
    assert f'"trait_type": "{NFC}"'.encode() in meta and NFD.encode() not in meta


def test_config_finds_a_folder_spelt_in_the_other_form(tmp_path):
    root = tmp_path / "layers"
    put(root, f"{NFD}/A.png", opaque())
    put(root, "Hat/B.png", opaque())
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[collection]\nsize = 1\n[[layers]]\nfolder = "{NFC}"\n[[layers]]\nfolder = "Hat"\n', encoding="utf-8")
    code, out = cli("validate", root, "-c", cfg)
    assert code == 0 and "ok:" in out, out


def test_folders_that_share_a_display_name_are_two_layers(tmp_path):
    """A documented choice: `01-Hat` and `02-Hat` are two layers, both shown as `Hat`."""
    root = tmp_path / "layers"
    put(root, "01-Hat/A.png", opaque())
    put(root, "02-Hat/B.png", opaque())
    ls = load_layers(root)
    assert [(la.folder, la.name) for la in ls.layers] == [("01-Hat", "Hat"), ("02-Hat", "Hat")]


# --- 9. size and header checked before a file is read --------------------------------------------

def test_huge_file_with_a_valid_header_is_refused_unread(tmp_path, no_pillow):
    """3 GB (sparse) behind a valid 8x8 header: refused from its size and header, under a memory
    limit that reading it whole would break."""
    root = tmp_path / "layers"
    put(root, "L/A.png", opaque())
    huge = put(root, "L/Huge.png", opaque())
    with open(huge, "r+b") as f:
        f.truncate(3 << 30)
    code = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
            f"from gpucomp.cli import main; sys.exit(main(['validate', {str(root)!r}, '-n', '1']))")
    env = {**os.environ, "PYTHONPATH": str(Path(gpucomp.__file__).parents[1]), "OPENBLAS_NUM_THREADS": "1",
           "MALLOC_ARENA_MAX": "2"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert f"{huge}: 3221225472 bytes is more than a 8x8 PNG can need" in p.stderr
    msg = layer_error(root)  # and in process: Pillow never sees it (only A.png)
    assert str(huge) in msg and len(no_pillow) == 1


def test_size_allowance_fits_real_files(tmp_path):
    """Real encoders' files sit far below the allowance; trailing bytes within it are ignored."""
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)  # incompressible: the largest honest file
    data = pillow_png(noise, compress_level=0)
    assert len(data) < _max_png_bytes(64, 64, 8, 6) - (64 << 20)
    px = load_one(tmp_path, data + b"\0" * (1 << 20))
    assert (px == noise).all()


# --- 10. the demo's own options ------------------------------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["--layers", "0"], "--layers must be a whole number from 1 to"),
    (["--traits", "0"], "--traits must be a whole number from 6 to"),
    (["--layers", "3", "--traits", "2"], "--traits must be a whole number from 3 to"),
    (["--image-size", "0"], "--image-size must be a whole number from 8 to"),
    (["--image-size", "-5"], "--image-size must be a whole number from 8 to"),
    (["--image-size", "100000"], "--image-size must be a whole number from 8 to 4096"),
    (["--layer-seed", "-1"], "--layer-seed must be a whole number from 0 to"),
])
def test_demo_options_out_of_range(tmp_path, capsys, args, needle):
    from gpucomp.cli import main

    assert main(["demo", "-o", str(tmp_path / "demo"), "-q", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: demo ") and needle in err
    assert not (tmp_path / "demo" / "layers").exists()


# --- 11. names a terminal or a spreadsheet would obey ----------------------------------------------

ESCAPING_NAMES = {  # layer folder -> trait files; every one is a name a file system takes
    "Back\x1b]0;owned\x07": ["Red\x1b[31m#2.png", "Blue\u202egnp.png", "Gone\x9b2J.png"],
    "Eyes\x1b[2J": ["Op\ren.png", "Shut\x08\x7f.png"],
}


def escaping_layers(root, names=ESCAPING_NAMES):
    for k, (layer, files) in enumerate(names.items()):
        for t, name in enumerate(files):
            put(root, f"{layer}/{name}", opaque(value=40 * t + 10 * k + 5))
    return root


def raw_controls(text: str) -> list[str]:
    """Characters a terminal would obey, except the newlines between lines."""
    return [c for c in text if unsafe(c) and c != "\n"]


@pytest.mark.filterwarnings("default::gpucomp.errors.LayerWarning")  # folders in name order
def test_validate_lists_folder_and_trait_names_with_their_escape_sequences_shown(tmp_path, capsys):
    assert main(["validate", str(escaping_layers(tmp_path / "layers")), "-n", "3"]) == 0
    out, err = capsys.readouterr()
    assert raw_controls(out) == [] and raw_controls(err) == []
    assert "  Back\\x1b]0;owned\\x07 -> 'Back\\x1b]0;owned\\x07': 3 traits" in out
    assert "  Eyes\\x1b[2J -> 'Eyes\\x1b[2J': 2 traits" in out and "ok:" in out


@pytest.mark.filterwarnings("default::gpucomp.errors.LayerWarning")  # folders in name order
def test_generate_keeps_escape_sequences_out_of_the_terminal_and_rarity_txt(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", str(escaping_layers(tmp_path / "layers")), "-o", str(out), "-n", "4", "--seed", "2",
                 "--backend", "cpu", "--workers", "1"]) == 0
    printed = capsys.readouterr()
    assert raw_controls(printed.out) == [] and raw_controls(printed.err) == []
    text = (out / "rarity.txt").read_text(encoding="utf-8")
    assert raw_controls(text) == []
    for shown in ("Layer 1: Back\\x1b]0;owned\\x07", "Red\\x1b[31m", "Blue\\u202egnp", "Op\\ren", "Shut\\x08\\x7f"):
        assert shown in text
    meta = json.loads((out / "metadata" / "1.json").read_text(encoding="utf-8"))  # the data keeps the real names
    assert meta["attributes"][0]["trait_type"] == "Back\x1b]0;owned\x07"


@pytest.mark.parametrize("files, needle", [
    (["Red\x1b[2J#abc.png"], "Red\\x1b[2J#abc.png"),  # one problem
    (["Red\x1b[2J#abc.png", "Blue\x1b]0;x\x07#-1.png"], "Blue\\x1b]0;x\\x07#-1.png"),  # a list, a line each
])
def test_an_error_naming_a_hostile_file_shows_its_escapes_and_keeps_its_lines(tmp_path, capsys, files, needle):
    root = escaping_layers(tmp_path / "layers", {"Hat\x1b[5m": files})
    assert main(["generate", str(root), "-o", str(tmp_path / "out"), "-n", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Hat\\x1b[5m" in err
    assert raw_controls(err) == []
    assert err.count("\n") == (1 if len(files) == 1 else len(files) + 1)  # a header, then a line per problem


@pytest.mark.parametrize("files", [
    ["Red\n\nerror: nothing is wrong#abc.png"],  # one problem: the error is one line
    ["Red\nerror: nothing is wrong#abc.png", "Blue\n  fine.png#-1.png", "Green\r\n#x.png"],  # a list
])
def test_a_newline_in_a_file_name_cannot_fake_a_line_of_an_error(tmp_path, capsys, files):
    root = escaping_layers(tmp_path / "layers", {"Hat": files})
    assert main(["generate", str(root), "-o", str(tmp_path / "out"), "-n", "1", "-q"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("error: ") and len(lines) == (1 if len(files) == 1 else len(files) + 1)
    assert "Red\\n" in "\n".join(lines) and not any(line.startswith(("error", "  fine")) for line in lines[1:])


@pytest.mark.parametrize("name, shown", [
    ("Cap\u200fpng.exe#2.png", "Cap\\u200fpng.exe"),  # right-to-left mark
    ("Cap\u061c#2.png", "Cap\\u061c"),  # Arabic letter mark
    ("Cap\u2028ok#2.png", "Cap\\u2028ok"),  # line separator
    ("Ca\xadp#2.png", "Ca\\xadp"),  # soft hyphen: invisible, so "Cap" twice would look alike
    ("Cap\U000e0041#2.png", "Cap\\U000e0041"),  # a tag character
])
def test_bidi_marks_separators_and_invisible_characters_in_names_are_shown(tmp_path, capsys, name, shown):
    root = escaping_layers(tmp_path / "layers", {"Hat": [name, "Plain#1.png"]})
    assert main(["validate", str(root), "-n", "2"]) == 0
    main(["generate", str(root), "-o", str(tmp_path / "out"), "-n", "2", "--backend", "cpu", "--workers", "1"])
    out, err = capsys.readouterr()
    assert raw_controls(out) == [] and raw_controls(err) == []
    assert shown in (tmp_path / "out" / "rarity.txt").read_text(encoding="utf-8")


def test_joiners_and_wide_spaces_in_names_are_shown_as_they_are(tmp_path, capsys):
    names = ["赤い\u3000帽子.png", "family 👨\u200d👩\u200d👧.png", "می\u200cخواهم.png"]
    assert main(["validate", str(escaping_layers(tmp_path / "layers", {"Hat": names})), "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "Hat -> 'Hat': 3 traits" in out and "\\u" not in out


def test_paths_typed_on_the_command_line_are_printed_with_their_escapes_shown(tmp_path, capsys, demo_layers):
    out = tmp_path / "out\x1b]0;owned\x07"
    assert main(["generate", str(demo_layers), "-o", str(out), "-n", "2", "--backend", "cpu", "--gallery"]) == 0
    printed = capsys.readouterr()
    assert raw_controls(printed.out) == [] and raw_controls(printed.err) == []
    assert "output: " + str(tmp_path) + "/out\\x1b]0;owned\\x07/images" in printed.out
    assert "gallery: " in printed.out and (out / "gallery" / "index.html").is_file()


def test_an_error_that_echoes_a_huge_value_is_clipped_and_still_says_what_to_do(tmp_path, capsys, demo_layers):
    config = tmp_path / "c.toml"
    config.write_text('[output]\npreset = "' + "x" * 5_000_000 + '"\n', encoding="utf-8")
    assert main(["validate", str(demo_layers), "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert len(err) < 2_100 and err.startswith("error: ") and "characters left out" in err
    assert err.rstrip().endswith("choose one of fast, balanced, small, gpu")


def test_a_warning_naming_a_hostile_file_is_one_escaped_warning_line(tmp_path, capsys, monkeypatch):
    root = escaping_layers(tmp_path / "layers")
    put(root, "Eyes\x1b[2J/notes\x1b]0;x\x07\u202e.txt", b"not an image")
    # what Python does when it shows a warning (pytest records them instead): write formatwarning's text
    monkeypatch.setattr(warnings, "showwarning", lambda message, category, filename, lineno, file=None, line=None:
                        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line)))
    with warnings.catch_warnings():
        warnings.simplefilter("always", LayerWarning)
        assert main(["validate", str(root), "-n", "2"]) == 0
    err = capsys.readouterr().err
    shown = [line for line in err.splitlines() if line.startswith("warning: ") and "left out" in line]
    assert len(shown) == 1 and "left out: Eyes\\x1b[2J/notes\\x1b]0;x\\x07\\u202e.txt" in shown[0]
    assert raw_controls(err) == []
    assert warnings.formatwarning is not None and "warning: " not in warnings.formatwarning("m", UserWarning, "f", 1)


def test_names_that_start_like_formulas_are_neutralised_in_rarity_csv_and_the_gallery_still_reads_it(tmp_path):
    root = escaping_layers(tmp_path / "layers", {"=Layer": ["-x.png", "'-x.png", "+SUM(A1).png", "@cmd.png", "ok.png"]})
    out = tmp_path / "out"
    assert main(["generate", str(root), "-o", str(out), "-n", "5", "--backend", "cpu", "-q", "--gallery"]) == 0
    with open(out / "rarity.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0][4] == "'=Layer"
    assert sorted(r[4] for r in rows[1:]) == sorted(["'-x", "''-x", "'+SUM(A1)", "'@cmd", "ok"])
    data = (out / "gallery" / "data" / "index.js").read_text(encoding="utf-8")
    index = json.loads(data[data.index("(") + 1:data.rindex(")")])
    names = [t["name"] for t in index["layers"][0]["traits"]]
    for n, col in zip(index["numbers"], index["traits"][0], strict=True):  # each item shows its own trait
        meta = json.loads((out / "metadata" / f"{n}.json").read_text(encoding="utf-8"))
        assert names[col] == meta["attributes"][0]["value"]
