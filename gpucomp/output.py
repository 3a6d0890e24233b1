"""Output files: everything appears atomically (written under a temporary name, then renamed)."""
from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".gpucomp-tmp-"


def create_temporary(folder: Path) -> tuple[int, str]:
    """A new temporary file in `folder`, with the umask's usual permissions (mkstemp's 0600
    would make every image private to the user who rendered it)."""
    while True:
        tmp = os.path.join(folder, f"{TMP_PREFIX}{secrets.token_hex(8)}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", fsync: bool = False, **kwargs):
    """A file to stream into; it appears under `path` only once the block ends without error,
    and a failure leaves nothing behind (not even the temporary file)."""
    path = Path(path)
    fd, tmp = create_temporary(path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data, fsync: bool = False) -> None:
    """Write `data` to `path` so the final name only ever shows complete content."""
    with atomic_open(path, "wb", fsync) as f:
        f.write(data)


def json_bytes(obj, indent: int | None = 2) -> bytes:
    """The exact bytes gpucomp writes for a JSON file (also used to check files on resume)."""
    return (json.dumps(obj, indent=indent, ensure_ascii=False) + "\n").encode()


def atomic_write_json(path: str | os.PathLike, obj, indent: int | None = 2, fsync: bool = False) -> None:
    atomic_write_bytes(path, json_bytes(obj, indent), fsync)


MANIFEST = "gpucomp.json"
LOCK = ".gpucomp.lock"
JOURNAL = "gpucomp.journal"  # finished items while a run is going (journal.py)
PROVENANCE = "provenance.json"  # finished items once it is done
# Files a run writes at the top of OUT besides images/ and metadata/ (cleared by --force).
RESULT_FILES = ("_metadata.json", "rarity.json", "rarity.csv", "rarity.txt", PROVENANCE, "summary.json",
                JOURNAL, MANIFEST)


def output_state(out: Path) -> str:
    """'new' (missing, empty, or only what a run killed before its manifest left), 'ours'
    (holds a gpucomp manifest), 'foreign' (anything else) or 'file'."""
    if not out.exists():
        return "new"
    if not out.is_dir():
        return "file"
    if (out / MANIFEST).exists():
        return "ours"
    for p in out.iterdir():
        if p.name == LOCK or p.name.startswith(TMP_PREFIX):
            continue
        if p.name in ("images", "metadata") and p.is_dir() and not any(p.iterdir()):
            continue
        return "foreign"
    return "new"


def check_output(out: Path, force: bool, resume: bool = False) -> str:
    """Refuse a path that is a file, a foreign non-empty folder unless forced, or --resume
    without a collection to resume. Writes nothing: called before the layers are read."""
    from .errors import OutputError

    state = output_state(out)
    if state == "file":
        raise OutputError(f"{out}: exists and is not a folder; choose another output path")
    if resume and state != "ours":
        raise OutputError(f"{out}: nothing to resume (no {MANIFEST} there); run without --resume to start a collection")
    if state == "foreign" and not force:
        raise OutputError(f"{out}: is not empty and is not a gpucomp output; choose an empty folder or pass --force to write into it")
    return state


def reset_output(out: Path) -> None:
    """--force: drop every item and result file of an earlier collection (nothing else)."""
    from .errors import OutputError

    try:
        for sub, ext in (("images", ".png"), ("metadata", ".json")):
            if (out / sub).is_dir():
                for p in (out / sub).iterdir():
                    if p.suffix == ext and p.stem.isdigit():
                        p.unlink()
        for name in RESULT_FILES:
            (out / name).unlink(missing_ok=True)
    except OSError as err:
        raise OutputError(f"{out}: cannot clear the earlier collection ({err.strerror or err})") from err


def write_collection_metadata(out: Path, numbers) -> None:
    """Stream OUT/metadata/<n>.json in order into OUT/_metadata.json (bounded memory)."""
    with atomic_open(out / "_metadata.json", "w", encoding="utf-8") as f:
        f.write("[")
        for i, n in enumerate(numbers):
            text = (out / "metadata" / f"{n}.json").read_text(encoding="utf-8").strip()
            f.write(("," if i else "") + "\n" + text)
        f.write("\n]\n")
