"""Sized copies: nearest scaling is exact block repetition; the filtered resizes are what resize.py
defines (area = block means, premultiplied alpha); sizes are checked before rendering."""
import numpy as np
import pytest

from gpucomp.encode.resize import Size, nearest_factor, parse_sizes, resize
from gpucomp.errors import ConfigError


def pixels(h=24, w=24, c=4, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def one(item, formats=("png",)):
    return parse_sizes([item], formats, "x")[0]


@pytest.mark.parametrize("c", [3, 4])
def test_nearest_scale_turns_every_pixel_into_a_block_byte_for_byte(c):
    px = pixels(5, 7, c)
    got = resize(px, one({"name": "x32", "scale": 32}))
    assert got.shape == (160, 224, c) and got.dtype == np.uint8
    for y in range(5):
        for x in range(7):
            block = got[32 * y:32 * y + 32, 32 * x:32 * x + 32]
            assert (block == px[y, x]).all()


def test_nearest_factor_names_the_copies_a_backend_may_make_beside_the_composite():
    """Whole-number nearest scales of 2 and up (the GPU makes those in the batch); not scale 1 (a
    plain copy) nor filtered sizes."""
    assert nearest_factor(one({"name": "a", "scale": 32})) == 32
    assert nearest_factor(one({"name": "a", "scale": 1, "filter": "nearest"})) == 0
    assert nearest_factor(one({"name": "a", "scale": 2, "filter": "lanczos"})) == 0
    assert nearest_factor(one({"name": "a", "width": 48})) == 0


def test_scale_of_a_whole_number_defaults_to_nearest_others_to_lanczos():
    assert one({"name": "a", "scale": 32}).filter == "nearest"
    assert one({"name": "a", "scale": 0.5}).filter == "lanczos"
    assert one({"name": "a", "width": 256}).filter == "lanczos"
    assert one({"name": "a", "scale": 2, "filter": "lanczos"}).filter == "lanczos"


def test_area_downscale_by_a_whole_factor_is_the_block_mean_within_one():
    px = pixels(24, 24, 3)
    got = resize(px, one({"name": "t", "scale": 0.25, "filter": "area"}))
    mean = px.reshape(6, 4, 6, 4, 3).astype(np.float64).mean(axis=(1, 3))
    assert got.shape == (6, 6, 3)
    assert np.abs(got - mean).max() <= 1.0


def test_filtered_resize_works_in_premultiplied_alpha():
    """A red pixel beside a transparent (black) one averages to half-transparent red, not dark red."""
    px = np.zeros((2, 2, 4), np.uint8)
    px[:, 0] = (255, 0, 0, 255)
    got = resize(px, one({"name": "t", "scale": 0.5, "filter": "area"}))
    assert got.shape == (1, 1, 4)
    r, g, b, a = got[0, 0].tolist()
    assert (g, b) == (0, 0) and abs(a - 128) <= 1 and r >= 254


def test_lanczos_keeps_a_flat_image_flat():
    px = np.full((64, 48, 3), (10, 200, 77), np.uint8)
    got = resize(px, one({"name": "t", "width": 16}))
    assert got.shape == (21, 16, 3) and (got == (10, 200, 77)).all()  # 64 * 16 / 48 = 21.3 rows


def test_target_keeps_the_aspect_ratio_from_one_side():
    assert Size("a", width=256).target(2048, 1024) == (256, 128)
    assert Size("a", height=100).target(300, 200) == (150, 100)
    assert Size("a", width=10, height=30).target(300, 200) == (10, 30)
    assert Size("a", scale=0.5).target(3, 3) == (2, 2)
    assert Size("a", scale=0.001).target(3, 3) == (1, 1)


@pytest.mark.parametrize("item, message", [
    ({"width": 5}, "needs name"),
    ({"name": "Thumb", "width": 5}, "lower-case letters"),
    ({"name": "../x", "width": 5}, "lower-case letters"),
    ({"name": "t"}, "either scale"),
    ({"name": "t", "scale": 2, "width": 5}, "either scale"),
    ({"name": "t", "width": -5}, "either scale"),
    ({"name": "t", "width": 70000}, "at most 65535"),
    ({"name": "t", "scale": 1.5, "filter": "nearest"}, "nearest scaling is by a whole number"),
    ({"name": "t", "width": 50, "filter": "nearest"}, "nearest scaling is by a whole number"),
    ({"name": "t", "width": 50, "filter": "bicubic"}, "unknown filter 'bicubic'"),
    ({"name": "t", "width": 50, "format": "webp"}, "not one of the [output] formats (png)"),
    ({"name": "t", "width": True}, "x.sizes[0].width: expected int"),
    ({"name": "t", "width": 5, "colour": 1}, "unknown key(s) colour"),
    ({"name": "t", "scale": float("nan")}, "x.sizes[0].scale: nan is not a size"),  # TOML `scale = nan`
    ({"name": "t", "scale": float("inf")}, "x.sizes[0].scale: inf is not a size"),
    ({"name": "t", "scale": float("-inf")}, "-inf is not a size"),
    ({"name": "t", "scale": 1e308}, "1e+308 is not a size"),  # times any side: inf, which round() cannot take
])
def test_bad_sizes_are_named(item, message):
    with pytest.raises(ConfigError) as err:
        one(item)
    assert message in str(err.value)


def test_two_sizes_with_one_name_are_refused():
    with pytest.raises(ConfigError, match="'t' is used twice"):
        parse_sizes([{"name": "t", "width": 5}, {"name": "t", "scale": 2}], ("png",), "x")


def test_to_dict_round_trips_through_parse():
    s = one({"name": "web", "width": 512, "format": ["webp"]}, ("png", "webp"))
    assert Size.from_dict(s.to_dict()) == s
    assert Size.from_dict(one({"name": "x", "scale": 4}).to_dict()).filter == "nearest"
