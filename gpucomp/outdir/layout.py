"""The output folder's layout: the names of its own files, what state it is in, and clearing it
for `--force` (every file is opened through `_shared/files.py`)."""
from __future__ import annotations

import os
from pathlib import Path

from gpucomp._shared.files import TMP_PREFIX, atomic_open, is_real_folder, read_regular
from gpucomp.errors import OutputError
from gpucomp.metadata.tokens import MAX_ITEM_BYTES

MAX_METADATA_BYTES = MAX_ITEM_BYTES  # one item's metadata JSON (metadata/tokens.check_size holds it)


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
    if os.path.lexists(out / MANIFEST):  # even a link or a damaged one: read_manifest says what is wrong
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
    state = output_state(out)
    if state == "file":
        raise OutputError(f"{out}: exists and is not a folder; choose another output path")
    if resume and state != "ours":
        raise OutputError(f"{out}: nothing to resume (no {MANIFEST} there); run without --resume to start a collection")
    if state == "foreign" and not force:
        raise OutputError(f"{out}: is not empty and is not a gpucomp output; "
                          "choose an empty folder or pass --force to write into it")
    return state


def reset_output(out: Path) -> None:
    """--force: drop every item and result file of an earlier collection (nothing else)."""
    try:
        for sub, exts in (("images", IMAGE_SUFFIXES), ("metadata", (".json",))):
            folder = out / sub
            if os.path.islink(folder):
                folder.unlink()  # the link only: what it points to is not ours to delete
            elif folder.is_dir():
                _remove_items(folder, exts)
                if sub == "images":  # the sized copies' folders (images/<size name>/), real folders only
                    for p in folder.iterdir():
                        if is_real_folder(p):
                            _remove_items(p, exts)
        for name in RESULT_FILES:
            (out / name).unlink(missing_ok=True)
    except OSError as err:
        raise OutputError(f"{out}: cannot clear the earlier collection ({err.strerror or err})") from err


IMAGE_SUFFIXES = (".png", ".webp", ".jpg", ".avif")  # formats.EXTENSIONS: what --force clears


def _remove_items(folder: Path, suffixes: tuple[str, ...]) -> None:
    for p in folder.iterdir():
        if p.suffix in suffixes and p.stem.isascii() and p.stem.isdigit() and not p.is_dir():
            p.unlink()


def write_collection_metadata(out: Path, numbers) -> None:
    """Stream OUT/metadata/<n>.json in order into OUT/_metadata.json (bounded memory)."""
    with atomic_open(out / "_metadata.json", "w", encoding="utf-8") as f:
        f.write("[")
        for i, n in enumerate(numbers):
            text = read_regular(out / "metadata" / f"{n}.json", MAX_METADATA_BYTES).decode("utf-8").strip()
            f.write(("," if i else "") + "\n" + text)
        f.write("\n]\n")
