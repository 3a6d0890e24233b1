"""One run per output folder: an exclusive `flock` on OUT/.gpucomp.lock.

The kernel drops a flock when its process dies, however it dies, so a lock file left by a
killed run is recognised as stale simply because nobody holds it any more.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from gpucomp._shared.files import NotRegularFile, open_in_place
from gpucomp.errors import OutputError
from gpucomp.outdir.layout import LOCK


class OutputLock:
    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
        self.fd: int | None = None
        self.stale: dict | None = None  # what a killed earlier run left in the lock file

    def acquire(self) -> "OutputLock":
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read(fd)
                os.close(fd)
                who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
                raise OutputError(
                    f"{self.path.parent}: another gpucomp run is writing to this folder ({who}); "
                    f"wait for it to finish or stop it, or choose another output folder") from None
            # The holder may have unlinked the file between our open and flock: then we locked a
            # dead inode and must retry on the current one.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read(fd)
        if previous:
            self.stale = previous
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        except OSError:
            pass  # a full disk: the flock is what excludes other runs; who holds it is only a courtesy
        self.fd = fd
        return self

    def _open(self) -> int:
        try:
            return open_in_place(self.path, os.O_RDWR | os.O_CREAT)
        except NotRegularFile as err:
            raise OutputError(f"{self.path}: {err.strerror}; it is gpucomp's lock file and must be a plain file") from None
        except OSError as err:
            raise OutputError(f"{self.path}: cannot create the lock file ({err.strerror or err}); check that the "
                              f"output folder is writable and the disk is not full") from err

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # unlink while still holding it: see the inode check above
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> dict:
    """What an earlier run wrote into the lock file (pid, host, start), {} for anything else: the
    lock file is only a note, so a damaged or foreign one (a JSON list, a string) says nothing."""
    try:
        data = os.pread(fd, 4096, 0)
        value = json.loads(data) if data.strip() else {}
    except (OSError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
