"""A disk that fails in the middle of a write, shared by the tests of what a failed write leaves.

`fail_writes(monkeypatch, code, when)` makes every atomic write (gpucomp._shared.files.atomic_open,
which atomic_write_bytes and atomic_write_json go through) to a path that `when` accepts write half
of its first piece and then raise OSError(code): what a full disk (ENOSPC), a quota (EDQUOT) or a
failing device (EIO) does. A read-only file system (EROFS) refuses the temporary file's creation
instead. The temporary file is real, so its clean-up is what is tested."""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path

import gpucomp._shared.files as files


class HalfWrite:
    """A file object whose first write() puts half the bytes on disk and then fails."""

    def __init__(self, f, code: int):
        self._f, self._code = f, code

    def write(self, data):
        self._f.write(data[:len(data) // 2])
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name):
        return getattr(self._f, name)


def fail_writes(monkeypatch, code: int = errno.ENOSPC, when=lambda path: True) -> list[Path]:
    """Returns the list of paths whose write failed (filled in as they fail)."""
    real = files.atomic_open
    failed: list[Path] = []

    @contextmanager
    def atomic_open(path, *args, **kwargs):
        if not when(Path(path)):
            with real(path, *args, **kwargs) as f:
                yield f
            return
        failed.append(Path(path))
        if code == errno.EROFS:
            raise OSError(code, os.strerror(code), os.path.join(os.path.dirname(path), files.TMP_PREFIX + "x"))
        with real(path, *args, **kwargs) as f:
            yield HalfWrite(f, code)

    monkeypatch.setattr(files, "atomic_open", atomic_open)
    return failed


def temporaries(folder: Path) -> list[Path]:
    """Files a writer left under temporary names anywhere below `folder`."""
    return sorted(folder.rglob(files.TMP_PREFIX + "*"))
