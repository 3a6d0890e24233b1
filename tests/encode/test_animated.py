"""Animated output encoders and settings (gpucomp/encode/animated.py): each format decodes back to the
frames it was given — exactly for APNG, lossless WebP and GIF within 256 colours, within stated
bounds otherwise — and bad settings are refused naming the key."""
import io
import sys

import numpy as np
import pytest
from PIL import Image

from gpucomp.encode.animated import encoder, parse_animation
from gpucomp.errors import ConfigError

from tolerances import GIF_QUANTIZED_MAX_MEAN_ERROR

LOSSLESS_WEBP = {"quality": 90, "method": 4, "lossless": True}
LOSSY_WEBP = {"quality": 90, "method": 4, "lossless": False}
PSNR_LOSSY_WEBP = 30.0  # dB, every frame: quality 90 on these flat shapes gives ~40
PSNR_VIDEO = 28.0  # dB, every frame: yuv420p halves colour resolution, hard red edges give ~30


def frames_of(n: int, size: int = 64, clear: bool = True, gradient: bool = False) -> list[np.ndarray]:
    out = []
    yy, xx = np.mgrid[0:size, 0:size]
    for f in range(n):
        a = np.zeros((size, size, 4), np.uint8)
        a[..., :3] = (30, 60, 90)
        if gradient:  # ~4000 colours
            a[..., 0], a[..., 1] = (yy * 4) % 256, (xx * 4 + f) % 256
        a[..., 3] = 255
        a[4 + 5 * f:20 + 5 * f, 8:30, :3] = (200, 10 * f, 30)
        if clear:
            a[40:50, 4 * f:4 * f + 10, 3] = 0
            a[40:50, 4 * f:4 * f + 10, :3] = 0
        out.append(a)
    return out


def anim(name, webp=LOSSLESS_WEBP, **table):
    return parse_animation(name, table, webp, "config: output")


def encode(name, frames, webp=LOSSLESS_WEBP, **table) -> bytes:
    e = encoder(anim(name, webp, **table), name)
    for f in frames:
        e.add(f)
    return e.finish()


def decode(data: bytes, frame_ms: int = 100) -> list[np.ndarray]:
    """Every frame, a frame stored once for several (encoders merge repeats) counted by its duration."""
    im = Image.open(io.BytesIO(data))
    out = []
    for i in range(im.n_frames):
        im.seek(i)
        frame = np.array(im.convert("RGBA"))  # loads the frame: WebP's duration is known only then
        out += [frame] * max(1, round(im.info["duration"] / frame_ms))
    return out


def decode_video(data: bytes) -> list[np.ndarray]:
    import av

    with av.open(io.BytesIO(data)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Over premultiplied values when there is alpha: the colour under a clear pixel does not show."""
    if a.shape[-1] == 4:
        a, b = premultiplied(a), premultiplied(b)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse)


@pytest.mark.parametrize("name", ["apng", "webp", "gif"])
def test_lossless_formats_decode_to_the_frames_exactly(name):
    frames = frames_of(6)  # 3 colours and transparency: a GIF holds them exactly
    got = decode(encode(name, frames))
    assert len(got) == 6
    for g, f in zip(got, frames, strict=True):
        assert np.array_equal(g, f)


def test_a_repeated_frame_is_stored_once_with_the_summed_duration():
    frames = frames_of(3)
    frames = [frames[0], frames[1], frames[1], frames[2]]
    for name in ("apng", "webp", "gif"):
        got = decode(encode(name, frames))
        assert len(got) == 4 and all(np.array_equal(g, f) for g, f in zip(got, frames, strict=True)), name


def test_gif_over_256_colours_is_one_median_cut_palette_per_item():
    frames = frames_of(4, clear=False, gradient=True)
    got = decode(encode("gif", frames))
    assert len(got) == 4
    err = np.mean([np.abs(g[..., :3].astype(int) - f[..., :3]).mean() for g, f in zip(got, frames, strict=True)])
    assert err <= GIF_QUANTIZED_MAX_MEAN_ERROR
    assert all((g[..., 3] == 255).all() for g in got)
    im = Image.open(io.BytesIO(encode("gif", frames)))
    assert len(im.getpalette()) // 3 <= 256


def test_gif_alpha_is_clear_below_128_and_opaque_from_128():
    frames = frames_of(2)
    for f in frames:
        f[0:2, 0:2, 3] = 100
        f[2:4, 0:2, 3] = 200
    got = decode(encode("gif", frames))
    assert (got[0][0:2, 0:2, 3] == 0).all() and (got[0][2:4, 0:2, 3] == 255).all()


def premultiplied(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return np.concatenate([x[..., :3] * x[..., 3:] / 255, x[..., 3:]], -1)


def test_lossy_webp_is_within_the_stated_psnr():
    frames = frames_of(4)
    got = decode(encode("webp", frames, LOSSY_WEBP))
    assert len(got) == 4
    assert min(psnr(g, f) for g, f in zip(got, frames, strict=True)) >= PSNR_LOSSY_WEBP


@pytest.mark.parametrize("name", ["mp4", "webm"])
def test_video_decodes_to_every_frame_flattened_within_the_stated_psnr(name):
    pytest.importorskip("av")
    frames = frames_of(5)
    got = decode_video(encode(name, frames, background="#ffffff"))
    assert len(got) == 5
    flat = [np.where(f[..., 3:4] == 255, f[..., :3], 255).astype(np.uint8) for f in frames]
    assert min(psnr(g, f) for g, f in zip(got, flat, strict=True)) >= PSNR_VIDEO


def test_video_bytes_are_the_same_every_time():
    pytest.importorskip("av")
    frames = frames_of(3)
    assert encode("mp4", frames) == encode("mp4", frames)


def test_frame_time_and_loop_are_written():
    data = encode("webp", frames_of(2), fps=4, loop=3)
    im = Image.open(io.BytesIO(data))
    im.seek(1)
    im.load()
    assert im.info["duration"] == 250 and im.info["loop"] == 3
    im = Image.open(io.BytesIO(encode("gif", frames_of(2), frame_ms=70)))
    im.seek(1)
    im.load()
    assert im.info["duration"] == 70


@pytest.mark.parametrize("value,table,message", [
    ("mov", {}, "unknown animated format 'mov'"),
    (["gif", "gif"], {}, "lists a format twice"),
    ("gif", {"fps": 10, "frame_ms": 50}, "give fps or frame_ms, not both"),
    ("gif", {"speed": 2}, "unknown key(s) speed"),
    ("gif", {"loop": -1}, "animated.loop: must be between 0 and 65535"),
    ("gif", {"fps": "fast"}, "animated.fps: expected a number"),
    ("gif", {"background": "white"}, "animated.background: expected a colour"),
    ([], {}, "expected an animated format or a non-empty list"),
])
def test_bad_settings_are_refused_naming_the_key(value, table, message):
    with pytest.raises(ConfigError) as err:
        parse_animation(value, table, LOSSLESS_WEBP, "gpucomp.toml: output")
    assert message in str(err.value)


def test_video_is_refused_up_front_without_pyav(monkeypatch):
    from gpucomp.encode.animated import check_available

    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    with pytest.raises(ConfigError, match=r"animation 'mp4' needs PyAV.*gpucomp\[video\]"):
        check_available(anim(["webp", "mp4"]), 64, 64)
    check_available(anim(["webp", "gif"]), 64, 64)  # no video: no PyAV needed


def test_video_needs_an_even_canvas():
    pytest.importorskip("av")
    from gpucomp.encode.animated import check_available

    with pytest.raises(ConfigError, match=r"needs an even width and height; the canvas is 63x64"):
        check_available(anim("webm"), 63, 64)
