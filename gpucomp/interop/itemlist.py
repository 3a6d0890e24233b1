"""Items given as a list (`gpucomp generate --from FILE`), rendered exactly, in the order given.

Three forms, told apart by the file:
- a CSV (`.csv`) with a header row: one column per layer, named by folder or display name, one
  row per item; columns naming no layer of the stack (`number`, a left-out layer) are ignored;
- a HashLips or nftchef `_metadata.json` (`.json`; gpucomp's own too): a list of items whose
  `attributes` give `trait_type` (a layer) and `value` (a trait); a folder holding one is read;
- a text file of HashLips/nftchef DNA strings, one item a line: `0:3:Red#10.png-1:0:Cap.png`
  (layer position : element id : file name, joined by `-`); blank and `#` lines are skipped.
A layer an item gives nothing for takes the layer's "nothing" trait (its `none` option or its one
empty trait) or is an error naming the item, as is a trait the layer does not have.
"""
from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpucomp._shared import json_input
from gpucomp._shared.files import read_regular
from gpucomp._shared.safe_text import csv_text_value
from gpucomp.errors import ConfigError

MAX_LIST_BYTES = 256 << 20  # a million items of a few hundred bytes each
METADATA_NAME = "_metadata.json"


@dataclass
class ItemList:
    """`rows[i]` maps a layer reference (folder or display name; `#<k>` for the k-th layer of a DNA
    string) to a trait name; `labels[i]` names the row in messages."""

    path: Path
    kind: str  # "csv" | "metadata" | "dna"
    rows: list[dict[str, str]]
    labels: list[str]
    sha256: str

    def __len__(self) -> int:
        return len(self.rows)


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
    suffix = path.suffix.lower()
    if suffix == ".csv":
        kind, rows, labels = "csv", *_csv_rows(text, path)
    elif suffix == ".json" or text.lstrip().startswith(("[", "{")):
        kind, rows, labels = "metadata", *_metadata_rows(text, path)
    else:
        kind, rows, labels = "dna", *_dna_rows(text, path)
    if not rows:
        raise ConfigError(f"--from {path}: lists no item")
    return ItemList(path, kind, rows, labels, sha)


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


def _csv_rows(text: str, path: Path) -> tuple[list, list]:
    """Rows as {column: cell}; equal cells are one string object (a list repeats a few dozen trait
    names a million times), and the text is read line by line (io.StringIO held a copy of four
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
    rows, labels, shared = [], [], {}
    for line, cells in enumerate(records, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise ConfigError(f"--from {path}: line {line} has {len(cells)} cells, the header {len(header)}")
        rows.append({h: shared.setdefault(c, c) for h, c in zip(header, map(_cell, cells), strict=False) if h and c})
        labels.append(f"line {line}")
    return rows, labels


def _metadata_rows(text: str, path: Path) -> tuple[list, list]:
    try:
        items = json_input.loads(text)
    except ValueError as err:
        raise ConfigError(f"--from {path}: not valid JSON ({err})") from None
    if not isinstance(items, list):
        raise ConfigError(f"--from {path}: expected a list of items (HashLips' _metadata.json), got {type(items).__name__}")
    rows, labels = [], []
    for i, item in enumerate(items):
        label = f"item {i + 1}"
        if isinstance(item, dict) and isinstance(item.get("edition"), int) and not isinstance(item["edition"], bool):
            label += f" (edition {item['edition']})"
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
        rows.append(row)
        labels.append(label)
    return rows, labels


_PIECE = re.compile(r"-(?=[0-9]+:)")  # a DNA joins "layer:id:file" pieces with "-"; names may hold "-" too


def _dna_rows(text: str, path: Path) -> tuple[list, list]:
    rows, labels = [], []
    for line, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        row = {}
        for piece in _PIECE.split(s):
            parts = piece.split(":")
            if len(parts) < 2 or not (parts[0].isascii() and parts[0].isdigit() and len(parts[0]) <= 6):
                shown = repr(piece) if len(piece) <= 80 else f"{piece[:60]!r}... ({len(piece)} characters)"
                raise ConfigError(f"--from {path}: line {line}: {shown} is not a DNA piece "
                                  f"(layer:id:file, as in 0:3:Red#10.png-1:0:Cap.png)")
            key = f"#{int(parts[0])}"
            if key in row:
                raise ConfigError(f"--from {path}: line {line} gives layer {parts[0]} twice; keep one piece for it")
            row[key] = parts[-1].split("?", 1)[0]  # drop ?bypassDNA=true
        rows.append(row)
        labels.append(f"line {line}")
    return rows, labels


def _file_trait_name(file: str, delimiter: str) -> str:
    """HashLips' element name: the file name without its extension and weight."""
    stem = file.rsplit(".", 1)[0] if "." in file else file
    return stem.rsplit(delimiter, 1)[0] if delimiter in stem else stem


def list_combos(items: ItemList, layerset, options, delimiter: str = "#") -> np.ndarray:
    """(n, L) trait indices of the stack's layers for every listed item, in the list's order."""
    layers = layerset.layers
    index = [{t.name: k for k, t in enumerate(layer.traits)} for layer in layers]
    refs = []  # per layer: the keys a row may use for it
    for li, layer in enumerate(layers):
        refs.append([f"#{li}"] if items.kind == "dna" else list(dict.fromkeys((layer.name, layer.folder))))
    nothing = [_nothing_trait(layer, o) for layer, o in zip(layers, options, strict=True)]
    out = np.empty((len(items), len(layers)), np.int32)
    for i, (row, label) in enumerate(zip(items.rows, items.labels, strict=True)):
        for li, layer in enumerate(layers):
            keys = [r for r in refs[li] if r in row]
            if len(keys) > 1:  # `Body` and `02-Body`: which one is meant is the list's to say, not ours
                raise ConfigError(f"--from {items.path}: {label} names layer {layer.name!r} twice, as "
                                  f"{' and '.join(map(repr, keys))}; keep one {_column(items.kind)}")
            key = keys[0] if keys else None
            if key is None:
                if nothing[li] is None:
                    raise ConfigError(f"--from {items.path}: {label} gives no trait for layer {layer.name!r}, which has "
                                      f"no empty trait to stand for nothing; add a {_column(items.kind)} for it")
                out[i, li] = nothing[li]
                continue
            name = row[key] if items.kind != "dna" else _file_trait_name(row[key], delimiter)
            k = index[li].get(name)
            if k is None:
                known = ", ".join(list(index[li])[:6]) + (", ..." if len(index[li]) > 6 else "")
                raise ConfigError(f"--from {items.path}: {label}: layer {layer.name!r} has no trait {name!r} "
                                  f"(it has {known})")
            out[i, li] = k
    return out


def _column(kind: str) -> str:
    return {"csv": "column", "metadata": "trait_type", "dna": "DNA piece"}[kind]


def _nothing_trait(layer, option) -> int | None:
    """The trait an item without one in this layer takes: the `none` trait, else the one empty trait."""
    if option.none is not None:
        return next((k for k, t in enumerate(layer.traits) if t.name == option.none), None)
    empty = [k for k, t in enumerate(layer.traits) if t.empty]
    return empty[0] if len(empty) == 1 else None


def check_unique(items: ItemList, combos: np.ndarray, options) -> None:
    """Two listed items with the same traits in every dna layer would be one item twice."""
    dna = [li for li, o in enumerate(options) if o.dna]
    seen: dict[bytes, int] = {}
    for i, row in enumerate(np.ascontiguousarray(combos[:, dna])):
        first = seen.setdefault(row.tobytes(), i)
        if first != i:
            raise ConfigError(f"--from {items.path}: {items.labels[i]} is the same item as {items.labels[first]} "
                              f"(the same trait in every dna layer); list each item once (a variant that leaves "
                              f"out the layer telling two items apart makes them one)")
