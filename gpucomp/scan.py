"""Walk a layers folder: which files are traits, under which names and weights.

Reads folder listings and file types only, never file contents (layers.py reads and decodes the
PNGs). Every trait it returns lies inside the layers folder. A link that leaves it, loops, or reaches
a folder a second time is a problem naming the link; so are special files (pipes, sockets, devices)
and weights that stop being finite, positive numbers once nested folders scale them. The walk stops
after MAX_ENTRIES entries or MAX_NESTING levels of sub-folders, so a wrong folder (`gpucomp validate
/`) fails within seconds, saying so, instead of walking the whole disk.
"""
from __future__ import annotations

import errno
import math
import os
import stat
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .errors import LayerError
from .naming import is_plain_name, natural_key, parse_trait_name, require_utf8

IMAGE_SUFFIXES = (".png",)
JUNK_FOLDERS = {"__MACOSX"}  # written by macOS zip: resource forks, never art
MAX_ENTRIES = 100_000  # files and folders listed below one layers folder; real collections hold a few thousand
MAX_FOLDERS = 10_000  # sub-folders below one layers folder (each is listed: slower than a file)
MAX_NESTING = 16  # weighted sub-folders inside sub-folders (nftchef layouts use two or three)


class ScanLimit(LayerError):
    """The walk passed MAX_ENTRIES: the whole load stops (this is not a layers folder), not one layer."""


@dataclass(frozen=True)
class Found:
    """A trait file before decoding: its path, its name in the metadata and its weight."""

    path: Path
    name: str
    weight: float


def why(err: OSError) -> str:
    """An OSError in words for a message: a link loop is named as one."""
    if err.errno == errno.ELOOP:
        return "a link loop: the link points, directly or through others, back to itself"
    return err.strerror or str(err)


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a file")):
        if test(mode):
            return what
    return "not a plain file"


def _is_dir(entry: os.DirEntry) -> bool:
    """Follows links; a broken link, a link loop or an entry that cannot be stat'ed is not a folder."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _list(d: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(d) as it:
            return list(it)
    except OSError as err:
        raise LayerError(f"{d}: cannot list the folder ({why(err)}); check that you may read it") from None


def list_layer_folders(root: Path) -> list[str]:
    """Every sub-folder that is a layer, in natural order. Two whose names differ only in Unicode form
    (`Café` typed, `Cafe\u0301` copied from a Mac) are an error: they would be one name in the
    metadata. Folders that only share a display name (`01-Hat`, `02-Hat`) are two layers called `Hat`."""
    entries = _list(root)
    if len(entries) > MAX_ENTRIES:
        raise LayerError(f"{root}: {len(entries)} entries is not a layers folder; pass the folder that holds one "
                         f"sub-folder per layer")
    folders = sorted((e.name for e in entries
                      if not e.name.startswith(".") and e.name not in JUNK_FOLDERS and _is_dir(e)), key=natural_key)
    spelt: dict[str, str] = {}
    for folder in folders:
        same = spelt.setdefault(unicodedata.normalize("NFC", folder), folder)
        if same != folder:
            raise LayerError(f"{root}: layer folders {same!r} and {folder!r} have the same name in different Unicode "
                             f"forms ({ascii(same)} and {ascii(folder)}: composed and decomposed accents); "
                             f"merge them or rename one")
    return folders


class Walk:
    """One load's walk of a layers folder: per-file problems are collected in `problems`, and
    entries are counted across all its layers."""

    def __init__(self, root: Path, delimiter: str, problems: list[str]):
        self.root, self.delimiter, self.problems = root, delimiter, problems
        self.real_root = Path(os.path.realpath(root))
        self.entries = self.folders = 0

    def _outside(self, p: Path) -> Path | None:
        """Where p really is, when that is outside the layers folder; None when it is inside."""
        real = Path(os.path.realpath(p))
        return None if real.is_relative_to(self.real_root) else real

    def layer(self, folder: str) -> list[Found]:
        """A layer folder's traits in natural order. Problems with single files go to `problems`;
        a problem with the folder itself is raised."""
        d = self._layer_dir(folder)
        before = len(self.problems)
        files, dirs = self.listing(d)
        if dirs:  # weighted sub-folders: weights become probabilities scaled to the top level's sum
            seen = {_identity(self.root): self.root, _identity(d): d}  # a link back up is a loop
            entries = self._weighted(d, files, dirs, None, (), seen)
        else:
            entries = [(p, "", None) for p in files]
        if not entries:
            if len(self.problems) > before:  # e.g. one sub-folder with a bad weight: that is the news
                return []
            raise LayerError(f"{d}: empty layer folder, no .png traits; add at least one trait image or drop the layer")
        return self._traits(d, folder, entries)

    def _layer_dir(self, folder: str) -> Path:
        root = self.root
        if not is_plain_name(folder):
            raise LayerError(f"{root / folder}: layer {folder!r} is not a plain folder name; name a sub-folder of "
                             f"{root} (no '/', '\\', '..' or absolute path)")
        d = self._find(folder)
        try:
            mode = os.stat(d).st_mode
        except FileNotFoundError:
            raise LayerError(f"{d}: layer folder named in the layer order does not exist") from None
        except OSError as err:
            raise LayerError(f"{d}: cannot open the layer folder ({why(err)})") from None
        if not stat.S_ISDIR(mode):
            raise LayerError(f"{d}: a layer must be a folder, this is {_kind(mode)}; name a sub-folder of {root}")
        outside = self._outside(d)
        if outside:
            raise LayerError(f"{d}: links outside the layers folder ({outside}); copy the folder in instead")
        if _identity(d) == _identity(self.root):
            raise LayerError(f"{d}: links to the layers folder itself (a loop); remove the link")
        require_utf8(folder, str(d))
        return d

    def _find(self, folder: str) -> Path:
        """root/folder; a name typed in another Unicode form (`Café` in a config, `Cafe\u0301` written
        by a Mac) finds the folder when exactly one matches."""
        d = self.root / folder
        if os.path.lexists(d):
            return d
        want = unicodedata.normalize("NFC", folder)
        names = [e.name for e in _list(self.root) if unicodedata.normalize("NFC", e.name) == want]
        return self.root / names[0] if len(names) == 1 else d

    def listing(self, d: Path) -> tuple[list[Path], list[Path]]:
        """(trait files, sub-folders) of d, each in natural order of their names. Hidden names
        (`.DS_Store`, `._Hat.png`) and junk folders are skipped. A file is any `.png` name that is
        not a folder: its type is checked later, so that a pipe or a broken link is named, not skipped."""
        entries = _list(d)
        self.entries += len(entries)
        self.folders += 1
        if self.entries > MAX_ENTRIES or self.folders > MAX_FOLDERS:
            raise ScanLimit(f"{self.root}: more than {MAX_ENTRIES} files or {MAX_FOLDERS} folders below it "
                            f"(stopped in {d}); this is not a layers folder: pass the folder that holds one "
                            f"sub-folder per layer")
        files, dirs = [], []
        for e in entries:
            if e.name.startswith("."):
                continue
            p = Path(e.path)
            if _is_dir(e):
                if e.name not in JUNK_FOLDERS:
                    dirs.append(p)
            elif p.suffix.lower() in IMAGE_SUFFIXES:
                files.append(p)
        return sorted(files, key=_natural), sorted(dirs, key=_natural)

    def _weighted(self, d: Path, files: list[Path], dirs: list[Path], share: float | None,
                  chain: tuple[Path, ...], seen: dict) -> list[tuple[Path, str, float]]:
        """nftchef-style weighted sub-folders: a sub-folder `Long#20/` competes with its siblings
        (files and folders) by weight, then one of its own entries is picked the same way. Returns
        (file, sub-folder path, probability * share) for every PNG below d; at the top, `share` is
        the sum of the top level's weights. `chain` is the sub-folders above d, `seen` every folder
        read in this layer (by device and inode)."""
        entries = []
        for p, is_folder in [*((f, False) for f in files), *((f, True) for f in dirs)]:
            try:
                label, w = parse_trait_name(p.name if is_folder else p.stem, self.delimiter, str(p))
            except LayerError as err:
                self.problems.append(str(err))
                continue
            entries.append((p, label, w, is_folder))
        total = sum(w for _, _, w, _ in entries)
        share = total if share is None else share
        out = []
        for p, label, w, is_folder in entries:
            part = share * w / total if total > 0 else 0.0  # this order of operations is in every manifest
            if not self._scaled_ok(p, w, share, part, chain):
                continue
            if not is_folder:
                out.append((p, "", part))
                continue
            inner = self._sub_folder(p, part, (*chain, p), seen)
            out += [(f, f"{label}/{sub}" if sub else label, pw) for f, sub, pw in inner]
        return out

    def _sub_folder(self, p: Path, share: float, chain: tuple[Path, ...], seen: dict) -> list[tuple[Path, str, float]]:
        problem = None
        if len(chain) > MAX_NESTING:
            problem = f"{p}: weighted sub-folders nested more than {MAX_NESTING} deep; flatten the layer"
        elif outside := self._outside(p):
            problem = f"{p}: links outside the layers folder ({outside}); copy the folder in instead"
        elif (ident := _identity(p)) in seen:
            problem = (f"{p}: leads to {seen[ident]}, a folder already read in this layer (a link loop, or a second "
                       f"link to one folder); remove the link")
        if problem:
            self.problems.append(problem)
            return []
        seen[ident] = p
        try:
            files, dirs = self.listing(p)
        except ScanLimit:
            raise
        except LayerError as err:
            self.problems.append(str(err))
            return []
        if not files and not dirs:
            self.problems.append(f"{p}: empty sub-folder, no .png traits; add traits or remove it")
            return []
        return self._weighted(p, files, dirs, share, chain, seen)

    def _scaled_ok(self, p: Path, w: float, share: float, part: float, chain: tuple[Path, ...]) -> bool:
        """A weight scaled through nested folders must stay a finite number, and above 0 unless it or
        a folder above it is 0."""
        if math.isfinite(part) and (w == 0 or share == 0 or part >= sys.float_info.min):
            return True
        size = "large" if not math.isfinite(part) else "small"
        above = f" and the weights of the folders above it ({', '.join(c.name for c in chain)})" if chain else ""
        self.problems.append(f"{p}: weight {w:g} is too {size}: multiplied with the sum of its siblings' "
                             f"weights{above} it becomes {part!r}; use plainer numbers (a weight only matters "
                             f"relative to its siblings')")
        return False

    def _traits(self, d: Path, folder: str, entries: list[tuple[Path, str, float | None]]) -> list[Found]:
        nested = any(w is not None for _, _, w in entries)
        names = Counter(parse_trait_name(p.stem, self.delimiter, str(p))[0] for p, _, _ in entries) if nested else None
        seen: dict[str, Path] = {}
        found: list[Found] = []
        clean = True
        for p, sub, nested_weight in entries:
            try:
                name, weight = self._check_file(p)
                if nested_weight is not None:
                    weight = nested_weight
                    if names[name] > 1 and sub:  # the same file name in two sub-folders: say which
                        name = f"{sub}/{name}"
                if name in seen:
                    raise LayerError(f"{p}: trait name {name!r} is used twice in layer {folder!r} "
                                     f"(also {seen[name].name}); rename one")
            except LayerError as err:
                self.problems.append(str(err))
                clean = False
                continue
            seen[name] = p
            found.append(Found(p, name, weight))
        if clean:  # only when every name parsed: a fixed bad name may be the weight that is missing
            self._check_weights(d, found)
        return found

    def _check_file(self, p: Path) -> tuple[str, float]:
        outside = self._outside(p)
        if outside:
            raise LayerError(f"{p}: links outside the layers folder ({outside}); copy the file in instead")
        name, weight = parse_trait_name(p.stem, self.delimiter, str(p))
        try:
            mode = os.stat(p).st_mode  # stat, unlike open, never blocks on a pipe or a device
        except OSError as err:
            raise LayerError(f"{p}: cannot read ({why(err)}); replace it with a PNG file") from None
        if not stat.S_ISREG(mode):
            raise LayerError(f"{p}: not a regular file ({_kind(mode)}); replace it with a PNG file")
        return name, weight

    def _check_weights(self, d: Path, found: list[Found]) -> None:
        """At least one weight above 0, a finite sum, and no positive weight whose share of the sum
        rounds to 0 (the planner would count the trait but could never pick it)."""
        if not any(t.weight > 0 for t in found):
            raise LayerError(f"{d}: every trait has weight 0, so nothing can be picked; "
                             f"give at least one a weight above 0")
        total = sum(t.weight for t in found)
        if not math.isfinite(total):
            self.problems.append(f"{d}: the trait weights add up to more than a number can hold; use smaller weights")
            return
        top = max(found, key=lambda t: t.weight)
        self.problems += [f"{t.path}: weight {t.weight:g} is too small next to {top.path.name} (weight {top.weight:g}): "
                          f"its chance rounds to 0; use weights closer together, or 0 to leave the trait out"
                          for t in found if t.weight > 0 and t.weight / total < sys.float_info.min]


def _natural(p: Path) -> tuple:
    return natural_key(p.name)


def _identity(d: Path) -> tuple[int, int] | Path:
    """A folder's (device, inode), so that two paths to one folder are recognised; the path itself
    when it cannot be stat'ed (listing it then fails with a clear message)."""
    try:
        st = os.stat(d)
    except OSError:
        return d
    return st.st_dev, st.st_ino
