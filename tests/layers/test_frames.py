"""Animated traits (gpucomp/layers/frames.py, layers/layerset.py, scan.py): folders of frames, animated PNG, GIF
and WebP traits decoded to exact straight RGBA frames, refused without animated output, hostile
files capped, the frame-count rule (least common multiple, capped) and the frame-expanded layers."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from gpucomp.errors import LayerError, LayerWarning
from gpucomp.layers import frames as animation
from gpucomp.layers.layerset import load_layers
from gpucomp.plan.frames import frame_count, frame_view

SIZE = 32


def frames_of(n: int, seed: int = 0, clear: bool = True) -> list[np.ndarray]:
    """n different RGBA frames: a box that moves (leaving transparent pixels behind) and a fixed spot."""
    out = []
    for f in range(n):
        a = np.zeros((SIZE, SIZE, 4), np.uint8)
        if not clear:
            a[...] = (20, 40, 60, 255)
        a[2 + 2 * f:10 + 2 * f, 3:12] = (200, 17 * f % 256, 30 + seed, 255)
        a[20:26, 20:26] = (0, 90, 250, 255)
        a[0, 0] = (f % 256, 0, 0, 255)  # no two frames alike: encoders store a repeated frame once
        out.append(a)
    return out


def save_animated(path, frames, fmt: str, **options) -> None:
    ims = [Image.fromarray(x, "RGBA") for x in frames]
    ims[0].save(path, fmt, save_all=True, append_images=ims[1:], duration=100, **options)


def full_frame(t) -> np.ndarray:
    """A decoded (cropped) image back on the canvas."""
    out = np.zeros((SIZE, SIZE, 4), np.uint8)
    if t.box is not None:
        y0, x0, y1, x1 = t.box
        out[y0:y1, x0:x1] = t.pixels
    return out


def layers_with(tmp_path, anim_dir=None):
    """A layers folder: an opaque background and a layer `02-Fx` for the test's traits."""
    root = tmp_path / "layers"
    (root / "01-Bg").mkdir(parents=True)
    Image.fromarray(np.full((SIZE, SIZE, 4), (9, 9, 9, 255), np.uint8)).save(root / "01-Bg" / "Grey#1.png")
    (root / "02-Fx").mkdir()
    return root


def traits(ls, folder="02-Fx"):
    return {t.name: t for layer in ls.layers if layer.folder == folder for t in layer.traits}


def test_a_folder_of_frames_is_one_trait_in_natural_order(tmp_path):
    root = layers_with(tmp_path)
    frames = frames_of(11)
    (root / "02-Fx" / "Flame#10").mkdir()
    for i, f in enumerate(frames):  # 0 .. 10: natural order puts 10 last, not after 1
        Image.fromarray(f).save(root / "02-Fx" / "Flame#10" / f"{i}.png")
    t = traits(load_layers(root, animated=True))["Flame"]
    assert t.weight == 10 and len(t.frames) == 11
    for got, want in zip(t.frames, frames, strict=True):
        assert np.array_equal(full_frame(got), want)
    assert np.array_equal(full_frame(t), frames[0])  # the trait itself is frame 0 (stills, previews)


def test_without_animation_a_numbered_folder_stays_nftchef_parts(tmp_path):
    root = layers_with(tmp_path)
    (root / "02-Fx" / "Flame#10").mkdir()
    for i, f in enumerate(frames_of(3)):
        Image.fromarray(f).save(root / "02-Fx" / "Flame#10" / f"{i:03d}.png")
    t = traits(load_layers(root))["Flame"]
    assert t.frames is None and len(t.parts) == 3


@pytest.mark.parametrize("fmt,suffix,options", [
    ("PNG", "png", {}), ("PNG", "png", {"disposal": 1, "blend": 1}),
    ("GIF", "gif", {"disposal": 2}), ("WEBP", "webp", {"lossless": True, "exact": True}),
])
def test_animated_files_decode_to_their_frames_exactly(tmp_path, fmt, suffix, options):
    """Pillow writes partial frames (only the changed box) with the disposal and blending asked
    for; the trait's frames are the full frames each format composites to."""
    root = layers_with(tmp_path)
    frames = frames_of(5)
    save_animated(root / "02-Fx" / f"Spin#2.{suffix}", frames, fmt, **options)
    t = traits(load_layers(root, animated=True))["Spin"]
    assert len(t.frames) == 5
    for got, want in zip(t.frames, frames, strict=True):
        assert np.array_equal(full_frame(got), want)
    # (APNG with disposal 2 is left out: Pillow 13's writer drops unchanged pixels that the disposal
    # cleared, so its file means other frames than it was given; its reader follows the file.)


def test_animated_files_are_refused_without_animated_output(tmp_path):
    root = layers_with(tmp_path)
    save_animated(root / "02-Fx" / "Spin#2.png", frames_of(3), "PNG")
    save_animated(root / "02-Fx" / "Wave#2.webp", frames_of(3), "WEBP", lossless=True)
    with pytest.raises(LayerError) as err:
        load_layers(root)
    assert "Spin#2.png: animated PNG with 3 frames" in str(err.value)
    assert "Wave#2.webp: animated image with 3 frames" in str(err.value)
    assert '[output] animation = "webp"' in str(err.value)


def test_a_gif_without_animated_output_is_left_out_with_a_warning(tmp_path):
    root = layers_with(tmp_path)
    Image.fromarray(frames_of(1)[0]).save(root / "02-Fx" / "Dot#1.png")
    save_animated(root / "02-Fx" / "Spin#2.gif", frames_of(3), "GIF")
    with pytest.warns(LayerWarning, match=r"\.gif in animated collections"):
        ls = load_layers(root)
    assert list(traits(ls)) == ["Dot"]


def test_static_traits_and_frames_share_the_canvas_size(tmp_path):
    root = layers_with(tmp_path)
    (root / "02-Fx" / "Flame#1").mkdir()
    Image.fromarray(frames_of(1)[0]).save(root / "02-Fx" / "Flame#1" / "0.png")
    Image.fromarray(np.zeros((SIZE + 2, SIZE, 4), np.uint8)).save(root / "02-Fx" / "Flame#1" / "1.png")
    with pytest.raises(LayerError, match=r"Flame#1/1\.png: size 32x34 differs"):
        load_layers(root, animated=True)


def test_a_gif_of_too_many_frames_is_refused_without_reading_them_all(tmp_path, monkeypatch):
    monkeypatch.setattr(animation, "MAX_TRAIT_FRAMES", 20)
    root = layers_with(tmp_path)
    save_animated(root / "02-Fx" / "Many#1.gif", frames_of(40), "GIF", disposal=2)
    seeks = []
    real = Image.Image.seek
    monkeypatch.setattr(Image.Image, "seek", lambda im, i: (seeks.append(i), real(im, i))[1])
    with pytest.raises(LayerError, match=r"Many#1\.gif: more than 20 frames"):
        load_layers(root, animated=True)
    assert max(seeks, default=0) <= 21


def _apng_claiming(frames: int, data: bytes) -> bytes:
    """The APNG with its acTL chunk claiming `frames` frames (CRC fixed): a hostile header."""
    at = data.index(b"acTL") - 4
    body = struct.pack(">II", frames, 0)
    chunk = struct.pack(">I", 8) + b"acTL" + body + struct.pack(">I", zlib.crc32(b"acTL" + body))
    return data[:at] + chunk + data[at + 20:]


def test_an_apng_claiming_100k_frames_is_refused_from_its_header(tmp_path):
    root = layers_with(tmp_path)
    buf = io.BytesIO()
    save_animated(buf, frames_of(2), "PNG")
    (root / "02-Fx" / "Bomb#1.png").write_bytes(_apng_claiming(100_000, buf.getvalue()))
    with pytest.raises(LayerError, match=r"Bomb#1\.png: more than 10000 frames"):
        load_layers(root, animated=True)


def test_decoded_bytes_of_one_trait_are_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(animation, "MAX_TRAIT_FRAME_BYTES", 3 * SIZE * SIZE * 4)
    root = layers_with(tmp_path)
    save_animated(root / "02-Fx" / "Big#1.png", frames_of(4), "PNG")
    with pytest.raises(LayerError, match=r"4 frames of 32x32 decode to .* more than gpucomp holds"):
        load_layers(root, animated=True)


def _animated_layers(tmp_path, counts: dict[str, int]):
    root = layers_with(tmp_path)
    Image.fromarray(frames_of(1)[0]).save(root / "02-Fx" / "Still#1.png")
    for name, n in counts.items():
        save_animated(root / "02-Fx" / f"{name}#1.png", frames_of(n), "PNG")
    return load_layers(root, animated=True)


def test_the_animation_has_the_least_common_multiple_of_the_frame_counts(tmp_path):
    ls = _animated_layers(tmp_path, {"A": 4, "B": 6})
    fc = frame_count(ls, 1000)
    assert fc.frames == 12 and dict(fc.animated) == {"02-Fx/A": 4, "02-Fx/B": 6}
    assert frame_count(_animated_layers(tmp_path / "x", {}), 1000).frames == 1  # nothing animated


def test_above_max_frames_the_error_names_the_traits_and_counts(tmp_path):
    ls = _animated_layers(tmp_path, {"A": 7, "B": 9})
    with pytest.raises(LayerError) as err:
        frame_count(ls, 60)
    assert "63 frames" in str(err.value) and "02-Fx/A (7), 02-Fx/B (9)" in str(err.value)
    assert "max_frames = 60" in str(err.value)


def test_frame_view_loops_each_trait_and_repeats_static_ones(tmp_path):
    ls = _animated_layers(tmp_path, {"A": 2, "B": 3})
    names = [t.name for t in ls.layers[1].traits]  # natural order: A, B, Still
    view = frame_view(ls, 6)
    combos = view.combos(np.array([[0, names.index("A")], [0, names.index("B")], [0, names.index("Still")]]))
    assert combos.shape == (18, 2)
    layer = view.layerset.layers[1]
    for item, (name, n) in enumerate((("A", 2), ("B", 3), ("Still", 1))):
        t = ls.layers[1].traits[names.index(name)]
        for f in range(6):
            drawn = layer.traits[combos[item * 6 + f, 1]]
            want = t if n == 1 else t.frames[f % n]
            assert np.array_equal(full_frame(drawn), full_frame(want)), (name, f)
            assert combos[item * 6 + f, 0] == 0  # the background: the same trait in every frame


@pytest.mark.parametrize("names,frames", [
    (["000", "001", "002"], True), (["frame_0", "frame_1", "frame_10"], True), (["7"], True),
    (["a1", "b2"], False), (["Red#1", "Red#2"], False), (["Hat", "Hat2"], False), ([], False),
])
def test_which_folders_hold_frames(names, frames):
    assert animation.frame_folder_names(names) is frames


def test_info_lists_the_animated_formats():
    import subprocess
    import sys
    from pathlib import Path

    import gpucomp

    env = {"PYTHONPATH": str(Path(gpucomp.__file__).parents[1]), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "gpucomp", "info"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "animated output: webp, apng, gif" in r.stdout
