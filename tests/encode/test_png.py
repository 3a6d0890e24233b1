"""PNG encoding: exact round trips through Pillow, RGB for opaque results, filters, size."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from gpucomp.encode.png import PRESETS, encode_filtered, encode_png, filter_rows, get_preset
from gpucomp.errors import ConfigError

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def decode(data):
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.mode, np.asarray(im)


def sample_pixels(h, w, c, seed=0):
    """Noise, flat runs and gradients, so every filter has rows where it wins."""
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    px[h // 3: h // 2] = 77
    yy, xx = np.mgrid[0:h, 0:w]
    px[h // 2:, : w // 2] = ((xx * 7 + yy * 3) % 256)[h // 2:, : w // 2, None].astype(np.uint8)
    px[h // 2:, w // 2:] = ((yy * 11) % 256)[h // 2:, w // 2:, None].astype(np.uint8)
    return px


def as_hwc(arr, c):
    return arr[..., None] if c == 1 else arr


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_round_trip_every_preset_and_channel_count(preset, channels):
    px = sample_pixels(29, 41, channels)
    mode, got = decode(encode_png(px, preset))
    assert mode == MODES[channels]
    assert np.array_equal(as_hwc(got, channels), px)


@pytest.mark.parametrize("shape", [(1, 1, 4), (1, 9, 3), (9, 1, 2), (2, 2, 1)])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_round_trip_tiny_images(preset, shape):
    px = sample_pixels(*shape, seed=3)
    _, got = decode(encode_png(px, PRESETS[preset]))
    assert np.array_equal(as_hwc(got, shape[2]), px)


def test_opaque_rgb_writes_rgb_only_when_alpha_is_all_255():
    px = sample_pixels(16, 16, 4)
    px[..., 3] = 255
    mode, got = decode(encode_png(px, "fast", opaque_rgb=True))
    assert mode == "RGB" and np.array_equal(got, px[..., :3])
    mode, got = decode(encode_png(px, "fast", opaque_rgb=False))
    assert mode == "RGBA" and np.array_equal(got, px)
    px[15, 15, 3] = 254
    mode, got = decode(encode_png(px, "fast", opaque_rgb=True))
    assert mode == "RGBA" and np.array_equal(got, px)


def test_png_structure_and_crcs():
    data = encode_png(sample_pixels(8, 8, 3), "balanced")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        kinds.append(kind)
        if kind == b"IHDR":
            assert struct.unpack(">IIBBBBB", body) == (8, 8, 8, 2, 0, 0, 0)
        pos += 12 + length
    assert pos == len(data) and kinds == [b"IHDR", b"IDAT", b"IEND"]


@pytest.mark.parametrize("kind", ["up", "sub", "paeth", "adaptive", "pillow"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_each_filter_inverts(kind, channels):
    px = sample_pixels(33, 19, channels, seed=channels)
    rows = filter_rows(px, kind)
    assert rows.shape == (33, 1 + 19 * channels) and rows.dtype == np.uint8
    fixed = {"up": 2, "sub": 1, "paeth": 4}
    if kind in fixed:
        assert (rows[:, 0] == fixed[kind]).all()
    else:
        assert set(rows[:, 0].tolist()) <= {0, 1, 2, 3, 4}
    _, got = decode(encode_filtered(rows, 19, 33, channels, PRESETS["balanced"]))
    assert np.array_equal(as_hwc(got, channels), px)


def residual(row):
    return int(np.abs(row.view(np.int8).astype(np.int64)).sum())


def test_adaptive_picks_the_smallest_residual_per_row():
    px = sample_pixels(40, 24, 3, seed=5)
    adaptive = filter_rows(px, "adaptive")
    none = np.hstack([np.zeros((40, 1), np.uint8), px.reshape(40, -1)])
    others = [none] + [filter_rows(px, k) for k in ("sub", "up", "paeth")]
    for y in range(40):
        assert residual(adaptive[y, 1:]) <= min(residual(o[y, 1:]) for o in others)
    assert len(set(adaptive[:, 0].tolist())) >= 2  # not one filter for every row


def test_unknown_filter_and_bad_pixels():
    with pytest.raises(ValueError, match="filter"):
        filter_rows(np.zeros((2, 2, 3), np.uint8), "median")
    with pytest.raises(ValueError):
        encode_png(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ValueError):
        encode_png(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ConfigError, match="tiny"):
        get_preset("tiny")


def test_presets_trade_size_for_speed_on_demo_art(tmp_path):
    from gpucomp.demo import make_layers
    from gpucomp.layers.layerset import load_layers
    from gpucomp.render.numpy_backend import NumpyBackend

    ls = load_layers(make_layers(tmp_path / "layers", layers=4, traits=8, size=256, seed=2))
    be = NumpyBackend(opaque_rgb=True)
    be.prepare(ls)
    px = be.composite([[0, 1, 0, 1]])[0]
    sizes = {p: len(encode_png(px, p)) for p in PRESETS}
    assert sizes["small"] <= sizes["balanced"] < sizes["fast"]


@pytest.mark.parametrize("opaque_rgb", [True, False])
@pytest.mark.parametrize("seed", [0, 2, 6])
def test_small_is_no_larger_than_pillow_level_9(tmp_path, seed, opaque_rgb):
    """On ~256x256 demo composites (seeds 2 and 6 are ones where 'small' once lost to Pillow)."""
    from gpucomp.demo import make_layers
    from gpucomp.layers.layerset import load_layers
    from gpucomp.render.numpy_backend import NumpyBackend

    ls = load_layers(make_layers(tmp_path / "layers", layers=4, traits=8, size=256, seed=seed))
    be = NumpyBackend(opaque_rgb=opaque_rgb)
    be.prepare(ls)
    px = be.composite([[0, 1, 0, 1]])[0]
    assert px.shape == (256, 256, 3 if opaque_rgb else 4)
    small = encode_png(px, "small")
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, format="PNG", compress_level=9)
    assert len(small) <= len(buf.getvalue())
    _, got = decode(small)
    assert np.array_equal(got, px)
