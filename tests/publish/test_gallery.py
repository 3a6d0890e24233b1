"""The gallery's files (gpucomp.publish.gallery): the index and metadata the page reads, thumbnails made
once and remade only when an image changes, errors for folders that are not finished outputs,
links, bounded memory, the CLI. The page itself is tested in a browser: test_gallery_browser.py."""
from __future__ import annotations

import csv
import errno
import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

import gpucomp
from gpucomp.cli import main
from gpucomp.errors import ConfigError, OutputError
from gpucomp.publish import gallery
from gpucomp.publish.gallery import make_gallery

from disk_faults import fail_writes, temporaries

ITEMS = 40


def run(gen) -> None:
    for _ in gen:
        pass


def script_data(path, call: str) -> dict:
    """The object a data/*.js file hands to `call`."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith(call + "(") and text.endswith(");\n"), text[:80]
    return json.loads(text[len(call) + 1:-3])


def metadata(out, n: int) -> dict:
    return json.loads((out / "metadata" / f"{n}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def collection(demo_layers, tmp_path_factory):
    out = tmp_path_factory.mktemp("coll") / "out"
    run(gpucomp.generate(demo_layers, out, size=ITEMS, seed=5))
    return out


@pytest.fixture
def out(collection, tmp_path):
    """A fresh copy of the collection (tests change it)."""
    import shutil

    dst = tmp_path / "out"
    shutil.copytree(collection, dst)
    return dst


def test_index_lists_every_item_with_its_traits_and_rank(out):
    page = make_gallery(out, thumb=32)
    assert page == out / "gallery" / "index.html"
    data = script_data(out / "gallery" / "data" / "index.js", "GALLERY.load")
    report = json.loads((out / "rarity.json").read_text(encoding="utf-8"))
    assert data["format"] == gallery.FORMAT and data["items"] == ITEMS
    assert data["title"] == "Item — out"  # the items' name prefix and the folder
    assert data["numbers"] == list(range(1, ITEMS + 1))
    assert [layer["name"] for layer in data["layers"]] == [layer["name"] for layer in report["layers"]]
    assert data["layers"][0]["traits"][0]["percent"] == report["layers"][0]["traits"][0]["percent"]
    assert data["sigma"] == report["sigma"] and data["weights_known"] is True
    with open(out / "rarity.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert data["ranks"] == [int(r["rank"]) for r in rows]
    assert data["openrarity"] == [int(r["openrarity_rank"]) for r in rows]  # the report's OpenRarity column
    for i, n in enumerate(data["numbers"]):  # the trait indices name the item's attributes
        names = [data["layers"][li]["traits"][col[i]]["name"] for li, col in enumerate(data["traits"])]
        assert names == [a["value"] for a in metadata(out, n)["attributes"]]
    assert data["thumb"] == {"size": 32, "format": gallery.thumb_format(), "image": [64, 64]}


def test_metadata_chunks_hold_every_items_metadata_in_order(out, monkeypatch):
    monkeypatch.setattr(gallery, "META_CHUNK", 16)
    make_gallery(out, thumb=32)
    data = script_data(out / "gallery" / "data" / "index.js", "GALLERY.load")
    assert data["meta_chunk"] == 16
    names = sorted(p.name for p in (out / "gallery" / "data").iterdir())
    assert names == ["index.js", "meta-0000.js", "meta-0001.js", "meta-0002.js"]  # ceil(40 / 16)
    with open(out / "rarity.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for c in range(3):
        chunk = script_data(out / "gallery" / "data" / f"meta-{c:04d}.js", "GALLERY.addMeta")
        assert chunk["chunk"] == c
        for k, (score, logr, meta) in enumerate(chunk["items"]):
            i = c * 16 + k
            assert meta == metadata(out, i + 1)
            assert (score, logr) == (float(rows[i]["score"]), float(rows[i]["log_rarity"]))
    monkeypatch.setattr(gallery, "META_CHUNK", 32)  # fewer chunks: the extra file goes
    make_gallery(out, thumb=32)
    assert sorted(p.name for p in (out / "gallery" / "data").iterdir()) == ["index.js", "meta-0000.js", "meta-0001.js"]


def test_page_assets_are_copied_and_load_nothing_from_the_network(out):
    make_gallery(out, thumb=32)
    for name in gallery.ASSETS:
        assert ((out / "gallery" / name).read_bytes()
                == (gallery.resources.files("gpucomp.publish") / "gallery_assets" / name).read_bytes())
    html = (out / "gallery" / "index.html").read_text(encoding="utf-8")
    for name in ("gallery.js", "gallery.css", "data/index.js"):
        assert f'"{name}"' in html
    for name in gallery.ASSETS:
        text = (out / "gallery" / name).read_text(encoding="utf-8")
        assert "http:" not in text and "https:" not in text and "//cdn" not in text, name
        assert "fetch(" not in text and "XMLHttpRequest" not in text, name  # refused under file://


def test_thumbnails_fit_the_box_and_match_the_image(out):
    make_gallery(out, thumb=32)
    fmt = gallery.thumb_format()
    thumbs = out / "gallery" / "thumbs"
    assert sorted(p.name for p in thumbs.iterdir()) == sorted([f"{n}.{fmt}" for n in range(1, ITEMS + 1)]
                                                              + ["thumbs.json"])
    with Image.open(thumbs / f"7.{fmt}") as im, Image.open(out / "images" / "7.png") as src:
        assert im.size == (32, 32)
        small = src.convert("RGB").resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=3.0)
        diff = np.abs(np.asarray(im.convert("RGB"), np.int16) - np.asarray(small, np.int16))
        assert diff.mean() < 8 and diff.max() < 96  # lossy WebP of the same picture (a wrong item differs by far more)


def test_small_images_are_not_enlarged_and_alpha_is_kept(tmp_path):
    src = tmp_path / "1.png"
    im = Image.new("RGBA", (24, 12), (200, 10, 10, 255))
    im.putpixel((0, 0), (0, 0, 0, 0))
    im.save(src)
    for fmt in ("webp", "png"):
        if fmt == "webp" and gallery.thumb_format() != "webp":
            continue
        data = gallery.thumbnail_bytes(src, 64, fmt)
        with Image.open(io.BytesIO(data)) as t:
            assert t.format == fmt.upper() and t.size == (24, 12) and t.mode == "RGBA"
            assert t.getpixel((0, 0))[3] == 0 and t.getpixel((10, 6))[3] == 255
        with Image.open(io.BytesIO(gallery.thumbnail_bytes(src, 16, fmt))) as small:
            assert small.size == (16, 8)


def thumb_times(out) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in (out / "gallery" / "thumbs").iterdir() if p.name != "thumbs.json"}


def test_rerun_makes_no_thumbnail_and_rewrites_nothing(out):
    logs = []
    make_gallery(out, thumb=32)
    before = {p: p.stat().st_mtime_ns for p in (out / "gallery").rglob("*") if p.is_file() and p.name != "thumbs.json"}
    make_gallery(out, thumb=32, log=logs.append)
    assert f"gallery: {ITEMS} items, {ITEMS} thumbnails up to date, 0 to make" in logs[0]
    after = {p: p.stat().st_mtime_ns for p in (out / "gallery").rglob("*") if p.is_file() and p.name != "thumbs.json"}
    assert after == before


def test_a_changed_image_a_deleted_thumbnail_and_a_new_size_are_remade(out):
    make_gallery(out, thumb=32)
    fmt = gallery.thumb_format()
    t0 = thumb_times(out)
    # an image re-rendered (as `gpucomp rerender` does: new bytes, new hash in provenance.json)
    Image.new("RGB", (64, 64), (255, 0, 255)).save(out / "images" / "3.png")
    prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    prov["items"][2]["sha256"] = "ab" * 32
    (out / "provenance.json").write_text(json.dumps(prov), encoding="utf-8")
    (out / "gallery" / "thumbs" / f"5.{fmt}").unlink()
    logs = []
    make_gallery(out, thumb=32, log=logs.append)
    assert "2 to make" in logs[0]
    t1 = thumb_times(out)
    assert {k for k in t0 if t1.get(k) != t0[k]} == {f"3.{fmt}", f"5.{fmt}"}
    with Image.open(out / "gallery" / "thumbs" / f"3.{fmt}") as im:
        r, g, b = im.convert("RGB").getpixel((16, 16))
        assert r > 200 and g < 50 and b > 200
    logs.clear()
    make_gallery(out, thumb=48, log=logs.append)
    assert f"0 thumbnails up to date, {ITEMS} to make (48px" in logs[0]


def test_thumbnails_of_items_no_longer_there_are_removed(out):
    make_gallery(out, thumb=32)
    fmt = gallery.thumb_format()
    (out / "gallery" / "thumbs" / f"999.{fmt}").write_bytes(b"old")
    (out / "gallery" / "thumbs" / "notes.txt").write_text("mine")
    make_gallery(out, thumb=32)
    assert not (out / "gallery" / "thumbs" / f"999.{fmt}").exists()
    assert (out / "gallery" / "thumbs" / "notes.txt").exists()  # not a file of ours


def test_an_extended_collection_shows_its_new_items(out):
    make_gallery(out, thumb=32)
    run(gpucomp.extend(out, 5))
    logs = []
    make_gallery(out, thumb=32, log=logs.append)
    assert f"{ITEMS} thumbnails up to date, 5 to make" in logs[0]
    data = script_data(out / "gallery" / "data" / "index.js", "GALLERY.load")
    assert data["numbers"] == list(range(1, ITEMS + 6))


def test_openrarity_ranks_are_read_where_the_report_has_them(out):
    path = out / "rarity.csv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    rows = [r[:4] + [gallery.OPENRARITY_COLUMN if k == 0 else str(ITEMS + 1 - k)] + r[4:] for k, r in enumerate(rows)]
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    make_gallery(out, thumb=32)
    data = script_data(out / "gallery" / "data" / "index.js", "GALLERY.load")
    assert data["openrarity"] == list(range(ITEMS, 0, -1))
    assert (data["traits"][0][0]
            == [t["name"] for t in data["layers"][0]["traits"]].index(metadata(out, 1)["attributes"][0]["value"]))


def test_folders_that_are_not_finished_outputs_are_refused(tmp_path, out):
    with pytest.raises(OutputError, match="not a folder"):
        make_gallery(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(OutputError, match=r"not a gpucomp output \(no gpucomp.json\)"):
        make_gallery(tmp_path / "plain")
    (out / "gpucomp.journal").write_bytes(b"")
    with pytest.raises(OutputError, match="not finished.*gpucomp resume"):
        make_gallery(out)
    assert not (out / "gallery").exists()  # refused before writing anything
    (out / "gpucomp.journal").unlink()
    (out / "rarity.csv").unlink()
    with pytest.raises(OutputError, match="rarity.csv is missing"):
        make_gallery(out)


@pytest.mark.parametrize("damage, match", [
    ("csv-trait", r"rarity.csv, line 3: KeyError 'Nobody'"),
    ("csv-header", r"rarity.csv: its header lacks"),
    ("json", r"rarity.json is unreadable"),
    ("metadata", r"metadata/4.json: missing or unreadable"),
    ("image", r"images/6.png: image missing"),
    ("image-bytes", r"images/6.png: cannot be read as an image"),
])
def test_damaged_outputs_name_the_file(out, damage, match):
    if damage.startswith("csv"):
        lines = (out / "rarity.csv").read_text(encoding="utf-8").splitlines()
        k = 2 if damage == "csv-trait" else 0
        cells = lines[k].split(",")
        cells[lines[0].split(",").index("openrarity_rank") - 1] = "Nobody"  # the last layer's column
        lines[k] = ",".join(cells)
        (out / "rarity.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif damage == "json":
        (out / "rarity.json").write_text("{", encoding="utf-8")
    elif damage == "metadata":
        (out / "metadata" / "4.json").unlink()
    elif damage == "image":
        (out / "images" / "6.png").unlink()
    else:
        (out / "images" / "6.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(OutputError, match=match):
        make_gallery(out, thumb=32)


@pytest.mark.parametrize("where", ["gallery", "gallery/thumbs", "gallery/data"])
def test_a_link_inside_out_is_never_followed(out, tmp_path, where):
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / where).parent.mkdir(parents=True, exist_ok=True)
    (out / where).symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutputError, match="is a symbolic link"):
        make_gallery(out, thumb=32)
    assert list(outside.iterdir()) == []


def test_a_linked_file_of_ours_is_replaced_not_written_through(out, tmp_path):
    make_gallery(out, thumb=32)
    victim = tmp_path / "victim.js"
    victim.write_text("keep")
    index = out / "gallery" / "data" / "index.js"
    index.unlink()
    index.symlink_to(victim)
    make_gallery(out, thumb=32)
    assert victim.read_text() == "keep" and not index.is_symlink()


@pytest.mark.parametrize("kwargs, match", [({"thumb": 8}, "16..1024"), ({"thumb": True}, "16..1024"),
                                           ({"workers": -1}, "workers")])
def test_argument_validation(out, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_gallery(out, **kwargs)


def test_thumbnail_memory_is_bounded(out, monkeypatch):
    """At most 2 * workers thumbnails in flight at once, whatever the collection's size."""
    live = {"now": 0, "peak": 0}
    lock = threading.Lock()
    real = gallery.thumbnail_bytes

    def tracked(*a):
        with lock:
            live["now"] += 1
            live["peak"] = max(live["peak"], live["now"])
        try:
            return real(*a)
        finally:
            with lock:
                live["now"] -= 1

    monkeypatch.setattr(gallery, "thumbnail_bytes", tracked)
    seen = []
    make_gallery(out, thumb=16, workers=2, log=seen.append)
    assert 1 <= live["peak"] <= 2
    assert seen[-1].startswith("gallery: ") and seen[-1].endswith("s)")
    assert any(line.startswith(f"gallery: thumbnails {ITEMS}/{ITEMS}") for line in seen)


def test_cli_gallery_and_generate_gallery(out, demo_layers, tmp_path, capsys):
    from gpucomp.cli import build_parser, main

    assert main(["gallery", str(out), "--thumb", "24", "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "gallery" / "index.html")
    args = build_parser().parse_args(["gallery", str(out)])
    assert (args.thumb, args.workers, args.quiet) == (gallery.THUMB_DEFAULT, None, False)
    assert main(["gallery", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err
    new = tmp_path / "new"
    assert main(["generate", str(demo_layers), "-o", str(new), "-n", "6", "--seed", "2", "-q", "--gallery"]) == 0
    assert f"gallery: {new / 'gallery' / 'index.html'}" in capsys.readouterr().out
    assert len(list((new / "gallery" / "thumbs").iterdir())) == 6 + 1


def test_a_collection_of_several_stacks(demo_layers, tmp_path):
    """Items without a layer show its '(none)' trait; what was asked is unknown (no bars for it)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[collection]\nseed = 4\n[[stacks]]\nsize = 6\nlayers = ["01-Background", "02-Body"]\n'
                   '[[stacks]]\nsize = 4\nlayers = ["01-Background", "02-Body", "03-Clothes"]\n', encoding="utf-8")
    out = tmp_path / "out"
    run(gpucomp.generate(demo_layers, out, str(cfg)))
    make_gallery(out, thumb=16)
    data = script_data(out / "gallery" / "data" / "index.js", "GALLERY.load")
    assert data["weights_known"] is False and data["items"] == 10
    clothes = data["layers"][2]
    assert clothes["traits"][0]["name"] == "(none)" and clothes["traits"][0]["weight_percent"] is None
    assert data["traits"][2][:6] == [0] * 6 and 0 not in data["traits"][2][6:]


def test_refused_while_a_run_holds_the_folder(out):
    from gpucomp.outdir.lock import OutputLock

    with OutputLock(out):
        with pytest.raises(OutputError, match="another gpucomp run is writing to this folder"):
            make_gallery(out, thumb=16)
    assert not (out / "gallery").exists()


def test_a_linked_image_or_metadata_file_is_refused_not_followed(out, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"name": "not ours"}')
    (out / "metadata" / "3.json").unlink()
    (out / "metadata" / "3.json").symlink_to(secret)
    with pytest.raises(OutputError, match="metadata/3.json: missing or unreadable"):
        make_gallery(out, thumb=16)
    assert "not ours" not in "".join(p.read_text() for p in (out / "gallery" / "data").glob("meta-*.js"))


def test_temporaries_of_a_killed_run_are_removed(out):
    make_gallery(out, thumb=16)
    for sub in ("", "data", "thumbs"):
        (out / "gallery" / sub / ".gpucomp-tmp-0123456789abcdef").write_bytes(b"half")
    make_gallery(out, thumb=16)
    assert not list((out / "gallery").rglob(".gpucomp-tmp-*"))


def test_a_damaged_manifest_is_named(out):
    (out / "gpucomp.json").write_text('{"format": 3}', encoding="utf-8")
    with pytest.raises(OutputError, match="gpucomp.json: damaged or edited by hand"):
        make_gallery(out, thumb=16)


def test_other_primary_formats_and_thumbnails_from_a_sized_copy(demo_layers, tmp_path, monkeypatch):
    """A collection whose primary image is JPEG (no PNG at all) with a 48-pixel sized copy: the item
    view shows images/<n>.jpg, and 32-pixel thumbnails are made from the sized copy (smaller than the
    64-pixel primary, still large enough); at 60 pixels the copy is too small: from the primary."""
    out = tmp_path / "out"
    run(gpucomp.generate(demo_layers, out, size=6, seed=2, formats=["jpeg"],
                         sizes=[{"name": "small", "width": 48}, {"name": "x2", "scale": 2}]))
    read = []
    real = gallery.thumbnail_bytes
    monkeypatch.setattr(gallery, "thumbnail_bytes", lambda src, size, fmt: read.append(src) or real(src, size, fmt))
    make_gallery(out, thumb=32)
    data = script_data(out / "gallery" / "data" / "index.js", "GALLERY.load")
    assert data["image"] == "{n}.jpg" and data["thumb"]["image"] == [64, 64]
    assert sorted(read) == [out / "images" / "small" / f"{n}.jpg" for n in range(1, 7)]
    with Image.open(out / "gallery" / "thumbs" / "1.webp") as im:
        assert im.size == (32, 32)
    read.clear()
    make_gallery(out, thumb=32)
    assert read == []  # up to date
    make_gallery(out, thumb=60)
    assert sorted(read) == [out / "images" / f"{n}.jpg" for n in range(1, 7)]


GALLERY_FILES = {  # which of the gallery's files a failing write hits
    "a thumbnail": lambda p: p.parent.name == "thumbs" and p.stem.isdigit(),
    "the thumbnail state": lambda p: p.name == "thumbs.json",
    "a metadata chunk": lambda p: p.name.startswith("meta-"),
    "the index": lambda p: p.name == "index.js",
    "the page": lambda p: p.name == "index.html",
    "every file": lambda p: True,
}
REPORTED = {"every file": GALLERY_FILES["a thumbnail"]}  # the first failure, not the state saved after it
FIXES = {errno.ENOSPC: "no space left on the device; free space", errno.EDQUOT: "over the disk quota; free space",
         errno.EROFS: "the file system is read-only", errno.EIO: "input/output error"}


@pytest.mark.parametrize("code, where", [pytest.param(code, where, id=f"{errno.errorcode[code]} in {where}")
                                         for code, where in [(errno.ENOSPC, where) for where in GALLERY_FILES]
                                         + [(code, "a metadata chunk") for code in (errno.EDQUOT, errno.EROFS, errno.EIO)]])
def test_a_failing_disk_ends_in_one_error_line_naming_the_file_and_leaves_no_temporaries(out, capsys, monkeypatch,
                                                                                          code, where):
    failed = fail_writes(monkeypatch, code, GALLERY_FILES[where])
    assert main(["gallery", str(out), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err and err.splitlines()[-1] == errors[0]
    named = [path for path in failed if errors[0].startswith(f"error: {path}: {FIXES[code]}")]
    assert named and REPORTED.get(where, GALLERY_FILES[where])(named[0]), errors
    assert "run `gpucomp gallery` again" in errors[0]
    assert temporaries(out) == [] and not (out / ".gpucomp.lock").exists()
    monkeypatch.undo()
    assert main(["gallery", str(out), "-q"]) == 0  # once there is space, the same command finishes the job
    assert len(list((out / "gallery" / "thumbs").glob(f"*.{gallery.thumb_format()}"))) == ITEMS
