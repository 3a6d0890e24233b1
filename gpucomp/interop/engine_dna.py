"""The `dna` an engine would have written for an item, so a collection moved over can be matched
item by item with what the engine wrote (`[metadata] engine_dna`, set by import-config).

HashLips v1 (src/main.js, createDna and addMetadata): for each layer of the item's configuration,
in order, `<element id>:<file name>` (`?bypassDNA=true` after it for a bypassDNA layer), joined by
`-`; the metadata's `dna` is the sha1 of that string. An element's id is its index in the layer
folder's listing, dotfiles left out, in the byte order node's readdir returns (checked by running
the engine: tests/fixtures/engines/).
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_HIDDEN = re.compile(r"\.[^/.]")  # main.js getElements: /(^|\/)\.[^\/\.]/


class HashLipsDna:
    """HashLips v1 DNA strings for items, each folder listed once."""

    def __init__(self):
        self._ids: dict[Path, dict[str, int]] = {}

    def element_id(self, file: Path) -> int:
        folder = file.parent
        if folder not in self._ids:
            names = sorted((n for n in os.listdir(folder) if not _HIDDEN.match(n)), key=os.fsencode)
            self._ids[folder] = {n: i for i, n in enumerate(names)}
        return self._ids[folder].get(file.name, -1)

    def string(self, files: list[tuple[Path, bool]]) -> str:
        """The DNA of an item drawing `files` (one per layer, in order, with whether the layer counts
        for uniqueness: a bypassDNA layer's piece carries `?bypassDNA=true`)."""
        return "-".join(f"{self.element_id(f)}:{f.name}{'' if counts else '?bypassDNA=true'}" for f, counts in files)

    def sha1(self, files: list[tuple[Path, bool]]) -> str:
        return hashlib.sha1(self.string(files).encode()).hexdigest()
