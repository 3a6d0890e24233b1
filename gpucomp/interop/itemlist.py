"""Items given as a list (`gpucomp generate --from FILE`), rendered exactly, in the order given.

Four forms, told apart by the file:
- a CSV (`.csv`) with a header row: one column per layer, named by folder or display name, one
  row per item; columns naming no layer of the stack (`number`, a left-out layer) are ignored;
- a HashLips or nftchef `_metadata.json` (`.json`; gpucomp's own too): a list of items whose
  `attributes` give `trait_type` (a layer) and `value` (a trait); a folder holding one is read;
- a text file of HashLips v1 DNA strings, one item a line: `2:Red#10.png-0:Cap.png` (element id :
  file name per layer, in layer order, joined by `-`; gpucomp's older `layer:id:file` pieces name
  their layer); blank and `#` lines are skipped;
- nftchef's `build/_dna.json`: a JSON list of `<n>/<layer>.<id>...:<file>*...` strings.
With several stacks, each item goes to the stack whose layers it names (list_stacks).
A layer an item gives nothing for takes the layer's "nothing" trait (its `none` option or its one
empty trait) or is an error naming the item, as is a trait the layer does not have.
"""
from __future__ import annotations

import csv
import hashlib
import re
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpucomp._shared import json_input
from gpucomp._shared.files import read_regular
from gpucomp._shared.safe_text import csv_text_value
from gpucomp.errors import ConfigError

MAX_LIST_BYTES = 256 << 20  # a million items of a few hundred bytes each
MAX_ITEMS = 10_000_000  # the most a collection holds (config.MAX_SIZE): counted while reading
METADATA_NAME = "_metadata.json"
NO_EDITION = -(1 << 63)


class Column:
    """The cells a list gives for one layer reference (a CSV column, a trait_type, `#<k>` for the
    k-th piece of a DNA string), as numbers: row `rows[j]` names trait `names[codes[j]]`. A few
    bytes a cell, where a dict a row took 60 times an item's bytes on a list of short names."""

    def __init__(self):
        self.rows, self.codes = array("q"), array("l")
        self.names: list[str] = []
        self._code: dict[str, int] = {}

    def add(self, row: int, name: str) -> None:
        code = self._code.get(name)
        if code is None:
            code = self._code[name] = len(self.names)
            self.names.append(name)
        self.rows.append(row)
        self.codes.append(code)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, codes) as NumPy arrays (views, no copy)."""
        return np.frombuffer(self.rows, np.int64), np.frombuffer(self.codes, np.dtype(f"i{self.codes.itemsize}"))


@dataclass
class ItemList:
    """The items of a list, by column: `columns[ref]` holds what each row gives for the layer
    reference `ref` (a row gives nothing where it has no cell); `where[i]` is row i's line (CSV,
    DNA) and `editions[i]` its edition (metadata), to name it in messages."""

    path: Path
    kind: str  # "csv" | "metadata" | "dna" (HashLips DNA lines) | "nftchef-dna" (nftchef's _dna.json)
    count: int
    columns: dict[str, Column]
    where: array
    editions: array
    sha256: str

    def __len__(self) -> int:
        return self.count

    def label(self, i: int) -> str:
        """How a message names row i: `line 12`, or `item 3 (edition 7)`."""
        if self.kind == "nftchef-dna":
            return f"entry {self.where[i]}"
        if self.kind != "metadata":
            return f"line {self.where[i]}"
        edition = self.editions[i]
        return f"item {i + 1}" + (f" (edition {edition})" if edition != NO_EDITION else "")


class _Builder:
    """Collects a list's rows into columns, counting them against MAX_ITEMS."""

    def __init__(self, path: Path):
        self.path, self.count = path, 0
        self.columns: dict[str, Column] = {}
        self.where, self.editions = array("q"), array("q")

    def row(self, cells: dict[str, str] | list[tuple[str, str]], where: int = 0, edition: int = NO_EDITION) -> None:
        if self.count == MAX_ITEMS:
            raise ConfigError(f"--from {self.path}: lists more than {MAX_ITEMS:,} items, the most a collection holds")
        for ref, name in (cells.items() if isinstance(cells, dict) else cells):
            column = self.columns.get(ref)
            if column is None:
                column = self.columns[ref] = Column()
            column.add(self.count, name)
        self.where.append(where)
        self.editions.append(edition)
        self.count += 1

    def done(self, kind: str, sha: str) -> ItemList:
        return ItemList(self.path, kind, self.count, self.columns, self.where, self.editions, sha)


def read_list(path) -> ItemList:
    path = Path(path)
    if path.is_dir():
        path = path / METADATA_NAME
    try:
        data = read_regular(path, MAX_LIST_BYTES)
    except OSError as err:
        raise ConfigError(f"--from {path}: cannot read it ({err.strerror or err})") from None
    sha = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"--from {path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    del data  # the text is all that is read from here on: one copy of a list of up to 256 MiB, not two
    suffix, rows = path.suffix.lower(), _Builder(path)
    if suffix == ".csv":
        kind = "csv"
        _csv_rows(text, path, rows)
    elif suffix == ".json" or text.lstrip().startswith(("[", "{")):
        kind = _metadata_rows(text, path, rows)
    else:
        kind = "dna"
        _dna_rows(text, path, rows)
    if not rows.count:
        raise ConfigError(f"--from {path}: lists no item")
    return rows.done(kind, sha)


def _lines(text: str):
    """The lines of `text`, ends kept, one at a time (what csv.reader reads; newlines inside quoted
    cells are joined by the reader itself)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start) + 1 or len(text)
        yield text[start:end]
        start = end


def _cell(cell: str) -> str:
    return csv_text_value(cell.strip())


def _records(reader, path: Path):
    """The CSV's records; one the csv module refuses (a cell past its 131072-character limit, a NUL
    byte) is an error naming its line, not a traceback."""
    try:
        yield from reader
    except csv.Error as err:
        raise ConfigError(f"--from {path}: line {reader.line_num}: {err}; no item list holds such a cell") from None


def _csv_rows(text: str, path: Path, rows: _Builder) -> None:
    """The CSV's rows into `rows`; the text is read line by line (io.StringIO held a copy of four
    bytes a character): a 96 MiB list took 1.3 GB here before."""
    reader = csv.reader(_lines(text))
    records = _records(reader, path)
    header = next(records, None)
    if not header or not any(h.strip() for h in header):
        raise ConfigError(f"--from {path}: a CSV needs a header row naming the layers (Background,Body,...)")
    header = [csv_text_value(h.strip()) for h in header]  # rarity.csv's neutralised names read back
    seen: dict[str, int] = {}
    for col, h in enumerate(header, start=1):
        if h and seen.setdefault(h, col) != col:
            raise ConfigError(f"--from {path}: columns {seen[h]} and {col} are both named {h!r}; keep one")
    for line, cells in enumerate(records, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise ConfigError(f"--from {path}: line {line} has {len(cells)} cells, the header {len(header)}")
        rows.row([(h, c) for h, c in zip(header, map(_cell, cells), strict=True) if h and c], line)


def _metadata_rows(text: str, path: Path, rows: _Builder) -> str:
    """A `_metadata.json` (its items' attributes) into `rows`, or nftchef's `_dna.json` (a list of
    strings); returns which of the two it was."""
    try:
        items = json_input.loads(text)
    except ValueError as err:
        raise ConfigError(f"--from {path}: not valid JSON ({err})") from None
    if not isinstance(items, list):
        raise ConfigError(f"--from {path}: expected a list of items (HashLips' _metadata.json), got {type(items).__name__}")
    if items and all(isinstance(item, str) for item in items):
        _nftchef_dna_rows(items, path, rows)
        return "nftchef-dna"
    for i, item in enumerate(items):
        edition = item.get("edition") if isinstance(item, dict) else None
        if not (isinstance(edition, int) and not isinstance(edition, bool) and NO_EDITION < edition < 1 << 63):
            edition = NO_EDITION
        label = f"item {i + 1}" + (f" (edition {edition})" if edition != NO_EDITION else "")
        attributes = item.get("attributes") if isinstance(item, dict) else None
        if not isinstance(attributes, list):
            raise ConfigError(f"--from {path}: {label} has no attributes list")
        row = {}
        for a in attributes:
            if not (isinstance(a, dict) and isinstance(a.get("trait_type"), str)
                    and isinstance(a.get("value"), (str, int, float)) and not isinstance(a.get("value"), bool)):
                raise ConfigError(f"--from {path}: {label}: each attribute needs a trait_type and a value, got {a!r}")
            if a["trait_type"] in row:
                raise ConfigError(f"--from {path}: {label} lists {a['trait_type']!r} twice")
            row[a["trait_type"]] = str(a["value"])
        rows.row(row, edition=edition)
        items[i] = None  # each item's objects go as soon as it is read
    return "metadata"


_PIECE = re.compile(r"-(?=[0-9]+:)")  # a DNA joins "id:file" pieces with "-"; names may hold "-" too
_DNA_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")  # a line, one at a time (not a list of them all)


def _dna_rows(text: str, path: Path, rows: _Builder) -> None:
    """HashLips v1 DNA, one item a line: `<element id>:<file>` for each layer of the configuration in
    its order, joined by `-` (main.js createDna): a piece's place is its layer, its first number the
    file's index in that layer's folder. `<layer>:<id>:<file>` pieces (gpucomp's own older form)
    name their layer."""
    for line, m in enumerate(_DNA_LINE.finditer(text), start=1):
        s = m.group().strip()
        if not s or s.startswith("#"):
            continue
        row, forms = {}, set()
        for position, piece in enumerate(_PIECE.split(s)):
            parts = piece.split(":")
            if len(parts) < 2 or not all(p.isascii() and p.isdigit() and len(p) <= 6 for p in parts[:-1][:2]):
                raise ConfigError(f"--from {path}: line {line}: {_shown(piece)} is not a DNA piece "
                                  f"(HashLips writes <element id>:<file>, as in 0:Red#10.png-2:Cap.png)")
            forms.add(len(parts) == 2)
            key = f"#{position}" if len(parts) == 2 else f"#{int(parts[0])}"
            if key in row:
                raise ConfigError(f"--from {path}: line {line} gives layer {key[1:]} twice; keep one piece for it")
            row[key] = parts[-1].split("?", 1)[0]  # drop ?bypassDNA=true
        if len(forms) > 1:
            raise ConfigError(f"--from {path}: line {line} mixes <id>:<file> pieces (HashLips: a piece's place is its "
                              f"layer) with <layer>:<id>:<file> ones; write the line in one form")
        rows.row(row, line)


_NFTCHEF_PIECE = re.compile(r"([0-9]+)((?:\.[0-9]+)+:.*)", re.S)


def _nftchef_dna_rows(entries: list[str], path: Path, rows: _Builder) -> None:
    """nftchef's `build/_dna.json`: `<n>/` then the item's pieces joined by `*`, each
    `<layer>.<id>[.<id>...]:<z flag><file>` (the layer's index in layersOrder, then each pick's id
    in its folder); a layer's pieces together name its trait (found.Found.dna), none the empty trait."""
    for i, entry in enumerate(entries, start=1):
        body = entry.split("/", 1)[1] if re.match(r"[0-9]+/", entry) else entry
        pieces: dict[str, list[str]] = {}
        for piece in body.split("*"):
            m = _NFTCHEF_PIECE.fullmatch(piece)
            if not m or len(m.group(1)) > 6:
                raise ConfigError(f"--from {path}: entry {i}: {_shown(piece)} is not an nftchef DNA piece "
                                  f"(<layer>.<id>:<file>, as in 0.2:Red#10.png)")
            pieces.setdefault(f"#{int(m.group(1))}", []).append("0" + m.group(2).split("?", 1)[0])
        rows.row({key: dna_key(found) for key, found in pieces.items()}, i)


def _shown(piece: str) -> str:
    """A piece as an error quotes it: whole when short, else its start and its length."""
    return repr(piece) if len(piece) <= 80 else f"{piece[:60]!r}... ({len(piece)} characters)"


def dna_key(entries) -> str:
    """One string for a trait's nftchef DNA entries, in any order."""
    return "*".join(sorted(entries))


def _file_trait_name(file: str, delimiter: str) -> str:
    """HashLips' element name: the file name without its extension and weight."""
    stem = file.rsplit(".", 1)[0] if "." in file else file
    return stem.rsplit(delimiter, 1)[0] if delimiter in stem else stem


def _refs(items: ItemList, li: int, layer) -> list[str]:
    """The keys a row may give layer `li` by: its place in a DNA, else its display and folder names."""
    return [f"#{li}"] if items.kind in ("dna", "nftchef-dna") else list(dict.fromkeys((layer.name, layer.folder)))


def list_combos(items: ItemList, layerset, options, delimiter: str = "#", mine: np.ndarray | None = None) -> np.ndarray:
    """(n, L) trait indices of the stack's layers for every listed item (or the rows `mine` selects),
    in the list's order. A problem (a layer named twice, no trait for a layer, a trait the layer
    lacks) is an error naming the first row that has one, column by column in NumPy."""
    layers, n = layerset.layers, len(items)
    mine = np.ones(n, bool) if mine is None else mine
    out = np.empty((n, len(layers)), np.int32)
    problems = []  # (row, layer, priority, message) of each layer's first problem

    def first(rows: np.ndarray) -> int | None:
        rows = rows[mine[rows]]
        return int(rows[0]) if rows.size else None

    for li, (layer, option) in enumerate(zip(layers, options, strict=True)):
        columns = [(ref, items.columns[ref]) for ref in _refs(items, li, layer) if ref in items.columns]
        given = np.zeros(n, np.int8)
        if items.kind == "nftchef-dna":
            index = {dna_key(t.dna): k for k, t in enumerate(layer.traits) if t.dna}
        else:  # a metadata value other than the name (nftchef traitValueOverrides) names its trait too
            index = {t.name: k for k, t in enumerate(layer.traits)}
            index = {value: index[name] for name, value in option.values.items() if name in index} | index
        for _, column in columns:
            rows, codes = column.arrays()
            names = [_file_trait_name(c, delimiter) for c in column.names] if items.kind == "dna" else column.names
            # nftchef keeps the space of `shirt one #3.png` in its metadata ("shirt one "); trait names here have none
            traits = np.array([index.get(name, index.get(name.strip(), -1)) for name in names], np.int32)[codes]
            out[rows, li] = traits
            given[rows] += 1
            if (row := first(rows[traits < 0])) is not None:
                j = int(np.searchsorted(rows, row))
                known = ", ".join(list(index)[:6]) + (", ..." if len(index) > 6 else "")
                problems.append((row, li, 1, f"layer {layer.name!r} has no trait {names[codes[j]]!r} (it has {known})"))
        if (row := first(np.flatnonzero(given > 1))) is not None:  # `Body` and `02-Body`: the list's to say
            both = " and ".join(repr(ref) for ref, c in columns if _has_row(c, row))
            problems.append((row, li, 0, f"names layer {layer.name!r} twice, as {both}; keep one {_column(items.kind)}"))
        missing = np.flatnonzero(given == 0)
        nothing = _nothing_trait(layer, option)
        if nothing is None and (row := first(missing)) is not None:
            problems.append((row, li, 0, f"gives no trait for layer {layer.name!r}, which has no empty trait to "
                                         f"stand for nothing; add a {_column(items.kind)} for it"))
        out[missing, li] = nothing or 0
    if problems:
        row, _, _, why = min(problems, key=lambda p: p[:3])
        raise ConfigError(f"--from {items.path}: {items.label(int(row))}{':' if why.startswith('layer') else ''} {why}")
    return out[mine]


def list_stacks(items: ItemList, stacks: list) -> np.ndarray:
    """The stack (index into `stacks`, [(LayerSet, options)]) of every listed item: the one whose
    layers it names, each layer it leaves out having an empty trait (HashLips' several
    layerConfigurations: an item's attributes are its configuration's layers). A row that fits none,
    or several equally, is an error naming the stacks."""
    n, known = len(items), {ref for ls, _ in stacks for li, la in enumerate(ls.layers) for ref in _refs(items, li, la)}
    fits, exact = np.ones((len(stacks), n), bool), np.ones((len(stacks), n), bool)
    for k, (ls, options) in enumerate(stacks):
        refs = {ref: li for li, la in enumerate(ls.layers) for ref in _refs(items, li, la)}
        for key, column in items.columns.items():
            if key in known and key not in refs:  # it names a layer of another stack only
                fits[k, column.arrays()[0]] = False
        for li, (layer, option) in enumerate(zip(ls.layers, options, strict=True)):
            given = np.zeros(n, bool)
            for ref in _refs(items, li, layer):
                if ref in items.columns:
                    given[items.columns[ref].arrays()[0]] = True
            exact[k] &= given
            if _nothing_trait(layer, option) is None:
                fits[k] &= given
    exact &= fits
    choice = np.where(exact.sum(0) == 1, exact.argmax(0), np.where(fits.sum(0) == 1, fits.argmax(0), -1))
    if (bad := np.flatnonzero(choice < 0)).size:
        i = int(bad[0])
        options = [k for k in range(len(stacks)) if fits[k, i]]
        names = "; ".join(f"stack {k + 1}: {', '.join(la.name for la in stacks[k][0].layers)}" for k in range(len(stacks)))
        why = (f"fits stacks {' and '.join(str(k + 1) for k in options)} alike" if options
               else "names the layers of no stack")
        raise ConfigError(f"--from {items.path}: {items.label(i)} {why} ({names}); give each item the layers of "
                          f"one stack")
    return choice


def _has_row(column: Column, row: int) -> bool:
    rows, _ = column.arrays()
    k = int(np.searchsorted(rows, row))
    return k < len(rows) and rows[k] == row


def _column(kind: str) -> str:
    return {"csv": "column", "metadata": "trait_type", "dna": "DNA piece", "nftchef-dna": "DNA piece"}[kind]


def _nothing_trait(layer, option) -> int | None:
    """The trait an item without one in this layer takes: the `none` trait, else the one empty trait."""
    if option.none is not None:
        return next((k for k, t in enumerate(layer.traits) if t.name == option.none), None)
    empty = [k for k, t in enumerate(layer.traits) if t.empty]
    return empty[0] if len(empty) == 1 else None


def check_unique(items: ItemList, combos: np.ndarray, options, rows: np.ndarray | None = None) -> None:
    """Two listed items with the same traits in every dna layer would be one item twice. `rows`: the
    list's row of each combo (all of them, in order, by default)."""
    dna = [li for li, o in enumerate(options) if o.dna]
    keys = np.ascontiguousarray(combos[:, dna]).view(np.dtype((np.void, 4 * len(dna)))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    repeats = np.flatnonzero(first[inverse.ravel()] != np.arange(len(keys)))
    if repeats.size:
        i = int(repeats[0])
        row = np.arange(len(keys)) if rows is None else rows
        raise ConfigError(f"--from {items.path}: {items.label(int(row[i]))} is the same item as "
                          f"{items.label(int(row[first[inverse.ravel()[i]]]))} (the same trait in every dna layer); list "
                          f"each item once (a variant that leaves out the layer telling two items apart makes them one)")
