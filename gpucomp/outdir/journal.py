"""Which items are finished: an append-only journal while running, provenance.json after.

A journal line `<number> <sha256 of the PNG>` is appended only after the item's image and
metadata have been renamed into place, and flushed at once. A kill at any instant loses at
most a line being written (a torn last line is ignored), and every record is checked
against the file's real hash before an item counts as finished, so the journal never has
to be trusted blindly.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from pathlib import Path

import numpy as np

from gpucomp._shared.files import atomic_open, open_in_place, open_regular, read_regular
from gpucomp.outdir.layout import JOURNAL, PROVENANCE

_EMPTY = b"\0" * 32
MAX_RECORDS_BYTES = 1 << 30  # provenance.json: ~100 bytes an item, so about 10M items


class Journal:
    """Thread-safe appender; `record` is called from encode workers."""

    def __init__(self, path: Path, fresh: bool):
        self.path = Path(path)
        self._lock = threading.Lock()
        fd = open_in_place(self.path, os.O_WRONLY | os.O_CREAT | (0 if fresh else os.O_APPEND))
        if fresh:
            os.ftruncate(fd, 0)
        self._f = os.fdopen(fd, "w", encoding="ascii")

    def record(self, number: int, sha256: str) -> None:
        with self._lock:
            self._f.write(f"{number} {sha256}\n")
            self._f.flush()  # into the kernel: survives a kill of this process

    def close(self) -> None:
        with self._lock:
            try:
                self._f.close()
            except OSError:
                pass  # a line lost to a full disk: its item is re-verified, or re-rendered, on resume


def unfinished(out: Path) -> bool:
    """True while a run's work is not complete: a finished run writes provenance.json, then
    removes the journal."""
    return (out / JOURNAL).exists() or not (out / PROVENANCE).exists()


def load_records(out: Path, start: int, n: int) -> np.ndarray:
    """(n, 32) uint8 SHA-256 per item number start..start+n-1; all-zero rows are unknown.
    Reads provenance.json (a finished collection) then the journal (later runs win)."""
    shas = np.zeros((n, 32), np.uint8)

    def put(number, hexdigest) -> None:
        if not (isinstance(number, int) and isinstance(hexdigest, str) and len(hexdigest) == 64):
            return  # a damaged entry: that item is simply re-verified against nothing, i.e. re-rendered
        i = number - start
        if 0 <= i < n:
            try:
                shas[i] = np.frombuffer(bytes.fromhex(hexdigest), np.uint8)
            except ValueError:
                pass

    try:
        prov = json.loads(read_regular(out / PROVENANCE, MAX_RECORDS_BYTES))
        for item in prov.get("items", []):
            put(item.get("number"), item.get("sha256"))
    except (OSError, ValueError, AttributeError, TypeError):
        pass  # missing or damaged: the journal and the hashes of the files decide
    try:
        with open_regular(out / JOURNAL) as raw, io.TextIOWrapper(raw, encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[0].isdecimal() and line.endswith("\n"):
                    put(int(parts[0]), parts[1])
    except OSError:
        pass
    return shas


def rewrite_journal(out: Path, numbers, shas: np.ndarray) -> None:
    """Replace the journal by the known records of `shas` and drop provenance.json, atomically
    enough: after a crash between the two steps every record left is still true."""
    with atomic_open(out / JOURNAL, "w", encoding="ascii") as f:
        for number, row in zip(numbers, shas, strict=True):
            if is_known(row):
                f.write(f"{number} {row.tobytes().hex()}\n")
    (out / PROVENANCE).unlink(missing_ok=True)


def file_sha256(path: Path) -> bytes | None:
    """SHA-256 of a finished image; None if it is missing, unreadable, a link, a FIFO or a device
    (such an item is rendered again, and the rename replaces whatever stood there)."""
    try:
        with open_regular(path) as f:
            return hashlib.file_digest(f, "sha256").digest()
    except OSError:
        return None


def write_provenance(out: Path, numbers, shas: np.ndarray) -> str:
    """OUT/provenance.json: per-image SHA-256 in item order and the collection hash, which is
    SHA-256 over the concatenated lowercase hex digests (the scheme NFT projects publish).
    Streams the item list; returns the collection hash."""
    total = hashlib.sha256()
    with atomic_open(out / PROVENANCE, "w", encoding="ascii") as f:
        f.write('{\n  "algorithm": "sha256",\n')
        f.write('  "method": "sha256 of the concatenated hex sha256 digests of the images in item order",\n')
        f.write('  "items": [')
        for i, number in enumerate(numbers):
            hexd = shas[i].tobytes().hex()
            total.update(hexd.encode())
            f.write(("," if i else "") + f'\n    {{"number": {number}, "sha256": "{hexd}"}}')
        f.write(f'\n  ],\n  "count": {len(shas)},\n  "provenance_hash": "{total.hexdigest()}"\n}}\n')
    return total.hexdigest()


def is_known(row: np.ndarray) -> bool:
    return row.tobytes() != _EMPTY
