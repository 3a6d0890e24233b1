"""gpucomp.outdir.writeback: each output file starts going to disk as soon as it is written, and once
more than a window of bytes is in flight the oldest is waited for and dropped from the page cache.
What a user sees: the same files, no file descriptors left behind, and a disk error named by file."""
import ctypes
import errno
import os
import sys

import pytest

import gpucomp
import gpucomp.outdir.writeback as wb
from gpucomp._shared.files import atomic_write_bytes
from gpucomp.errors import OutputError

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")


def open_fds(folder) -> int:
    """This process's descriptors on files in `folder` (other threads' sockets and files do not count)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder))
        except OSError:
            pass
    return n


@linux_only
def test_files_are_intact_and_no_descriptor_outlives_close(tmp_path):
    before = open_fds(tmp_path)
    back = wb.Writeback(window=3 << 10, min_bytes=0)
    assert back.enabled
    blobs = {tmp_path / f"{i}.png": os.urandom(1000 + i) for i in range(10)}
    for path, data in blobs.items():
        atomic_write_bytes(path, data, writeback=back)
    assert open_fds(tmp_path) - before <= 4  # the window holds ~3 KB: a few files, not ten
    back.close()
    assert open_fds(tmp_path) == before
    assert all(p.read_bytes() == d for p, d in blobs.items())


@linux_only
def test_a_zero_window_finishes_each_file_at_once_and_small_files_are_left_alone(tmp_path):
    before = open_fds(tmp_path)
    back = wb.Writeback(window=0, min_bytes=0)
    atomic_write_bytes(tmp_path / "a.png", b"x" * 5000, writeback=back)
    assert open_fds(tmp_path) == before
    small = wb.Writeback(min_bytes=1 << 20)
    atomic_write_bytes(tmp_path / "b.json", b"{}", writeback=small)
    assert open_fds(tmp_path) == before
    back.close(), small.close()


def test_keep_in_the_environment_means_plain_writes(monkeypatch, tmp_path):
    monkeypatch.setenv(wb.KEEP_ENV, "keep")
    back = wb.Writeback(min_bytes=0)
    assert not back.enabled
    before = open_fds(tmp_path) if sys.platform.startswith("linux") else 0
    atomic_write_bytes(tmp_path / "a.png", b"x" * 5000, writeback=back)
    assert (tmp_path / "a.png").read_bytes() == b"x" * 5000
    if sys.platform.startswith("linux"):
        assert open_fds(tmp_path) == before


@linux_only
def test_an_add_after_close_keeps_nothing_open(tmp_path):
    before = open_fds(tmp_path)
    back = wb.Writeback(min_bytes=0)
    back.close()
    atomic_write_bytes(tmp_path / "late.png", b"x" * 5000, writeback=back)  # a worker after its run gave up
    assert open_fds(tmp_path) == before


def failing_disk(bad_name: str):
    """sync_file_range that fails with EIO when waiting for the file called `bad_name`."""
    real = wb._SYNC_FILE_RANGE

    def fake(fd, offset, nbytes, flags):
        path = os.readlink(f"/proc/self/fd/{fd}")  # waits come after the rename: the final name
        if flags & wb._WAIT_AFTER and os.path.basename(path) == bad_name:
            ctypes.set_errno(errno.EIO)
            return -1
        return real(fd, offset, nbytes, flags)
    return fake


@linux_only
def test_a_disk_error_names_the_file_even_when_found_later(monkeypatch, tmp_path):
    monkeypatch.setattr(wb, "_SYNC_FILE_RANGE", failing_disk("3.png"))
    back = wb.Writeback(window=2500, min_bytes=0)
    before = open_fds(tmp_path)
    with pytest.raises(wb.WritebackError) as info:
        for i in range(8):
            atomic_write_bytes(tmp_path / f"{i}.png", b"x" * 1000, writeback=back)
    assert info.value.filename == str(tmp_path / "3.png") and info.value.errno == errno.EIO
    back.close(raise_error=False)
    assert open_fds(tmp_path) == before  # the failed file's descriptor is closed too


@linux_only
def test_a_run_whose_disk_fails_says_which_image_and_resumes(demo_layers, tmp_path, monkeypatch):
    monkeypatch.setattr(wb, "MIN_BYTES", 0)  # the demo's images are small: stream them all
    monkeypatch.setattr(wb, "_SYNC_FILE_RANGE", failing_disk("7.png"))
    out = tmp_path / "out"
    with pytest.raises(OutputError) as info:
        gpucomp.run(demo_layers, out, size=40, seed=3, workers=2)
    msg = str(info.value)
    assert f"{out / 'images' / '7.png'}: input/output error (a failing disk" in msg and "re-run the same command" in msg, msg
    monkeypatch.setattr(wb, "_SYNC_FILE_RANGE", wb._load_sync_file_range())
    summary = gpucomp.run(demo_layers, out, size=40, seed=3, workers=2)
    assert summary["items"] == 40 and summary["resumed_from"] >= 1


def test_info_says_how_files_are_written(monkeypatch, capsys):
    from gpucomp.cli import main

    monkeypatch.setenv(wb.KEEP_ENV, "keep")
    assert main(["info"]) == 0
    assert "output files: plain writes" in capsys.readouterr().out
    monkeypatch.delenv(wb.KEEP_ENV)
    assert main(["info"]) == 0
    want = "streamed to disk" if wb._SYNC_FILE_RANGE is not None else "no sync_file_range"
    assert want in capsys.readouterr().out


@linux_only
def test_many_small_files_hold_a_bounded_number_of_descriptors(tmp_path, monkeypatch):
    monkeypatch.setattr(wb, "MAX_FILES", 5)
    before = open_fds(tmp_path)
    back = wb.Writeback(min_bytes=0)  # the byte window (64 MiB) alone would keep all 40 open
    for i in range(40):
        atomic_write_bytes(tmp_path / f"{i}.png", b"x" * 100, writeback=back)
        assert open_fds(tmp_path) - before <= 5
    back.close()
    assert open_fds(tmp_path) == before


@linux_only
def test_a_filesystem_without_writeback_gets_plain_writes(demo_layers, tmp_path, monkeypatch):
    def unsupported(fd, offset, nbytes, flags):
        ctypes.set_errno(errno.EINVAL)
        return -1
    monkeypatch.setattr(wb, "MIN_BYTES", 0)
    monkeypatch.setattr(wb, "_SYNC_FILE_RANGE", unsupported)
    before = open_fds(tmp_path)
    back = wb.Writeback()
    atomic_write_bytes(tmp_path / "a.png", b"x" * 5000, writeback=back)
    assert not back.enabled and open_fds(tmp_path) == before
    back.close()
    summary = gpucomp.run(demo_layers, tmp_path / "out", size=20, seed=3, workers=2)
    assert summary["rendered"] == 20
