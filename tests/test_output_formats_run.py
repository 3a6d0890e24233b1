"""A run with several formats and sizes, end to end: every file decodes to its copy of the item's
composite, metadata names the primary file, provenance hashes it, and resume/--force handle the
other files as the README says."""
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

import gpucomp
from gpucomp.errors import OutputError

OUTPUT = dict(formats=["webp", "png", "jpeg"], sizes=[{"name": "x3", "scale": 3, "format": ["png", "webp"]},
                                                      {"name": "thumbnail", "width": 16, "format": "png"}])


def settings(**more):
    from gpucomp.config import Config, with_overrides

    cfg = with_overrides(Config(), **OUTPUT)
    webp = cfg.formats[0]
    lossless = type(webp)("webp", {**webp.settings, "lossless": True})
    return dict(size=12, seed=5, backend="cpu", base_uri="ipfs://CID", formats=(lossless, *cfg.formats[1:]),
                sizes=cfg.sizes, **more)


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


def test_every_file_is_its_copy_of_the_composite(demo_layers, tmp_path):
    out = tmp_path / "out"
    items = list(gpucomp.generate(demo_layers, out, **settings()))
    assert len(items) == 12
    prov = json.loads((out / "provenance.json").read_text())
    for item in items:
        n = item.number
        img = out / "images"
        assert item.image == img / f"{n}.webp"
        ref = pixels(img / f"{n}.png")  # the PNG is the composite (tests/test_end_to_end.py)
        assert np.array_equal(pixels(img / f"{n}.webp"), ref)  # lossless WebP: exact
        assert np.array_equal(pixels(img / "x3" / f"{n}.png"), np.repeat(np.repeat(ref, 3, 0), 3, 1))
        assert np.array_equal(pixels(img / "x3" / f"{n}.webp"), pixels(img / "x3" / f"{n}.png"))
        with Image.open(img / "thumbnail" / f"{n}.png") as thumb, Image.open(img / f"{n}.jpg") as jpeg:
            assert thumb.size == (16, 16) and jpeg.format == "JPEG"
        assert not (img / "thumbnail" / f"{n}.webp").exists()
        meta = json.loads((out / "metadata" / f"{n}.json").read_text())
        assert meta["image"] == f"ipfs://CID/{n}.webp"
        entry = next(e for e in prov["items"] if e["number"] == n)
        assert entry["sha256"] == hashlib.sha256((img / f"{n}.webp").read_bytes()).hexdigest()


def test_resume_rebuilds_an_item_whose_other_file_is_missing(demo_layers, tmp_path):
    out = tmp_path / "out"
    list(gpucomp.generate(demo_layers, out, **settings()))
    before = {p: p.read_bytes() for p in (out / "images").rglob("*") if p.is_file()}
    (out / "images" / "x3" / "4.png").unlink()
    (out / "images" / "7.jpg").write_bytes(b"")
    redone = [i.number for i in gpucomp.generate(demo_layers, out, **settings())]
    assert sorted(redone) == [4, 7]
    after = {p: p.read_bytes() for p in (out / "images").rglob("*") if p.is_file()}
    assert after.keys() == before.keys()
    assert after[out / "images" / "x3" / "4.png"] == before[out / "images" / "x3" / "4.png"]
    assert after[out / "images" / "4.webp"] == before[out / "images" / "4.webp"]  # lossless WebP: deterministic


def test_resume_with_other_output_settings_is_refused_and_force_clears_every_file(demo_layers, tmp_path):
    out = tmp_path / "out"
    list(gpucomp.generate(demo_layers, out, size=12, seed=5, backend="cpu"))  # one PNG, as before
    with pytest.raises(OutputError,
                       match=r"the output formats or sizes changed \(png -> webp\+png\+jpeg, sizes x3, thumbnail\)"):
        list(gpucomp.generate(demo_layers, out, **settings()))
    list(gpucomp.generate(demo_layers, out, **settings(force=True)))
    list(gpucomp.generate(demo_layers, out, size=12, seed=5, backend="cpu", force=True))
    left = sorted(str(p.relative_to(out / "images")) for p in (out / "images").rglob("*") if p.is_file())
    assert left == sorted(f"{n}.png" for n in range(1, 13))


def test_gallery_and_sugar_export_with_other_primary_formats(demo_layers, tmp_path, capsys):
    """--gallery works whatever the formats (it reads the primary image, here WebP); --export sugar
    takes a JPEG primary and refuses a WebP one before rendering, saying what Sugar takes."""
    from gpucomp.cli import main

    out = tmp_path / "out"
    (tmp_path / "c.toml").write_text('[output]\nformat = "webp"\n[metadata]\nformat = "solana"\n', encoding="utf-8")
    args = ["generate", str(demo_layers), "-o", str(out), "-c", str(tmp_path / "c.toml"), "-n", "3", "-q"]
    assert main([*args, "--export", "sugar"]) == 2
    err = capsys.readouterr().err
    assert "Sugar takes PNG, JPEG or GIF item images" in err
    assert "the primary image (the first format listed) is webp" in err
    assert not out.exists()
    assert main([*args, "--gallery"]) == 0
    assert (out / "gallery" / "thumbs" / "0.webp").is_file() and (out / "images" / "0.webp").is_file()
    (tmp_path / "j.toml").write_text('[output]\nformat = ["jpeg", "png"]\n[metadata]\nformat = "solana"\n',
                                     encoding="utf-8")
    jpeg = tmp_path / "jpeg"
    assert main(["generate", str(demo_layers), "-o", str(jpeg), "-c", str(tmp_path / "j.toml"), "-n", "3", "-q",
                 "--export", "sugar"]) == 0
    assert sorted(p.name for p in (jpeg / "assets").iterdir()) == ["0.jpg", "0.json", "1.jpg", "1.json", "2.jpg",
                                                                   "2.json", "collection.jpg", "collection.json"]


KILL_TOML = '''
[output]
format = ["png", "webp"]
webp = { lossless = true, method = 0 }
[[output.sizes]]
name = "x2"
scale = 2
'''


@pytest.fixture(scope="module")
def kill_reference(demo_layers, tmp_path_factory):
    from test_faults import run_cli, snapshot

    tmp = tmp_path_factory.mktemp("kill-ref")
    (tmp / "c.toml").write_text(KILL_TOML)
    rc, _, err = run_cli(demo_layers, tmp / "out", "-q", "-c", str(tmp / "c.toml"))
    assert rc == 0, err
    return snapshot(tmp / "out")


@pytest.mark.parametrize("point", ["others:7", "image:7"])
def test_kill_9_between_an_items_files_then_resume_is_byte_identical(demo_layers, tmp_path, kill_reference, point):
    """Killed after an item's other files but before its primary (or before its journal record):
    resume renders it again and the folder ends as an uninterrupted run's."""
    import signal

    from test_faults import run_cli, snapshot

    (tmp_path / "c.toml").write_text(KILL_TOML)
    out = tmp_path / "out"
    rc, _, _ = run_cli(demo_layers, out, "-q", "-c", str(tmp_path / "c.toml"), env={"GPUCOMP_TEST_KILL": point})
    assert rc == -signal.SIGKILL
    assert (out / "images" / "x2" / "7.png").exists()
    rc, _, err = run_cli(demo_layers, out, "-q", "-c", str(tmp_path / "c.toml"))
    assert rc == 0, err
    assert snapshot(out) == kill_reference
    assert len([k for k in kill_reference if k.startswith("images/")]) == 4 * 120


def test_sizes_too_large_are_refused_before_any_image(demo_layers, tmp_path):
    from gpucomp.errors import ConfigError

    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="size 'big' makes 70400x70400 from the 64x64 layers"):
        list(gpucomp.generate(demo_layers, out, size=3, backend="cpu", sizes=[{"name": "big", "scale": 1100}]))
    assert not (out / "images").exists()
