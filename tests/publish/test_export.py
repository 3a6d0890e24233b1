"""Exporting again (gpucomp.publish.export): a re-export, after a change or not, leaves exactly the
layout's files, each the collection's current one, and no temporary names; what a killed export
left is removed by the next. The layouts themselves are tested in tests/metadata/test_chain_metadata.py."""
from __future__ import annotations

import errno
import json
import os
import shutil

import pytest

import gpucomp
from gpucomp.cli import main
from gpucomp.outdir.update import update_metadata
from gpucomp.publish import export as export_module
from gpucomp.publish.export import erc1155_name, export

from disk_faults import fail_writes, temporaries

ITEMS = 5
TMP = ".gpucomp-tmp-"
METADATA = {"sugar": "solana", "erc1155": "erc1155"}  # a format each layout takes


@pytest.fixture(scope="module")
def collections(demo_layers, tmp_path_factory):
    """layout -> a collection that fits it, made once (Sugar's numbered from 0, ERC-1155's from 1)."""
    made = {}
    for layout, fmt in METADATA.items():
        made[layout] = tmp_path_factory.mktemp(layout) / "out"
        gpucomp.run(demo_layers, made[layout], size=ITEMS, seed=4, metadata={"format": fmt})
    return made


@pytest.fixture(params=["sugar", "erc1155"])
def layout(request):
    return request.param


@pytest.fixture
def out(collections, layout, tmp_path):
    """A fresh copy of a collection for `layout` (tests change it)."""
    dst = tmp_path / "out"
    shutil.copytree(collections[layout], dst)
    return dst


def numbers(out) -> list[int]:
    return sorted(int(p.stem) for p in (out / "metadata").glob("*.json"))


def linked(out, layout: str) -> dict[str, os.PathLike]:
    """Each exported name that is a link to a collection file, and that file."""
    if layout == "erc1155":
        return {erc1155_name(n): out / "metadata" / f"{n}.json" for n in numbers(out)}
    return {**{f"{n}.png": out / "images" / f"{n}.png" for n in numbers(out)},
            **{f"{n}.json": out / "metadata" / f"{n}.json" for n in numbers(out)},
            "collection.png": out / "images" / "0.png"}


def assert_exactly_the_layout(out, layout: str) -> None:
    dest = out / export_module.LAYOUTS[layout]
    written = {"collection.json"} if layout == "sugar" else set()
    assert set(os.listdir(dest)) == set(linked(out, layout)) | written  # no temporary name, nothing else
    for name, src in linked(out, layout).items():
        assert os.path.samefile(dest / name, src), name
        assert (dest / name).read_bytes() == src.read_bytes()


def inodes(out, layout: str) -> dict[str, int]:
    dest = out / export_module.LAYOUTS[layout]
    return {name: os.stat(dest / name).st_ino for name in linked(out, layout)}


def test_exporting_twice_leaves_only_the_final_files(out, layout):
    export(out, layout)
    first = inodes(out, layout)
    export(out, layout)
    assert_exactly_the_layout(out, layout)
    assert inodes(out, layout) == first  # the links already there are kept


def test_exporting_again_after_a_change_links_the_new_files_and_keeps_the_others(out, layout):
    export(out, layout)
    first = inodes(out, layout)
    update_metadata(out, {"description": "changed"})  # new metadata files; images untouched
    export(out, layout)
    assert_exactly_the_layout(out, layout)
    dest = out / export_module.LAYOUTS[layout]
    for name, src in linked(out, layout).items():
        if src.suffix == ".json":
            assert json.loads((dest / name).read_text(encoding="utf-8"))["description"] == "changed"
        else:
            assert os.stat(dest / name).st_ino == first[name]


def test_what_a_killed_export_left_is_removed_by_the_next(out, layout):
    dest = export(out, layout)
    os.link(out / "metadata" / f"{numbers(out)[1]}.json", dest / f"{TMP}0123456789abcdef")  # killed before its rename
    (dest / f"{TMP}fedcba9876543210").write_bytes(b'{"half')  # killed while copying
    export(out, layout)
    assert_exactly_the_layout(out, layout)


def test_a_rename_onto_a_link_of_the_same_file_leaves_no_temporary(out, layout, monkeypatch):
    """The destination can become a link to the same file after it was looked at: rename(2) then
    does nothing and keeps the temporary name, which must go too."""
    export(out, layout)
    monkeypatch.setattr(export_module, "_same_file", lambda src, dst: False)
    export(out, layout)
    assert_exactly_the_layout(out, layout)


@pytest.mark.parametrize("layout", ["sugar"])
def test_a_full_disk_ends_in_one_error_line_naming_the_file_and_the_next_export_finishes(out, layout, capsys,
                                                                                         monkeypatch):
    failed = fail_writes(monkeypatch, errno.ENOSPC, lambda p: p.name == "collection.json")
    assert main(["export", str(out), "--layout", layout]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {failed[0]}: no space left on the device; free space, then export again (the files already in "
        f"place are kept)"]
    assert failed == [out / "assets" / "collection.json"] and temporaries(out) == []
    monkeypatch.undo()
    assert main(["export", str(out), "--layout", layout, "-q"]) == 0
    assert_exactly_the_layout(out, layout)
