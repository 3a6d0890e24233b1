"""The fast trait PNG reader (ISA-L inflate + numba unfilter) against Pillow, pixel for pixel,
and its hand-back to Pillow for everything it does not read."""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpucomp.encode.png import encode_filtered, filter_rows, get_preset
from gpucomp.layers import png_read
from gpucomp.layers.decode import _check_png

pytestmark = pytest.mark.skipif(png_read._tools() is None, reason="numba or isal missing: Pillow reads every PNG")


@pytest.fixture(autouse=True)
def any_size(monkeypatch):
    """The tests use small images; the reader takes only images of MIN_PIXELS and up otherwise."""
    monkeypatch.setattr(png_read, "MIN_PIXELS", 0)


def decode(data: bytes):
    """The reader as layers/layerset.py calls it (on the header its checked walk over the file found), its
    crop put back on a transparent canvas; None where it leaves the file to Pillow."""
    got = png_read.decode(_check_png(Path("trait.png"), data))
    if got is None:
        return None
    canvas = np.zeros(got.shape + (4,), np.uint8)
    if got.box is not None:
        y0, x0, y1, x1 = got.box
        canvas[y0:y1, x0:x1] = got.pixels
    return canvas


def reference_box(px: np.ndarray):
    """layers' own crop (the NumPy definition) of full RGBA pixels: box, pixels, opaque_full."""
    from gpucomp.layers.decode import _cropped
    return _cropped(px)


def pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.array(im.convert("RGBA"))


def art(seed: int, h: int, w: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    px[: h // 3] = px[0, 0]  # flat rows and noisy rows: every filter type gets picked somewhere
    return px


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("kind", ["up", "sub", "paeth", "adaptive", "pillow"])
def test_every_filter_type_reads_as_pillow_reads_it(kind, channels):
    px = art(len(kind) + channels, 23, 31, channels)
    data = encode_filtered(filter_rows(px, kind), 31, 23, channels, get_preset("fast"))
    got = decode(data)
    assert got is not None and np.array_equal(got, pillow(data))


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_files_pillow_wrote_read_the_same(level):
    px = art(level, 40, 17, 4)
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, format="PNG", compress_level=level)
    got = decode(buf.getvalue())
    assert got is not None and np.array_equal(got, px)


def test_average_filter_rows_read_as_pillow_reads_them():
    px = art(9, 12, 9, 4)
    rows = filter_rows(px, "up")
    flat, prev = px.reshape(12, -1).astype(np.int32), np.zeros(36, np.int32)
    for y in range(12):  # filter type 3 (Average), which none of our encoders picks
        left = np.concatenate([np.zeros(4, np.int32), flat[y, :-4]])
        rows[y, 0], rows[y, 1:] = 3, (flat[y] - ((left + prev) >> 1)) % 256
        prev = flat[y]
    data = encode_filtered(rows, 9, 12, 4, get_preset("fast"))
    assert np.array_equal(decode(data), px)


def png_with(ihdr: bytes, idat: bytes, extra: tuple = ()) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(chunk(k, b) for k, b in extra) + \
        chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("case", ["grey", "palette", "16-bit", "interlaced", "trns", "animated", "short", "long",
                                  "bad-filter", "not-zlib"])
def test_what_it_does_not_read_goes_to_pillow(case):
    w, h = 3, 2
    depth, ctype, interlace = {"grey": (8, 0, 0), "palette": (8, 3, 0), "16-bit": (16, 6, 0),
                               "interlaced": (8, 6, 1)}.get(case, (8, 6, 0))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace)
    raw = b"\0" + bytes(4 * w)
    body = {"short": raw, "long": raw * 3, "bad-filter": b"\x07" + bytes(4 * w) + raw}.get(case, raw * h)
    idat = b"not a zlib stream" if case == "not-zlib" else zlib.compress(body)
    extra = {"trns": ((b"tRNS", b"\0\0\0\0\0\0"),), "animated": ((b"acTL", bytes(8)),)}.get(case, ())
    assert decode(png_with(ihdr, idat, extra)) is None


def test_no_jit_leaves_every_file_to_pillow(monkeypatch):
    monkeypatch.setenv("GPUCOMP_NO_JIT", "1")
    monkeypatch.setattr(png_read, "_state", {})
    data = encode_filtered(filter_rows(art(1, 4, 4, 4), "up"), 4, 4, 4, get_preset("fast"))
    assert decode(data) is None


def test_small_images_go_to_pillow_so_small_jobs_never_compile(monkeypatch):
    monkeypatch.setattr(png_read, "MIN_PIXELS", 1 << 20)
    small = encode_filtered(filter_rows(art(2, 512, 512, 4), "up"), 512, 512, 4, get_preset("fast"))
    assert decode(small) is None
    large = encode_filtered(filter_rows(art(2, 1024, 1024, 3), "up"), 1024, 1024, 3, get_preset("fast"))
    assert np.array_equal(decode(large), pillow(large))


@pytest.mark.parametrize("shape", ["empty", "one pixel", "edges", "full semi", "full opaque", "holes", "rgb"])
def test_the_box_found_while_unfiltering_is_layers_crop(shape):
    rng = np.random.default_rng(len(shape))
    h, w = 19, 23
    px = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    alpha = {"empty": np.zeros((h, w)), "one pixel": np.pad([[7]], ((5, h - 6), (9, w - 10))),
             "edges": np.pad(np.full((h - 3, 1), 255), ((0, 3), (w - 1, 0))),
             "full semi": np.full((h, w), 128), "full opaque": np.full((h, w), 255),
             "holes": np.where(rng.random((h, w)) < 0.5, 0, 255), "rgb": np.full((h, w), 255)}[shape]
    px[..., 3] = alpha
    if shape == "holes":
        px[0, 0, 3] = 255  # the whole canvas is the box, yet not opaque
    channels = 3 if shape == "rgb" else 4
    data = encode_filtered(filter_rows(px[..., :channels], "paeth"), w, h, channels, get_preset("fast"))
    got = png_read.decode(_check_png(Path("trait.png"), data))
    box, pixels, full = reference_box(px)
    assert (got.box, got.opaque_full, got.shape) == (box, full, (h, w))
    assert got.pixels.flags.c_contiguous and np.array_equal(got.pixels, pixels)


def test_each_file_gets_its_own_pixels_though_the_canvas_is_reused():
    a, b = art(1, 16, 16, 4), art(2, 16, 16, 4)
    a[..., 3], b[..., 3] = 200, 255
    first = png_read.decode(_check_png(Path("a.png"), encode_filtered(filter_rows(a, "up"), 16, 16, 4, get_preset("fast"))))
    png_read.decode(_check_png(Path("b.png"), encode_filtered(filter_rows(b, "up"), 16, 16, 4, get_preset("fast"))))
    assert np.array_equal(first.pixels, a)  # not overwritten by the second decode in this thread
