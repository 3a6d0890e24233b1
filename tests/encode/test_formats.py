"""Output formats: every file decodes to the composite (exactly for PNG and lossless WebP, within a
stated PSNR for the lossy ones), settings are checked, a missing encoder is named."""
import io

import numpy as np
import pytest
from PIL import Image, features

from gpucomp.encode.formats import EXTENSIONS, OutputFormat, check_available, encode, flatten, parse_formats
from gpucomp.errors import ConfigError

# Lossy bounds (dB) at the default settings on `art` below (hard red edges, a sawtooth alpha: harder
# than most art), of what is seen: the image over black and over white. Measured 32.6-36.5 dB.
PSNR_BOUND = {"webp": 31.0, "jpeg": 31.0, "avif": 31.0}


def decode(data: bytes) -> tuple[str, str, np.ndarray]:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.format, im.mode, np.asarray(im)


def art(h=96, w=128, opaque=False, seed=0) -> np.ndarray:
    """Something like a composite: smooth gradients, flat shapes with hard edges, soft alpha."""
    yy, xx = np.mgrid[0:h, 0:w]
    px = np.zeros((h, w, 4), np.uint8)
    px[..., 0] = (xx * 255 // (w - 1))
    px[..., 1] = (yy * 255 // (h - 1))
    px[..., 2] = 90
    disc = (yy - h // 2) ** 2 + (xx - w // 2) ** 2 < (h // 3) ** 2
    px[disc, :3] = (230, 40, 60)
    px[..., 3] = 255 if opaque else np.clip((xx * 3) % 300, 0, 255)
    if not opaque:
        px[px[..., 3] == 0, :3] = 0  # what the compositor leaves under full transparency
    return px


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def fmt(name, **settings):
    return parse_formats(name, {name: settings} if settings else {}, "test")[0]


@pytest.mark.parametrize("opaque", [False, True])
def test_png_and_lossless_webp_decode_to_the_composite_exactly(opaque):
    px = art(opaque=opaque)
    want = px[..., :3] if opaque else px  # opaque results are written as RGB
    for f in (fmt("png"), fmt("webp", lossless=True)):
        kind, mode, got = decode(encode(px, f))
        assert kind == {"png": "PNG", "webp": "WEBP"}[f.name] and f.lossless
        assert mode == ("RGB" if opaque else "RGBA")
        assert np.array_equal(got, want), f.name


def test_lossless_webp_keeps_the_colour_under_transparent_pixels():
    px = art()
    px[0, 0] = (12, 34, 56, 0)
    _, _, got = decode(encode(px, fmt("webp", lossless=True)))
    assert tuple(got[0, 0]) == (12, 34, 56, 0)


@pytest.mark.parametrize("name", ["webp", "avif"])
def test_lossy_formats_keep_alpha_and_stay_within_the_bound(name):
    if not features.check(name):
        pytest.skip(f"this Pillow has no {name}")
    px = art()
    kind, mode, got = decode(encode(px, fmt(name)))
    assert kind == name.upper() and mode == "RGBA"
    for bg in ((0, 0, 0), (255, 255, 255)):  # the colour under transparent pixels does not count
        assert psnr(flatten(got, bg), flatten(px, bg)) > PSNR_BOUND[name]
    assert psnr(got[..., 3], px[..., 3]) > 50  # WebP keeps alpha losslessly; AVIF measured 59 dB
    opaque = art(opaque=True)
    _, mode, got = decode(encode(opaque, fmt(name)))
    assert mode == "RGB" and psnr(got, opaque[..., :3]) > PSNR_BOUND[name]


def test_jpeg_is_the_composite_flattened_on_the_background_within_the_bound():
    px = art()
    _, mode, got = decode(encode(px, fmt("jpeg", background="#102030")))
    assert mode == "RGB"
    want = flatten(px, (16, 32, 48))
    assert psnr(got, want) > PSNR_BOUND["jpeg"]
    assert psnr(got, flatten(px, (255, 255, 255))) < psnr(got, want)  # the background was used


def test_flatten_is_exact_integer_rounding():
    px = np.array([[[200, 100, 0, 0], [200, 100, 0, 255], [200, 100, 0, 128]]], np.uint8)
    got = flatten(px, (255, 255, 255))
    assert got.tolist() == [[[255, 255, 255], [200, 100, 0], [(200 * 128 + 255 * 127 + 127) // 255,
                                                              (100 * 128 + 255 * 127 + 127) // 255, 127]]]


def test_quality_changes_the_lossy_file():
    px = art(opaque=True)
    low, high = encode(px, fmt("webp", quality=10)), encode(px, fmt("webp", quality=95))
    assert len(low) < len(high)
    assert psnr(decode(low)[2], px[..., :3]) < psnr(decode(high)[2], px[..., :3])


def test_parse_formats_keeps_the_order_and_fills_in_defaults():
    got = parse_formats(["webp", "png"], {"webp": {"quality": 70}}, "x")
    assert [f.name for f in got] == ["webp", "png"]
    assert got[0].settings == {"quality": 70, "method": 4, "lossless": False}
    assert got[0].ext == "webp" and got[0].mime == "image/webp" and not got[0].lossless
    assert parse_formats("jpeg", {}, "x")[0].ext == "jpg"
    assert set(EXTENSIONS) == {"png", "webp", "jpeg", "avif"}


@pytest.mark.parametrize("value, tables, message", [
    ("gif", {}, "unknown format 'gif'"),
    ("jpg", {}, 'write "jpeg"'),
    ([], {}, "non-empty list"),
    (["png", "png"], {}, "lists a format twice"),
    (7, {}, "expected a format name"),
    ("webp", {"webp": {"quality": 101}}, "x.webp.quality: must be between 0 and 100, got 101"),
    ("webp", {"webp": {"lossless": 1}}, "x.webp.lossless: expected bool"),
    ("webp", {"webp": {"speed": 3}}, "unknown key(s) speed"),
    ("avif", {"avif": {"quality": True}}, "expected int"),
    ("jpeg", {"jpeg": {"background": "white"}}, '"#rrggbb"'),
    ("png", {"png": {}}, "[output.png]"),
    ("png", {"tiff": {}}, "[output.tiff]"),
])
def test_bad_format_settings_are_named(value, tables, message):
    with pytest.raises(ConfigError) as err:
        parse_formats(value, tables, "x")
    assert message in str(err.value)


def test_a_format_this_pillow_lacks_is_named_with_the_fix(monkeypatch):
    monkeypatch.setattr(features, "check", lambda name: name != "avif")
    check_available((OutputFormat("png"), fmt("webp")))  # fine
    with pytest.raises(ConfigError, match=r"format 'avif' needs Pillow's avif support.*pip install -U pillow"):
        check_available((fmt("png"), OutputFormat("avif", {"quality": 80, "speed": 6})), "cfg.toml")


def test_info_lists_the_formats_this_pillow_writes(monkeypatch, capsys):
    from gpucomp.cli import main

    monkeypatch.setattr(features, "check", lambda name: name != "avif")
    assert main(["info"]) == 0
    assert "output formats: png, webp, jpeg (this Pillow lacks avif)" in capsys.readouterr().out
