"""Streamed writeback: the output files of a run go to disk as the run goes, and leave the page cache.

A collection is written once and not read back during the run, yet every byte written lands in
the page cache first and stays there: a 1,000-item run at 2048² leaves 3.5 GB of cache (1M items:
as much as the machine has), dirty until the kernel flushes it in bulk, and each new file needs
fresh memory. Where fresh memory is expensive (a virtual machine whose free pages are handed back
to the host: the 2-core box paid 9.5 ms per 4.2 MB file against 1.8 ms streamed, see
benchmarks/NOTES.md) that was a fifth of an item's CPU time. So, as `dd oflag=nocache` and
rsync's drop-cache patch do, each image starts its writeback as soon as it is written
(`sync_file_range(WRITE)`, asynchronous), and once more than `window` bytes are in flight the oldest
file is waited for and dropped from the cache (`posix_fadvise(DONTNEED)`): the pages come back for
the next file while still warm, dirty memory stays bounded, and a disk error surfaces during the
run instead of being lost in a later flush.

Linux only (sync_file_range); elsewhere, on a filesystem that refuses it (EINVAL and the like), or
with `GPUCOMP_PAGE_CACHE=keep`, writes stay plain.
"""
from __future__ import annotations

import collections
import ctypes
import ctypes.util
import errno
import os
import threading

KEEP_ENV = "GPUCOMP_PAGE_CACHE"  # 'keep': leave output files in the page cache (plain writes)
WINDOW = 64 << 20  # bytes written but not yet known to be on disk, per run
MIN_BYTES = 256 << 10  # smaller files (metadata) are not worth a system call each
MAX_FILES = 64  # files in flight at most (each holds a file descriptor)

_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4  # linux/fs.h SYNC_FILE_RANGE_*


def _load_sync_file_range():
    """libc's sync_file_range, or None where there is none (not Linux, no libc found)."""
    if not hasattr(os, "posix_fadvise") or not os.uname().sysname == "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _load_sync_file_range()


def available() -> bool:
    """Whether streamed writeback is in use on this machine."""
    return _SYNC_FILE_RANGE is not None and os.environ.get(KEEP_ENV, "").lower() != "keep"


def describe() -> str:
    """One line for `gpucomp info`: how output files are written on this machine."""
    if available():
        return (f"streamed to disk as written, out of the page cache ({WINDOW >> 20} MiB in flight; "
                f"{KEEP_ENV}=keep for plain writes)")
    if _SYNC_FILE_RANGE is None:
        return "plain writes (no sync_file_range on this system)"
    return f"plain writes ({KEEP_ENV}=keep)"


class WritebackError(OSError):
    """The disk reported an error writing a file back (the file's name is in `filename`)."""


class Writeback:
    """The files of one run whose writeback has started; thread-safe (the encode workers share it).
    `add` right after a file's last write (before it is closed), `close` when the run ends."""

    def __init__(self, window: int | None = None, min_bytes: int | None = None):
        self.window = WINDOW if window is None else window
        self.min_bytes = MIN_BYTES if min_bytes is None else min_bytes
        self.enabled = available()
        self._files: collections.deque[tuple[int, int, str]] = collections.deque()  # (fd, bytes, path)
        self._bytes = 0
        self._closed = False
        self._lock = threading.Lock()

    def add(self, fd: int, size: int, path: str) -> None:
        """Start writing `fd` back (asynchronously) and keep a duplicate of it, then finish the
        oldest files while more than `window` bytes are in flight. Raises WritebackError for a
        file the disk failed to write (this one or an older one: see its `filename`)."""
        if not self.enabled or size < self.min_bytes:
            return
        if not _call(fd, _WRITE, path):  # this filesystem has no writeback to start: plain writes
            self.enabled = False
            return
        with self._lock:
            if self._closed:  # a worker still writing after its run gave up on it
                return
            self._files.append((os.dup(fd), size, path))
            self._bytes += size
        while (old := self._pop(self.window, MAX_FILES)) is not None:
            _finish(old[0], old[2])

    def close(self, raise_error: bool = True) -> None:
        """Wait for every file still in flight and drop it from the cache; later `add`s do nothing.
        The first disk error is raised once all are closed; with `raise_error` false (the run
        already failed) nothing is waited for: the kernel writes the files back on its own."""
        first: OSError | None = None
        with self._lock:
            self._closed = True
        while (old := self._pop(0, 0)) is not None:
            if not raise_error:
                os.close(old[0])
                continue
            try:
                _finish(old[0], old[2])
            except OSError as err:
                first = first or err
        if first is not None:
            raise first

    def __enter__(self) -> "Writeback":
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close(raise_error=kind is None)  # after another error, that one is the one to see

    def _pop(self, keep: int, files: int) -> tuple[int, int, str] | None:
        """The oldest file in flight while more than `keep` bytes or `files` files are, else None."""
        with self._lock:
            if not self._files or (self._bytes <= keep and len(self._files) <= files):
                return None
            old = self._files.popleft()
            self._bytes -= old[1]
            return old


def _finish(fd: int, path: str) -> None:
    """Wait until `fd`'s data is on disk, drop its pages from the cache, close it. Only the wait
    can fail the run: the drop is advice, and `fd` is a duplicate (the file's own close, which
    reports write errors, happened in atomic_open)."""
    try:
        _call(fd, _WAIT_BEFORE | _WRITE | _WAIT_AFTER, path)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


_UNSUPPORTED = (errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.ESPIPE)


def _call(fd: int, flags: int, path: str) -> bool:
    """sync_file_range on `fd`; False where the file or its filesystem does not support it."""
    if _SYNC_FILE_RANGE(fd, 0, 0, flags) == 0:
        return True
    err = ctypes.get_errno()
    if err == 0 or err in _UNSUPPORTED:
        return False
    raise WritebackError(err, f"{os.strerror(err)} (while writing it to disk)", path)
