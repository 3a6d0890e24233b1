"""numba's cache fallback (gpucomp._shared.jit.import_jit): where numba can cache neither next to the
source nor in its user cache folder, compiled code goes to one stable, private folder per user that
every run reuses; a folder at that name that is a link, someone else's or writable by others is never
used. The kernels themselves: tests/render/test_cpu_kernel.py."""
from __future__ import annotations

import atexit
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest

from gpucomp._shared import jit

numba = pytest.importorskip("numba")

MODULE = "gpucomp_jit_cache_probe"
SOURCE = "import numba\n\n\n@numba.njit(cache=True)\ndef one():\n    return 1\n"


@pytest.fixture
def uncachable(tmp_path, monkeypatch):
    """A module of cached numba functions that numba cannot cache where it looks (its __pycache__
    and the user cache folder cannot be made: files stand in their way, which holds for root too);
    returns the folder that stands for TMPDIR."""
    src = tmp_path / "src"
    src.mkdir()
    (src / f"{MODULE}.py").write_text(SOURCE)
    (src / "__pycache__").write_text("")
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    yield tmp
    sys.modules.pop(MODULE, None)


def fallback(monkeypatch) -> tuple[object, Path]:
    """import_jit the probe as a new process would (numba's folder not set yet): the module and
    the folder numba was pointed at."""
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    sys.modules.pop(MODULE, None)
    module = jit.import_jit(MODULE)
    return module, Path(numba.config.CACHE_DIR)


def test_two_fallbacks_in_a_row_reuse_one_private_folder_and_make_no_other(uncachable, monkeypatch):
    first, folder = fallback(monkeypatch)
    assert folder == uncachable / f"gpucomp-numba-{os.getuid()}"
    assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700
    assert first.one() == 1 and any(p.suffix == ".nbi" for p in folder.rglob("*"))  # compiled into it
    second, again = fallback(monkeypatch)
    assert again == folder and sorted(uncachable.iterdir()) == [folder]
    assert second.one() == 1 and sum(second.one.stats.cache_hits.values()) >= 1  # loaded, not compiled again


def test_the_users_cache_folder_comes_before_the_temporary_one(uncachable, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "numba").write_text("")  # numba's own user cache folder cannot be made
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    _, folder = fallback(monkeypatch)
    assert folder == cache / "gpucomp" / "numba" and stat.S_IMODE(os.lstat(folder).st_mode) == 0o700
    assert list(uncachable.iterdir()) == []
    assert fallback(monkeypatch)[1] == folder


@pytest.mark.parametrize("what", ["a symbolic link", "someone else's folder", "a folder others may write to",
                                  "a file"])
def test_a_folder_at_that_name_that_is_not_privately_ours_is_not_used(uncachable, tmp_path, monkeypatch, what):
    if what == "someone else's folder":
        real = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: real + 1)  # our folders now belong to someone else
    planted = uncachable / f"gpucomp-numba-{os.getuid()}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if what == "a symbolic link":
        planted.symlink_to(elsewhere)
    elif what == "a file":
        planted.write_text("")
    else:
        planted.mkdir(mode=0o700)
        if what == "a folder others may write to":
            os.chmod(planted, 0o777)
    removed_at_exit = []
    real_register = atexit.register
    monkeypatch.setattr(atexit, "register", lambda *a, **k: removed_at_exit.append(a) or real_register(*a, **k))
    module, folder = fallback(monkeypatch)
    assert module.one() == 1  # the kernel still works: compiled in a folder of this run's own
    assert folder != planted and folder.parent == uncachable and folder.name.startswith("gpucomp-numba-")
    assert (shutil.rmtree, str(folder)) in removed_at_exit  # nothing of it stays once the process ends
    assert list(elsewhere.iterdir()) == []  # nothing written through the link
    if planted.is_dir() and not planted.is_symlink():
        assert list(planted.iterdir()) == []  # nor into a folder others could have planted code in
