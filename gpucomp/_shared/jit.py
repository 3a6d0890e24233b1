"""numba, where it works: the optional JIT behind the fused CPU kernel (render/cpu_kernel.py)
and the fast PNG reader (png_unfilter.py). Without it (or with GPUCOMP_NO_JIT=1) gpucomp runs
the NumPy and Pillow paths, which give the same bytes."""
from __future__ import annotations

import atexit
import importlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

NO_JIT_ENV = "GPUCOMP_NO_JIT"  # set to 1: the NumPy and Pillow paths even where numba works
CACHE_NAME = "gpucomp-numba"  # the fallback cache folder: <user cache>/gpucomp/numba, else <tmp>/gpucomp-numba-<uid>


def disabled() -> bool:
    return os.environ.get(NO_JIT_ENV, "") not in ("", "0")


def import_jit(name: str):
    """Import a module of numba functions (raises when numba is missing or broken). numba caches
    compiled code next to the package, else in the user's cache folder; when neither is writable
    it refuses to define cached functions, so point it at a folder of ours (`cache_folder`)."""
    try:
        return importlib.import_module(name)
    except RuntimeError as err:
        if "cannot cache" not in str(err):
            raise
        import numba  # deferred: optional (numba missing or GPUCOMP_NO_JIT: NumPy compositing)

        numba.config.CACHE_DIR = str(cache_folder())
        return importlib.import_module(name)


def cache_candidates() -> list[Path]:
    """Where the fallback cache may live, best first: one stable folder per user, so every run
    reuses the code compiled before instead of leaving a new folder behind."""
    found = []
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is to be ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    if os.path.isabs(base):  # expanduser leaves "~" as it is where there is no home
        found.append(Path(base) / "gpucomp" / "numba")
    found.append(Path(tempfile.gettempdir()) / f"{CACHE_NAME}-{os.getuid()}")
    return found


def cache_folder() -> Path:
    """The first usable candidate, or else a private folder removed at exit (no disk cache: the
    kernels compile once per process, as numba requires some folder to define cached functions)."""
    for path in cache_candidates():
        if own_private_folder(path):
            return path
    path = tempfile.mkdtemp(prefix=f"{CACHE_NAME}-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return Path(path)


def own_private_folder(path: Path) -> bool:
    """Make `path` (mode 0o700) or take the one there, only if it is a real folder (not a link),
    ours and writable by no one else: numba loads pickled code from its cache, so a folder another
    user could write into (or swap for a link) would let them run code as us."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass  # checked below, whatever it is
    except OSError:
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022
            and os.access(path, os.W_OK | os.X_OK))
