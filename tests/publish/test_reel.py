"""The collection reel (gpucomp preview --reel): an animated preview, one item a frame."""
import numpy as np
import pytest
from PIL import Image, ImageSequence

import gpucomp
from gpucomp.cli import main
from gpucomp.demo import make_layers
from gpucomp.errors import ConfigError, OutputError
from gpucomp.publish.reel import make_reel


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("reel")
    make_layers(root / "layers", layers=3, traits=9, size=48, seed=3)
    gpucomp.run(root / "layers", root / "out", size=7, seed=1, backend="cpu", preset="fast")
    return root / "out"


def frames_of(path):
    with Image.open(path) as im:
        return [(np.asarray(f.convert("RGB")).copy(), f.info.get("duration")) for f in ImageSequence.Iterator(im)]


def numbers(out):
    return sorted(int(p.stem) for p in (out / "images").glob("*.png"))


def item_frame(out, n, size):
    """What the reel shows for item n: its image centred on a size x size square (48 px -> x1)."""
    with Image.open(out / "images" / f"{n}.png") as im:
        px = np.asarray(im.convert("RGB"))
    k = size // 48
    px = px.repeat(k, 0).repeat(k, 1)
    frame = np.empty((size, size, 3), np.uint8)
    frame[...] = (40, 40, 40)
    o = (size - px.shape[0]) // 2
    frame[o:o + px.shape[0], o:o + px.shape[1]] = px
    return frame


def test_lossless_webp_reel_is_each_item_in_number_order(collection):
    path = make_reel(collection, items=5, seconds=0.5, size=96, lossless=True)
    assert path == collection / "preview" / "collection.webp"
    frames = frames_of(path)
    assert len(frames) == 5
    for n, (px, ms) in zip(numbers(collection), frames, strict=False):
        assert ms == 500
        assert np.array_equal(px, item_frame(collection, n, 96)), n


def test_default_reel_shows_every_item_up_to_thirty_lossy_over_30_db(collection):
    frames = frames_of(make_reel(collection, size=192))
    assert len(frames) == 7  # fewer items than the default 30: all of them
    for n, (px, ms) in zip(numbers(collection), frames, strict=True):
        err = np.mean((px.astype(float) - item_frame(collection, n, 192)) ** 2)
        assert ms == 1000 and 10 * np.log10(255 ** 2 / max(err, 1e-9)) > 30, n  # quality 85


def test_gif_reel_from_the_cli(collection, capsys):
    assert main(["preview", str(collection), "--reel", "3", "--reel-format", "gif", "--reel-size", "48"]) == 0
    printed = capsys.readouterr().out.split()
    assert str(collection / "preview" / "collection.gif") in printed
    assert len(frames_of(collection / "preview" / "collection.gif")) == 3


@pytest.mark.parametrize("kw, what", [({"items": 0}, "reel items"), ({"items": 10_000}, "reel items"),
                                      ({"size": 4}, "reel size"), ({"fmt": "mp4"}, "reel format"),
                                      ({"seconds": 0}, "reel seconds"), ({"seconds": "1"}, "reel seconds")])
def test_bad_settings_are_refused_by_name(collection, kw, what):
    with pytest.raises(ConfigError, match=what):
        make_reel(collection, **kw)


def test_a_folder_without_images_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(OutputError, match="no numbered images"):
        make_reel(tmp_path)
