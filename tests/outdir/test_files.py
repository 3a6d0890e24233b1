"""gpucomp._shared.files: the one place that opens files inside OUT. Nothing appears under a final name
until it is complete, nothing is written through a link, and our own files are read without
following links or blocking on FIFOs."""
import errno
import os
import stat
import threading

import pytest

from gpucomp._shared.files import (
    TMP_PREFIX,
    NotRegularFile,
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    ensure_folder,
    json_bytes,
    open_in_place,
    read_regular,
    remove_temporaries,
)
from gpucomp.errors import OutputError


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_the_final_name_shows_the_old_content_until_the_block_ends(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b"old")
    with atomic_open(path) as f:
        f.write(b"new, half")
        f.flush()
        assert path.read_bytes() == b"old"  # a reader (or a kill) now sees the old file, whole
        assert len(leftovers(tmp_path)) == 1
        f.write(b" and the rest")
    assert path.read_bytes() == b"new, half and the rest"
    assert leftovers(tmp_path) == []


def test_a_new_file_does_not_exist_until_complete(tmp_path):
    path = tmp_path / "1.png"
    with atomic_open(path) as f:
        f.write(b"x" * 1000)
        assert not path.exists()
    assert path.stat().st_size == 1000


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write(b"new")
            raise RuntimeError("encoder failed")
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_a_link_at_the_final_name_is_replaced_not_written_through(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "gpucomp.json").symlink_to(outside)
    atomic_write_bytes(out / "gpucomp.json", b"{}")
    assert outside.read_bytes() == b"precious"
    assert not (out / "gpucomp.json").is_symlink() and (out / "gpucomp.json").read_bytes() == b"{}"


def test_fsync_syncs_the_data_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        real_fsync(fd)

    def replace(src, dst, **kw):
        events.append(("replace", os.path.basename(dst)))
        real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_bytes(tmp_path / "m.json", b"{}", fsync=True)
    assert events == [("fsync", "file"), ("replace", "m.json"), ("fsync", "folder")]
    events.clear()
    atomic_write_bytes(tmp_path / "n.json", b"{}")
    assert events == [("replace", "n.json")]  # item files are checked by hash on resume instead


def test_temporary_files_get_the_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "x", b"1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o644


@pytest.mark.parametrize("kind", ["symlink", "dangling", "hardlink", "fifo", "folder"])
def test_files_updated_in_place_are_never_links_or_special(tmp_path, kind):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    path = tmp_path / "out.lock"
    {"symlink": lambda: path.symlink_to(outside), "dangling": lambda: path.symlink_to(tmp_path / "nowhere"),
     "hardlink": lambda: os.link(outside, path), "fifo": lambda: os.mkfifo(path),
     "folder": lambda: path.mkdir()}[kind]()
    with pytest.raises(OSError) as err:
        open_in_place(path, os.O_RDWR | os.O_CREAT)
    assert isinstance(err.value, NotRegularFile) or err.value.errno in (errno.EISDIR,)
    assert outside.read_bytes() == b"precious"
    assert not (tmp_path / "nowhere").exists()


def test_in_place_files_refuse_truncating_flags(tmp_path):
    with pytest.raises(AssertionError):
        open_in_place(tmp_path / "j", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)


def test_reading_a_fifo_fails_at_once_instead_of_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "1.png")
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("err", _error(read_regular, tmp_path / "1.png")), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "read_regular blocked on a FIFO"
    assert isinstance(result["err"], NotRegularFile) and "FIFO" in str(result["err"])


def test_reading_does_not_follow_links_and_checks_the_size_first(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 100)
    (tmp_path / "link").symlink_to(tmp_path / "big")
    assert isinstance(_error(read_regular, tmp_path / "link"), NotRegularFile)
    err = _error(read_regular, tmp_path / "big", 99)
    assert isinstance(err, NotRegularFile) and err.errno == errno.EFBIG
    assert read_regular(tmp_path / "big", 100) == b"x" * 100


def test_folders_we_write_into_must_be_real_folders(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    assert ensure_folder(out / "images").is_dir()
    (out / "preview").symlink_to(elsewhere)
    with pytest.raises(OutputError, match="symbolic link"):
        ensure_folder(out / "preview")
    (out / "metadata").write_text("")
    with pytest.raises(OutputError, match="not a folder"):
        ensure_folder(out / "metadata")


def test_temporaries_are_removed_but_not_through_a_linked_folder(tmp_path):
    (tmp_path / f"{TMP_PREFIX}abc").write_text("partial")
    (tmp_path / "keep.png").write_text("")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    (elsewhere / f"{TMP_PREFIX}theirs").write_text("")
    (tmp_path / "images").symlink_to(elsewhere)
    assert remove_temporaries(tmp_path) == 1
    assert remove_temporaries(tmp_path / "images") == 0
    assert (elsewhere / f"{TMP_PREFIX}theirs").exists() and (tmp_path / "keep.png").exists()


def _error(fn, *args):
    try:
        fn(*args)
    except Exception as err:  # noqa: BLE001 - the test inspects it
        return err
    return None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), {"a": [1, {"b": float("nan")}]}])
def test_no_json_file_is_written_with_a_number_json_does_not_have(tmp_path, value):
    with pytest.raises(ValueError, match="not JSON compliant"):
        json_bytes({"x": value})
    with pytest.raises(ValueError, match="not JSON compliant"):
        atomic_write_json(tmp_path / "x.json", [value])
    assert list(tmp_path.iterdir()) == []  # not even a temporary file


def test_finite_numbers_are_written_as_before():
    assert json_bytes({"x": 1.5, "y": -0.0, "z": 1e308}, indent=None) == b'{"x": 1.5, "y": -0.0, "z": 1e+308}\n'
