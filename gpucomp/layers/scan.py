"""Walk a layers folder: which files are traits, under which names and weights.

Reads folder listings and file types only, never file contents (layers/layerset.py reads and decodes the
PNGs). Every trait it returns lies inside the layers folder. A link that leaves it, loops, or reaches
a folder a second time is a problem naming the link; so are special files (pipes, sockets, devices)
and weights that stop being finite, positive numbers once nested folders scale them. The walk stops
after MAX_ENTRIES entries or MAX_NESTING levels of sub-folders, so a wrong folder (`gpucomp validate
/`) fails within seconds, saying so, instead of walking the whole disk.
"""
from __future__ import annotations

import difflib
import errno
import math
import os
import re
import stat
import sys
import unicodedata
from collections import Counter
from pathlib import Path

from gpucomp.errors import LayerError
from gpucomp.layers.found import (
    EdgeFound,
    Found,
    Leaf,
    Part,
    Where,
    drawn_file,
    merge_engine2,
    nftchef_order,
    plain_drawn,
)
from gpucomp.layers.frames import MAX_TRAIT_FRAMES, frame_folder_names
from gpucomp.layers.naming import (
    DEFAULT_WEIGHT,
    EDGE_CASES_FOLDER,
    EntryName,
    is_plain_name,
    layer_z,
    natural_key,
    offset_of,
    parse_edge_case,
    parse_entry,
    require_utf8,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
JUNK_FOLDERS = {"__MACOSX"}  # written by macOS zip: resource forks, never art
JUNK_FILES = {"thumbs.db", "ehthumbs.db", "desktop.ini"}  # written by Windows Explorer: never art, not warned about
MAX_ENTRIES = 100_000  # files and folders listed below one layers folder; real collections hold a few thousand
MAX_FOLDERS = 10_000  # sub-folders below one layers folder (each is listed: slower than a file)
MAX_NESTING = 16  # weighted sub-folders inside sub-folders (nftchef layouts use two or three)


class ScanLimit(LayerError):
    """The walk passed MAX_ENTRIES: the whole load stops (this is not a layers folder), not one layer."""


def _split_label(label: str) -> tuple[str, str]:
    """`Long/Inner` -> (`Inner`, `Long`): a folder trait's name and the label of the folders above."""
    sub, _, name = label.rpartition("/")
    return name, sub


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

    def __init__(self, root: Path, delimiter: str, problems: list[str], empty_name: str = "NONE",
                 blend_modes: tuple[str, ...] = (), frames: bool = False):
        self.root, self.delimiter, self.problems = root, delimiter, problems
        self.empty_name = empty_name  # nftchef's emptyLayerName: a trait of this name draws nothing
        self.blend_modes = blend_modes  # accepted in `?blend=` (empty: any)
        self.real_root = Path(os.path.realpath(root))
        self.entries = self.folders = 0
        self.id_cache: dict[Path, dict[str, int]] = {}
        self.others: list[Path] = []  # files in the layer folders that are not images: warned about once
        self.edge_cases: dict[str, list[EdgeFound]] = {}  # per layer folder: its `edge-cases` folder
        # Animated collections: a GIF is a trait, and a top-level folder of numbered frames is one trait.
        self.frames = frames
        self.suffixes = IMAGE_SUFFIXES + ((".gif",) if frames else ())
        self.frame_folders: dict[Path, tuple[Path, ...]] = {}

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
        edge = [p for p in dirs if p.name == EDGE_CASES_FOLDER]
        if edge:
            dirs = [p for p in dirs if p.name != EDGE_CASES_FOLDER]
            self.edge_cases[folder] = self._edge_cases(edge[0], layer_z(folder))
        if dirs:  # weighted sub-folders: weights become probabilities scaled to the top level's sum
            seen = {_identity(self.root): self.root, _identity(d): d}  # a link back up is a loop
            leaves = self._weighted(d, files, dirs, None, (), seen)
        else:
            leaves = []
            for p in files:
                e = self._entry(p, False)
                if e is not None:
                    leaves.append(self._file_leaf(p, e, DEFAULT_WEIGHT if e.weight is None else e.weight, "", (), None))
        if not leaves:
            if len(self.problems) > before:  # e.g. one sub-folder with a bad weight: that is the news
                return []
            raise LayerError(f"{d}: empty layer folder, no image traits; add at least one trait image or drop the layer")
        return self._traits(d, folder, leaves, clean=len(self.problems) == before)

    def _edge_cases(self, d: Path, z: int | None) -> list[EdgeFound]:
        """An Art Engine 2 `edge-cases` folder: `<Option>__t<Layer>__v<Value>.png` files (with `__z`,
        `__x`/`__y` as anywhere); files naming one option, layer and value are drawn together, in
        natural order of their names. A file without its own `__z` takes its layer folder's."""
        files, dirs = self.listing(d)
        self.problems += [f"{q}: a folder inside {d.name!r}; an edge case is a file "
                          f"`<Option>__t<Layer>__v<Value>.png` directly in it" for q in dirs]
        groups: dict[tuple[str, str, str], list[Part]] = {}
        for p in sorted(files, key=_natural):
            try:
                rest, layer, value = parse_edge_case(p.stem, str(p))
                e = parse_entry(rest, self.delimiter, str(p), self.blend_modes)
                if e.weight is not None and "__w" not in rest:
                    raise LayerError(f"{p}: a weight on an edge case means nothing (the option's own weight "
                                     f"counts); remove {self.delimiter!r} and what follows from the name")
                self._check_file(p)
            except LayerError as err:
                self.problems.append(str(err))
                continue
            own = e.z if e.z is None or z is None else z + e.z  # added to the folder's, as every asset's
            groups.setdefault((e.name, layer, value), []).append(Part(p, own if own is not None else z, e.blend, e.opacity))
        return [EdgeFound(o, la, v, tuple(parts)) for (o, la, v), parts in groups.items()]

    def _layer_dir(self, folder: str) -> Path:
        root = self.root
        if not is_plain_name(folder):
            raise LayerError(f"{root / folder}: layer {folder!r} is not a plain folder name; name a sub-folder of "
                             f"{root} (no '/', '\\', '..' or absolute path)")
        d = self._find(folder)
        try:
            mode = os.stat(d).st_mode
        except FileNotFoundError:
            raise LayerError(f"{d}: layer folder named in the layer order does not exist{self._near(folder)}") from None
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

    def _near(self, folder: str) -> str:
        """`; did you mean 'Eyes'?` and the folders there, for a layer folder named wrong."""
        try:
            there = list_layer_folders(self.root)
        except LayerError:
            return ""
        close = difflib.get_close_matches(folder, there, n=1, cutoff=0.6)
        listed = ", ".join(there[:12]) + (f", ... ({len(there)} in all)" if len(there) > 12 else "")
        return (f"; did you mean {close[0]!r}?" if close else "") + (f" (the folders there: {listed})" if there else "")

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
        (`.DS_Store`, `._Hat.png`) and junk folders are skipped; other files that are not images
        go to `others` (one warning names them). A file is any image name that is not a folder: its
        type is checked later, so that a pipe or a broken link is named, not skipped."""
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
            elif p.suffix.lower() in self.suffixes:
                files.append(p)
            elif e.name.casefold() not in JUNK_FILES:
                self.others.append(p)
        return sorted(files, key=_natural), sorted(dirs, key=_natural)

    def _weighted(self, d: Path, files: list[Path], dirs: list[Path], share: float | None,
                  chain: tuple[Path, ...], seen: dict) -> list[Leaf]:
        """A layer folder's top level with weighted sub-folders: every entry (file or folder)
        competes by its weight (no weight means 1, as in HashLips); a folder that wins is walked
        the nftchef way (`_pick_folder`). Returns one leaf per trait, its weight scaled to
        probability * the sum of the top level's weights."""
        entries = []
        for p, is_folder in [*((f, False) for f in files), *((f, True) for f in dirs)]:
            e = self._entry(p, is_folder)
            if e is not None:
                entries.append((p, e, DEFAULT_WEIGHT if e.weight is None else e.weight, is_folder))
        total = sum(w for _, _, w, _ in entries)
        share = total if share is None else share
        out = []
        for p, e, w, is_folder in entries:
            part = share * w / total if total > 0 else 0.0  # this order of operations is in every manifest
            if not self._scaled_ok(p, w, share, part, chain):
                continue
            if not is_folder or (chain == () and self._frame_folder(p)):
                out.append(self._file_leaf(p, e, part, "", (), None))
                continue
            at = Where(f"0.{self._ids(d).get(p.name, 0)}", e.z, e.name, (*chain, p))
            out += self._pick_folder(p, part, at, (), seen)
        return out

    def _frame_folder(self, p: Path) -> bool:
        """With animation on: whether p is a folder of frames (only image files, each named by its frame
        number, `000.png`, `001.png` ..., after one shared prefix, if any); its frames are kept for `_traits`."""
        if not self.frames or self._outside(p):
            return False
        files, dirs = self.listing(p)
        if dirs or not frame_folder_names([f.stem for f in files], self.delimiter):
            return False
        if len(files) > MAX_TRAIT_FRAMES:
            self.problems.append(f"{p}: {len(files)} frames, more than gpucomp reads for one trait "
                                 f"({MAX_TRAIT_FRAMES})")
        self.frame_folders[p] = tuple(files[:MAX_TRAIT_FRAMES])
        return True

    def _entry(self, p: Path, is_folder: bool) -> EntryName | None:
        try:
            return parse_entry(p.name if is_folder else p.stem, self.delimiter, str(p), self.blend_modes)
        except LayerError as err:
            self.problems.append(str(err))
            return None

    def _file_leaf(self, p: Path, e: EntryName, weight: float, sub: str, seq: tuple, at: "Where | None") -> Leaf:
        """A weighted file that wins a pick: appended to what its folders drew (nftchef's walk
        order); `NONE` (the empty-trait name) draws nothing of its own."""
        if self.empty_name and e.name == self.empty_name:
            if at is not None and seq:  # the folder's own parts are still drawn: the trait is the folder
                name, above = _split_label(at.label)
                return Leaf(p, name, weight, above, seq, False)
            return Leaf(p, e.name, weight, sub, (), True)
        top = at is None and e.engine2
        if not seq and (at is None or at.z is None) and e.z is None and e.blend is None and e.opacity is None:
            return Leaf(p, e.name, weight, sub, None, False, top)  # a plain trait: drawn at its layer's place
        address = f"{at.address if at else '0'}.{self._ids(p.parent).get(p.name, 0)}"
        return Leaf(p, e.name, weight, sub, seq + (drawn_file(p, e, address, at),), False, top)

    def _pick_folder(self, p: Path, share: float, at: "Where", seq: tuple, seen: dict) -> list[Leaf]:
        """nftchef's walk of a folder that won a pick: its files without a weight are parts drawn
        together (a trait named after the folder), its weighted entries compete for one more pick."""
        listed = self._open_sub_folder(p, at.chain, seen)
        if listed is None:
            return []
        files, dirs = listed
        ids = self._ids(p)
        required, weighted = [], []
        for q, is_folder in sorted([*((f, False) for f in files), *((f, True) for f in dirs)],
                                   key=lambda x: ids.get(x[0].name, 0)):
            e = self._entry(q, is_folder)
            if e is None:
                continue
            (required if e.weight is None else weighted).append((q, e, is_folder))
        for q, e, is_folder in required:  # nftchef unshifts required files: they come out reversed
            address = f"{at.address}.{ids.get(q.name, 0)}"
            seq = (self._required_folder(q, e, at, address, seen) if is_folder else (drawn_file(q, e, address, at),)) + seq
        total = sum(e.weight for _, e, _ in weighted)
        if total <= 0:  # nothing to pick (nftchef picks nothing when the weights add up to 0)
            name, above = _split_label(at.label)
            return [Leaf(p, name, share, above, seq, not seq)]
        out = []
        for q, e, is_folder in sorted(weighted, key=lambda x: (x[2], natural_key(x[0].name))):
            part = share * e.weight / total
            if not self._scaled_ok(q, e.weight, share, part, at.chain):
                continue
            if is_folder:
                inner = Where(f"{at.address}.{ids.get(q.name, 0)}", at.z if e.z is None else e.z,
                               f"{at.label}/{e.name}", (*at.chain, q))
                out += self._pick_folder(q, part, inner, seq, seen)
            else:
                out.append(self._file_leaf(q, e, part, at.label, seq, at))
        return out

    def _required_folder(self, q: Path, e: EntryName, at: "Where", address: str, seen: dict) -> tuple:
        """A folder without a weight inside a picked folder: nftchef walks it always. Its files are
        parts of the trait; a pick inside it would be a second trait of this layer (nftchef's
        branching into another trait type), which gpucomp does not model: an error says so."""
        inner = Where(address, at.z if e.z is None else e.z, at.label, (*at.chain, q))
        listed = self._open_sub_folder(q, inner.chain, seen)
        if listed is None:
            return ()
        files, dirs = listed
        ids = self._ids(q)
        seq: tuple = ()
        for r, is_folder in sorted([*((f, False) for f in files), *((f, True) for f in dirs)],
                                   key=lambda x: ids.get(x[0].name, 0)):
            f = self._entry(r, is_folder)
            if f is None:
                continue
            if f.weight is not None:
                self.problems.append(f"{r}: a weighted entry inside {q.name!r}, a folder without a weight: nftchef "
                                     f"would pick it as a second trait of this layer, which gpucomp does not do; "
                                     f"make it a layer of its own, or give {q.name!r} a weight")
                continue
            addr = f"{address}.{ids.get(r.name, 0)}"
            seq = (self._required_folder(r, f, inner, addr, seen) if is_folder else (drawn_file(r, f, addr, inner),)) + seq
        return seq

    def _open_sub_folder(self, p: Path, chain: tuple[Path, ...], seen: dict) -> tuple[list[Path], list[Path]] | None:
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
            return None
        seen[ident] = p
        try:
            files, dirs = self.listing(p)
        except ScanLimit:
            raise
        except LayerError as err:
            self.problems.append(str(err))
            return None
        if not files and not dirs:
            self.problems.append(f"{p}: empty sub-folder, no image traits; add traits or remove it")
            return None
        return files, dirs

    def _ids(self, d: Path) -> dict[str, int]:
        """nftchef's id of each entry of d: its index in the byte-ordered listing (Linux readdir
        order there), hidden names and names holding `.ini` left out. Part order depends on it."""
        if d not in self.id_cache:
            names = sorted((e.name for e in _list(d)
                            if not re.match(r"\.[^/.]", e.name) and ".ini" not in e.name), key=os.fsencode)
            self.id_cache[d] = {n: i for i, n in enumerate(names)}
        return self.id_cache[d]

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

    def _traits(self, d: Path, folder: str, leaves: list[Leaf], clean: bool) -> list[Found]:
        z = layer_z(folder)
        try:
            leaves = merge_engine2(leaves, self._ids(d), z, z is not None or offset_of(folder) is not None)
        except LayerError as err:
            self.problems.append(str(err))
            return []
        names = Counter(leaf.name for leaf in leaves)
        seen: dict[str, Path] = {}
        found: list[Found] = []
        for leaf in leaves:
            name = f"{leaf.sub}/{leaf.name}" if names[leaf.name] > 1 and leaf.sub else leaf.name
            parts = None if leaf.seq is None else () if leaf.empty else nftchef_order(leaf.seq)
            dna = () if leaf.empty else tuple(x.address for x in leaf.seq or (plain_drawn(leaf, self._ids(d)),))
            trait = Found(leaf.path, name, leaf.weight, parts, self.frame_folders.get(leaf.path), dna)
            try:
                for p in trait.files if parts != () else (leaf.path,):
                    self._check_file(p)
                if name in seen:
                    raise LayerError(f"{leaf.path}: trait name {name!r} is used twice in layer {folder!r} "
                                     f"(also {seen[name].name}); rename one")
            except LayerError as err:
                self.problems.append(str(err))
                clean = False
                continue
            seen[name] = leaf.path
            found.append(trait)
        if clean:  # only when every name parsed: a fixed bad name may be the weight that is missing
            self._check_weights(d, found)
        return found

    def _check_file(self, p: Path) -> None:
        outside = self._outside(p)
        if outside:
            raise LayerError(f"{p}: links outside the layers folder ({outside}); copy the file in instead")
        try:
            mode = os.stat(p).st_mode  # stat, unlike open, never blocks on a pipe or a device
        except OSError as err:
            raise LayerError(f"{p}: cannot read ({why(err)}); replace it with an image file") from None
        if not stat.S_ISREG(mode) and not (stat.S_ISDIR(mode) and p.suffix.lower() not in IMAGE_SUFFIXES):
            raise LayerError(f"{p}: not a regular file ({_kind(mode)}); replace it with a PNG file")

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
