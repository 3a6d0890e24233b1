"""`gpucomp update-metadata OUT`: new metadata options applied to a finished collection's files
(under its lock, recorded in its manifest), without rendering an image again."""
from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

from gpucomp._shared import json_input
from gpucomp._shared.files import TMP_PREFIX, atomic_write_bytes, atomic_write_json, json_bytes, read_regular
from gpucomp._shared.testhooks import fault
from gpucomp.errors import ConfigError, OutputError
from gpucomp.metadata.tokens import (
    BASE_KEYS,
    TABLE_KEYS,
    MetadataOptions,
    build_options,
    check_numbers,
    check_size,
    check_traits,
    item_metadata,
    parse_number,
)
from gpucomp.outdir.journal import MAX_RECORDS_BYTES, PROVENANCE, unfinished
from gpucomp.outdir.layout import MANIFEST, MAX_METADATA_BYTES, output_state, write_collection_metadata
from gpucomp.outdir.lock import OutputLock
from gpucomp.outdir.resume import clean_temporaries, read_manifest


def update_metadata(out, changes: dict, log: Callable[[str], None] | None = None) -> int:
    """Rewrite OUT/metadata/<n>.json, OUT/_metadata.json and the manifest's "metadata" section
    for the stored options with `changes` applied (any MetadataOptions field). Images are not
    touched. Returns how many item files changed."""
    # lazily: these pull in NumPy, and config.py imports this module
    out = Path(out)
    log = log or (lambda msg: None)
    known = [f.name for f in fields(MetadataOptions)]
    for key in changes:
        if key not in known:
            raise ConfigError(f"update-metadata: unknown option {key!r}; known: {', '.join(known)}")
    if output_state(out) != "ours":
        raise OutputError(f"{out}: not a gpucomp output (no {MANIFEST}); update-metadata works on a folder "
                          f"written by `gpucomp generate`")
    fix = f"re-run `gpucomp generate` with the same layers and settings into {out}, which repairs it"
    with OutputLock(out):
        if unfinished(out):
            raise OutputError(f"{out}: the collection is not finished (an earlier run was interrupted); finish it "
                              f"with `gpucomp resume {out}` first, then update its metadata")
        mpath = out / MANIFEST
        manifest = read_manifest(out)  # checked against its schema: a damaged one is named, not a traceback
        plan = manifest["plan"]
        clean_temporaries(out, TMP_PREFIX)  # what a killed update-metadata (or any run) left
        old = stored_options(manifest, str(mpath))
        opts = build_options({**old.to_dict(), **changes}, "update-metadata", lambda k: k)
        numbers = finished_numbers(out, f"{fix}, then update the metadata")
        if numbers:
            check_numbers(opts, min(numbers), max(numbers), "update-metadata")
        names = _trait_names(plan)
        if numbers:  # before any file is rewritten: every item's new metadata fits
            check_size(opts, [(layer, list(dict.fromkeys(t))) for layer, t in names.items()], max(numbers),
                       "update-metadata")
        if opts.display_types:  # the same check generate makes: numeric, distinct trait names
            check_traits(opts, [(layer, list(dict.fromkeys(traits))) for layer, traits in names.items()],
                         "update-metadata")

        def build(n: int) -> bytes:
            return _item_bytes(out, n, names, opts, fix)

        for n in numbers:  # everything once before writing: a bad file or option leaves the output as it was
            build(n)
        rewritten = _rewrite(out, manifest, opts, numbers, build)
    log(f"metadata: {rewritten} of {len(numbers)} files rewritten ({opts.format})")
    return rewritten


def _item_bytes(out: Path, n: int, names: dict, opts: MetadataOptions, fix: str) -> bytes:
    """Item n's metadata file as `opts` would write it, from the attributes and DNA it holds now."""
    path = out / "metadata" / f"{n}.json"
    attributes, dna = _read_item(path, n, names, fix)
    if opts.format != "solana" and "dna" not in opts.omit and dna is None:
        raise OutputError(f"{path}: has no dna (it was left out) and {opts.format} metadata with dna needs it; "
                          f"add \"dna\" to metadata.omit, or set format = \"{opts.format}\" in [metadata] "
                          f"and re-run `gpucomp generate` into {out}, which rewrites the metadata")
    return json_bytes(item_metadata(n, attributes, dna, opts))


def _rewrite(out: Path, manifest: dict, opts: MetadataOptions, numbers, build: Callable[[int], bytes]) -> int:
    """The manifest first (fsynced: if this is interrupted, running update-metadata again finishes
    the job), then every item file whose bytes change, then _metadata.json. Returns how many changed."""
    _store(manifest, opts)
    try:
        atomic_write_json(out / MANIFEST, manifest, fsync=True)
        fault("update-metadata:manifest")
        rewritten = 0
        for n in numbers:
            fault(f"update-metadata:{n}")
            path, data = out / "metadata" / f"{n}.json", build(n)
            if _read_or_none(path) != data:
                atomic_write_bytes(path, data)
                rewritten += 1
        write_collection_metadata(out, numbers)
    except OSError as err:
        raise OutputError(f"{out}: cannot write metadata ({err.strerror or err}); images are untouched: fix "
                          f"the cause and run update-metadata again") from err
    return rewritten


def stored_options(manifest: dict, source: str) -> MetadataOptions:
    """The options a collection's manifest (read_manifest) records."""
    known = [f.name for f in fields(MetadataOptions)]
    section = manifest["metadata"]
    # Manifests may hold the [metadata] table as "table" beside the [collection] keys; other
    # keys of the section are not options.
    table = section.get("table") if isinstance(section.get("table"), dict) else {}
    return MetadataOptions.from_dict({**table, **{k: v for k, v in section.items() if k in known}}, source)


def finished_numbers(out: Path, fix: str) -> list[int]:
    """Every item number of a finished collection, in item order: provenance.json is written when
    a run finishes and lists them all."""
    try:
        return [_int(x["number"]) for x in json.loads(read_regular(out / PROVENANCE, MAX_RECORDS_BYTES))["items"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise OutputError(f"{out / PROVENANCE}: missing or unreadable ({err}), so the collection is not "
                          f"finished; {fix}") from err


def _store(manifest: dict, opts: MetadataOptions) -> None:
    """Put the new options in the manifest: its "metadata" section (and the [metadata] table
    stored beside it, if any) and the config that resume/extend/rerender rebuild from, which
    would otherwise rewrite the metadata with the old options."""
    d = opts.to_dict()
    table = {k: v for k, v in d.items() if k in TABLE_KEYS}
    section = manifest["metadata"] = {**manifest.get("metadata", {}), **d}
    if "table" in section:
        section["table"] = table
    config = manifest.get("source", {}).get("config") if isinstance(manifest.get("source"), dict) else None
    if isinstance(config, dict):
        config.update({k: d[k] for k in BASE_KEYS}, metadata=table)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return read_regular(path, MAX_METADATA_BYTES)
    except OSError:
        return None  # missing, or not a plain file: the atomic write replaces it


def _int(x: Any) -> int:
    if not isinstance(x, int) or isinstance(x, bool):
        raise TypeError(f"expected an integer, got {x!r}")
    return x


def _trait_names(plan: Any) -> dict[str, list[str]]:
    """Layer display name -> trait names, from whatever layer lists the manifest's plan holds
    (used to give numbers a display_type made back their exact names, e.g. 7 -> '07')."""
    out: dict[str, list[str]] = {}
    if not isinstance(plan, dict):
        return out
    layers = list(plan.get("layers") or [])
    for stack in plan.get("stacks") or []:
        if isinstance(stack, dict):
            layers += stack.get("layers") or []
    for layer in layers:
        try:
            out.setdefault(layer["name"], []).extend(t[0] for t in layer["traits"] if isinstance(t[0], str))
        except (KeyError, TypeError, IndexError):
            continue
    return out


def _as_name(trait_type: str, value: Any, names: dict[str, list[str]]) -> str:
    if isinstance(value, str):
        return value
    matches = {t for t in names.get(trait_type, ()) if parse_number(t) == value}
    if len(matches) == 1:
        return matches.pop()
    return str(value)  # json's own spelling: 7 -> '7', 2.5 -> '2.5'


def _read_item(path: Path, n: int, names: dict[str, list[str]], fix: str) -> tuple[list[tuple[str, str]], str | None]:
    """(trait_type, trait name) pairs and dna of one item's metadata file."""
    if not os.path.lexists(path):
        raise OutputError(f"{path}: missing; {fix}")
    try:
        meta = json_input.loads(read_regular(path, MAX_METADATA_BYTES))
        attributes = []
        for a in meta["attributes"]:
            trait_type, value = a["trait_type"] if "trait_type" in a else a["name"], a["value"]  # TZIP-21: name
            if not isinstance(trait_type, str) or isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ValueError(f"attribute {a!r} is not a trait")
            attributes.append((trait_type, _as_name(trait_type, value, names)))
        dna = meta.get("dna")
        if dna is not None and not isinstance(dna, str):
            raise ValueError(f"dna {dna!r} is not a string")
        if meta.get("edition", n) != n:
            raise ValueError(f"edition {meta['edition']!r} in the file of item {n}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise OutputError(f"{path}: unreadable ({type(err).__name__}: {err}); {fix}") from err
    return attributes, dna
