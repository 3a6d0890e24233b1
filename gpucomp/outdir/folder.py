"""The collection folder (OUT): everything about it except rendering items.

`CollectionFolder` refuses unusable layouts up front, takes the lock before it reads the
manifest, reads what the collection is made of (for resume / extend / rerender: the layers
folder and config recorded in the manifest, read under the lock), plans it, checks an earlier
collection there, writes the manifest, finds the items that are finished and intact, and once
every shard is rendered writes the collection's own files: _metadata.json, the rarity report
and provenance.json. Rendering the items is shard.py's job; pipeline.py wires the two.
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from gpucomp._shared.files import TMP_PREFIX, atomic_write_json, ensure_folder, reachable
from gpucomp.config import MAX_SIZE, Config, from_dict, with_overrides
from gpucomp.encode.media import check_fits, output_files, size_folders
from gpucomp.errors import ConfigError, LayerError, OutputError
from gpucomp.layers.layerset import list_layer_folders, load_layers, warn_unordered
from gpucomp.metadata.openrarity import metadata_columns
from gpucomp.metadata.rarity import from_layerset, unreachable, write_report
from gpucomp.metadata.tokens import check_numbers, check_size, check_traits, options_for_config
from gpucomp.outdir.journal import JOURNAL, Journal, load_records, rewrite_journal, unfinished, write_provenance
from gpucomp.outdir.layout import LOCK, MANIFEST, check_output, reset_output, write_collection_metadata
from gpucomp.outdir.lock import OutputLock
from gpucomp.outdir.resume import (
    RUN_FIELDS,
    changed_traits,
    clean_temporaries,
    differences,
    find_finished,
    make_manifest,
    read_manifest,
)
from gpucomp.outdir.shard import ItemIndex, fault, read_journal
from gpucomp.plan.collection import derived_seed, metadata_layers, plan_collection, stack_layerset
from gpucomp.plan.frames import plan_frames
from gpucomp.plan.options import LayerOption

SHARD_JOURNALS = "gpucomp.shard-"  # OUT/gpucomp.shard-<first>-<last>.journal: one per Ray shard


@dataclass(frozen=True)
class Request:
    """What a command asks of a collection folder."""

    mode: str = "generate"  # generate | resume | extend | rerender
    insist: bool = False  # --resume: there must be a collection to resume
    extend: int = 0  # new items (extend)
    extend_stack: int = 0  # 0-based stack to draw them from
    layers: str | os.PathLike | None = None  # resume / extend / rerender: the layers folder, if moved
    run_options: dict = field(default_factory=dict)  # resume / extend / rerender: run options given now
    from_output: bool = False  # read the layers folder and config from the manifest (under the lock)


@dataclass
class Planned:
    """A collection planned from its inputs, not yet compared with what OUT holds."""

    cfg: Config
    layers_dir: Path
    ls: object  # every loaded layer (LayerSet)
    stacks: list  # (LayerSet, options) per stack
    cplan: object  # collection.CollectionPlan
    extensions: list
    frames: int = 1  # frames of the animation (layers/frames.py); 1 without animated output


@dataclass
class Job:
    """A run under the lock: its manifest is written; `todo` are the positions left to render."""

    out: Path
    planned: Planned
    index: ItemIndex
    shas: np.ndarray  # (n, 32) uint8 SHA-256 of each position's image; all-zero: not finished
    todo: np.ndarray  # positions to render
    resume: bool
    journal: Journal


def source_of(out: Path, manifest: dict, layers, run_options: dict) -> tuple[Path, Config]:
    """The layers folder and config a collection was made from (its manifest's `source`), with
    the run options given now (they never change the output)."""
    source = manifest.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("config"), dict):
        raise OutputError(f"{out / MANIFEST}: written by an older gpucomp without a source section; re-generate it")
    bad = set(run_options) - set(RUN_FIELDS)
    if bad:
        raise ConfigError(f"only run options can be changed here ({', '.join(RUN_FIELDS)}), not {', '.join(sorted(bad))}")
    cfg = with_overrides(from_dict(source["config"]), **{**run_options, "force": None})
    cfg = replace(cfg, **{k: reachable(getattr(cfg, k)) for k in ("from_list", "one_of_ones") if getattr(cfg, k)})
    recorded = reachable(str(source.get("layers_dir")))
    if not layers and not Path(recorded).is_dir():
        raise OutputError(f"{out}: the layers folder it was made from, {recorded}, is gone; "
                          f"pass --layers (layers= in Python) with its new place")
    return Path(layers or recorded), cfg


def check_apart(layers_dir, out) -> None:
    """Refuse an output folder inside the layers folder (its images would become layers of the
    next run) and a layers folder inside the output folder. Writes nothing."""
    lay, dest = Path(os.path.realpath(layers_dir)), Path(os.path.realpath(out))
    if dest == lay or lay in dest.parents:
        raise OutputError(f"{out}: the output folder is inside the layers folder {layers_dir}, so its images would "
                          f"be read as layers by the next run; choose an output folder outside {layers_dir}")
    if dest in lay.parents:
        raise OutputError(f"{layers_dir}: the layers folder is inside the output folder {out}; move the layers "
                          f"out of it or choose another output folder")


def weight_warnings(stacks, sizes) -> list[str]:
    """Traits whose weight asks for a share that this many unique items cannot have (rarity.unreachable),
    per stack: said before rendering, as the sampler can only come close to what uniqueness allows."""
    out = []
    for k, ((sl, opts), size) in enumerate(zip(stacks, sizes, strict=True)):
        dna = [(layer, o) for layer, o in zip(sl.layers, opts, strict=True) if o.dna]
        lines = unreachable([la.name for la, _ in dna], [[t.name for t in la.traits] for la, _ in dna],
                            [la.weights for la, _ in dna], size, [not o.exact for _, o in dna])
        out += [f"stack {k + 1}: {line}" if len(stacks) > 1 else line for line in lines]
    return out


def load_stacks(layers_dir, cfg: Config, progress=None, warn_order: bool = True):
    """Read every layer folder the config uses, once; returns (all layers as one LayerSet,
    [(LayerSet view, LayerOptions)] per stack). Stacks share trait objects. With `warn_order`, folders
    stacked in name order because nothing says otherwise are warned about (not again on resume)."""
    stack_opts = [list(st.layers) for st in cfg.stacks] or [list(cfg.layers)]
    if not any(stack_opts):
        root = Path(layers_dir)
        if not root.is_dir():
            raise LayerError(f"{root}: layers folder not found; pass the folder that holds one sub-folder per layer")
        stack_opts = [[LayerOption(f) for f in list_layer_folders(root)]]
        if warn_order:
            warn_unordered(root, [o.folder for o in stack_opts[0]])
    folders = list(dict.fromkeys(o.folder for opts in stack_opts for o in opts)) or None
    ls = load_layers(layers_dir, order=folders, delimiter=cfg.delimiter, progress=progress, empty_name=cfg.empty_name,
                     animated=cfg.animation is not None)
    loaded = {layer.folder: layer for layer in ls.layers}
    stacks = [(stack_layerset(loaded, ls.root, ls.width, ls.height, opts), opts) for opts in stack_opts]
    return ls, stacks


def _remove_if_empty(out: Path) -> None:
    """A folder this run created and failed in before writing anything (a refused backend, a limit
    found after planning): it holds only the lock file, and goes, so no empty output is left behind."""
    try:
        if {p.name for p in out.iterdir()} <= {LOCK}:
            (out / LOCK).unlink(missing_ok=True)
            out.rmdir()
    except OSError:
        pass  # something else is in it now (another run, a user): it stays


class CollectionFolder:
    """OUT for one run: `with` it to check and lock, then plan(), open(), and finish()."""

    def __init__(self, out, cfg: Config, layers_dir, request: Request, log: Callable[[str], None], stats):
        self.out, self.cfg, self.layers_dir, self.request = Path(out), cfg, Path(layers_dir), request
        self.log, self.stats = log, stats
        self.lock: OutputLock | None = None
        self.journal: Journal | None = None
        self.created = False  # this run made OUT: a run that fails before writing into it removes it again

    def __enter__(self) -> "CollectionFolder":
        check_apart(self.layers_dir, self.out)
        check_output(self.out, self.cfg.force, self.request.insist)
        if self.out.is_dir():  # an existing folder: nothing about it is read before the lock
            self._take_lock()
        return self

    def __exit__(self, *exc) -> None:
        if self.journal is not None:
            self.journal.close()
        if self.lock is not None:
            self.lock.release()
            if exc[0] is not None and self.created:
                _remove_if_empty(self.out)

    def _take_lock(self) -> None:
        self.created = not os.path.lexists(self.out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{self.out}: cannot create the output folder ({err.strerror or err})") from err
        self.lock = OutputLock(self.out).acquire()
        if self.lock.stale:
            self.log(f"note: an earlier run (pid {self.lock.stale.get('pid', '?')}) ended without finishing")

    # ---- planning --------------------------------------------------------------------------
    def plan(self) -> Planned:
        """Read the inputs and plan the collection. A new folder is created and locked only now,
        with the layers and the plan known to be good."""
        cfg, layers_dir = self.cfg, self.layers_dir
        old = self._old_manifest()
        if self.request.from_output:
            if old is None:
                raise OutputError(f"{self.out}: not a gpucomp output (no {MANIFEST}); pass the folder "
                                  f"`gpucomp generate` wrote")
            layers_dir, cfg = source_of(self.out, old, self.request.layers, self.request.run_options)
            check_apart(layers_dir, self.out)
            self.cfg = cfg
        with self.stats.timer("load"):
            ls, stacks = load_stacks(layers_dir, cfg, warn_order=old is None)  # a collection's order is set
        self.log(f"layers: {len(ls.layers)} layers, {ls.trait_count} traits, {ls.width}x{ls.height}"
                 + (f", {len(stacks)} stacks" if len(stacks) > 1 else f", {stacks[0][0].combinations} combinations"))
        extensions = self._extensions(old, cfg, len(stacks))
        if not cfg.from_list and not extensions:
            for line in weight_warnings(stacks, cfg.stack_sizes):
                self.log(f"warning: {line}")
        with self.stats.timer("plan"):
            cplan = plan_collection(cfg, stacks, extensions)
        check_traits(options_for_config(cfg), metadata_layers(stacks), "config")
        check_fits(output_files(cfg.formats, cfg.sizes, cfg.animation), ls.width, ls.height, "config")  # each format
        frames = plan_frames(cfg, ls)
        last = cplan.start + len(cplan) - 1  # extend too
        check_numbers(options_for_config(cfg), cplan.start, last, "config")
        check_size(options_for_config(cfg), metadata_layers(stacks), last, "config")
        if self.lock is None:
            self._take_lock()
        return Planned(cfg, Path(layers_dir), ls, stacks, cplan, extensions, frames)

    def _old_manifest(self) -> dict | None:
        if self.lock is None or self.cfg.force or not os.path.lexists(self.out / MANIFEST):
            return None
        return read_manifest(self.out)

    def _extensions(self, old: dict | None, cfg: Config, n_stacks: int) -> list:
        """The collection's extensions: the manifest's, plus the one an extend adds."""
        plan = old.get("plan") if old else None
        extensions = list(plan.get("extensions", [])) if isinstance(plan, dict) else []
        size = self.request.extend
        if not size:
            return extensions
        if extensions and unfinished(self.out):
            raise OutputError(f"{self.out}: an earlier extend (or its resume) did not finish; `gpucomp resume "
                              f"{self.out}` finishes it (extending again now would add {size} more items on top)")
        if not 0 <= self.request.extend_stack < n_stacks:
            raise ConfigError(f"extend: stack {self.request.extend_stack + 1} does not exist (the collection has "
                              f"{n_stacks})")
        total = cfg.size + sum(int(e.get("size", 0)) for e in extensions) + size
        if total > MAX_SIZE:
            raise ConfigError(f"extend: {size} new items would make {total}, more than gpucomp supports "
                              f"({MAX_SIZE}); lower the number")
        extensions.append({"stack": self.request.extend_stack, "size": size,
                           "seed": derived_seed(cfg.seed, "extension", len(extensions))})
        return extensions

    # ---- opening: compare, write the manifest, find what is finished --------------------------
    def open(self, planned: Planned, encoder: str, workers: int) -> Job:
        """Check OUT against the new manifest, write it, and find the finished items."""
        p = planned
        manifest = make_manifest(p.cfg, p.ls, p.stacks, p.cplan, encoder, p.extensions, p.layers_dir, p.frames)
        resume, changed = self._compare(manifest, p.cplan)
        index = ItemIndex(p.cplan, options_for_config(p.cfg), single_stack=len(p.stacks) == 1,
                          files=output_files(p.cfg.formats, p.cfg.sizes, p.cfg.animation),
                          animation=p.cfg.animation, frames=p.frames)
        shas = np.zeros((index.n, 32), np.uint8)
        if resume:
            merge_shard_journals(self.out)
            shas = load_records(self.out, index.start, index.n)
        else:
            clear_shard_journals(self.out)
        if changed:
            # Forget the old images' records before the new manifest names the new art, so that
            # an interrupted re-render still knows which items are left to redo.
            shas[uses(p.cplan, changed, index.g_of)] = 0
            rewrite_journal(self.out, index.numbers, shas)
        # The journal exists before the manifest names this run's plan: from then on the
        # collection counts as unfinished (a second extend is refused), whenever it is killed.
        self.journal = Journal(self.out / JOURNAL, fresh=not resume)
        self._write_manifest(manifest, size_folders(index.files))
        done = self._finished(index, shas, workers) if resume else np.zeros(index.n, bool)
        shas[~done] = 0
        return Job(self.out, p, index, shas, np.flatnonzero(~done), resume, self.journal)

    def _compare(self, manifest: dict, cplan) -> tuple[bool, set]:
        """(resume, changed traits): whether an earlier collection of the same inputs continues,
        and for a re-render which (folder, trait) art changed."""
        out = self.out
        if self.cfg.force:
            reset_output(out)
            clear_shard_journals(out)
            return False, set()
        if not os.path.lexists(out / MANIFEST):
            return False, set()
        old = read_manifest(out)
        if self.request.extend:  # the old plan is the new one without the extension
            old = self._as_extended(old, manifest, cplan)
        shown = shlex.quote(str(out))  # as a command line names it
        diffs = differences(old, manifest, art=self.request.mode != "rerender", folder=shown)
        if diffs:
            was, now = old.get("plan", {}).get("size"), manifest["plan"]["size"]
            more = now - was if len(diffs) == 1 and isinstance(was, int) and now > was else 0
            grow = (f"; to add {more} item{'s' * (more != 1)} to it, keep its size and run `gpucomp extend "
                    f"{shown} -n {more}`") if more else ""
            raise OutputError(
                f"{out}: holds a collection made from other inputs: {'; '.join(diffs)}. Resuming would mix two "
                f"collections: use the original layers and settings, or pass --force to discard it and start over"
                f"{grow}")
        changed = self._changed_art(old, manifest) if self.request.mode == "rerender" else set()
        if old.get("encoder") != manifest["encoder"]:
            self.log(f"note: PNGs were encoded with {old.get('encoder')}, now {manifest['encoder']}: pixels match, "
                     f"file bytes of newly rendered items may not")
        return True, changed

    def _as_extended(self, old: dict, manifest: dict, cplan) -> dict:
        plan = old.get("plan") if isinstance(old.get("plan"), dict) else {}
        if plan.get("extensions", []) != manifest["plan"]["extensions"][:-1]:
            raise OutputError(f"{self.out}: another run changed this collection while this one was starting; "
                              f"check it with `gpucomp resume {self.out}`, then extend again")
        old = json.loads(json.dumps(old))
        old.setdefault("plan", {})["extensions"] = manifest["plan"]["extensions"]
        if old.get("plan_sha256") == cplan.digest(len(cplan.segments) - 1):
            old["plan_sha256"] = manifest["plan_sha256"]
        return old

    def _changed_art(self, old: dict, manifest: dict) -> set:
        oa, na = old.get("art", {}), manifest["art"]
        if any(oa.get(k) != na[k] for k in ("width", "height", "preset", "opaque_rgb", "blend")):
            changed = {"*"}
        else:
            changed = changed_traits(old, manifest)
        self.log(f"re-render: {'every item' if '*' in changed else f'{len(changed)} changed traits'}")
        return changed

    def _write_manifest(self, manifest: dict, sizes: tuple[str, ...] = ()) -> None:
        """`sizes`: the folders under images/ the sized copies go to (media.size_folders)."""
        out = self.out
        atomic_write_json(out / MANIFEST, manifest, fsync=True)  # the one file a resume cannot rebuild
        fault("manifest")
        for sub in ("images", "metadata", *(f"images/{name}" for name in sizes)):
            ensure_folder(out / sub)
        clean_temporaries(out, TMP_PREFIX, sizes)

    def _finished(self, index: ItemIndex, shas: np.ndarray, workers: int) -> np.ndarray:
        with self.stats.timer("verify"):
            done = find_finished(self.out, index.numbers, shas, index.meta_bytes, workers,
                                 tuple(f.path for f in index.files))
        self.log(f"resuming: {int(done.sum())} of {index.n} items finished and intact, "
                 f"{index.n - int(done.sum())} to render")
        return done

    # ---- finishing ----------------------------------------------------------------------------
    def finish(self, job: Job) -> str:
        """Every item is rendered: write _metadata.json, the rarity report and provenance.json,
        then drop the journals. Returns the provenance hash."""
        out = self.out
        self.journal.close()
        with self.stats.timer("finish"):
            write_collection_metadata(out, job.index.numbers)
            fault("finish")
            write_rarity(out, job.planned.cplan, job.index.g_of, job.index.options.display_types)
            provenance = write_provenance(out, job.index.numbers, job.shas)
            (out / JOURNAL).unlink(missing_ok=True)  # provenance.json now records every item
            clear_shard_journals(out)
        return provenance

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.out / "summary.json", summary)


def uses(cplan, changed: set, g_of: np.ndarray) -> np.ndarray:
    """Bool mask by position: items that use a changed trait ('*': every item)."""
    n = len(cplan)
    if "*" in changed:
        return np.ones(n, bool)
    by_g = np.zeros(n, bool)
    for seg in cplan.segments:
        for li, layer in enumerate(seg.layerset.layers):
            bad = [k for k, t in enumerate(layer.traits) if (layer.folder, t.name) in changed]
            if bad:
                by_g[seg.offset:seg.offset + len(seg.combos)] |= np.isin(seg.combos[:, li], bad)
    return by_g[g_of]


def shard_journal(out: Path, positions: np.ndarray) -> Path:
    """Where a Ray shard journals its items: named by its first and last position."""
    return Path(out) / f"{SHARD_JOURNALS}{int(positions[0])}-{int(positions[-1])}.journal"


def shard_journals(out: Path) -> list[Path]:
    return sorted(p for p in Path(out).glob(f"{SHARD_JOURNALS}*.journal") if p.is_file() and not p.is_symlink())


def merge_shard_journals(out: Path) -> None:
    """Fold the journals of shards a killed Ray run left into OUT/gpucomp.journal (complete lines
    only), then drop them; every record is still checked against its image's hash."""
    parts = shard_journals(out)
    if not parts:
        return
    journal = Journal(Path(out) / JOURNAL, fresh=False)
    try:
        for part in parts:
            for number, sha in read_journal(part).items():
                journal.record(number, sha.hex())
    finally:
        journal.close()
    clear_shard_journals(out)


def clear_shard_journals(out: Path) -> None:
    for part in shard_journals(out):
        part.unlink(missing_ok=True)


def _asked(trait_names: list[str], weights: np.ndarray, option, n: int) -> np.ndarray:
    """What a layer asked for, as shares: exact-count traits their count out of the n items,
    the others the remaining share by weight (the rarity report's asked-for column)."""
    exact = dict(option.exact)
    if not exact:
        return weights
    p = np.array([exact.get(name, 0) / n for name in trait_names])
    rest = np.where([name in exact for name in trait_names], 0.0, weights)
    if rest.sum() > 0:
        p += rest / rest.sum() * max(0.0, 1.0 - p.sum())
    return p


def write_rarity(out: Path, cplan, g_of: np.ndarray, display_types) -> None:
    """Rarity over the whole collection in item-number order. With several stacks, layers are
    matched by display name (and by order among layers of one name) and an item without a
    layer counts as trait '(none)'; what was asked is then not known per layer."""
    segs = cplan.segments
    # OpenRarity scores what the metadata states (hidden layers and 'none' traits left out)
    attributes = metadata_columns(segs, g_of, display_types)
    if len({seg.stack for seg in segs}) == 1:
        seg0 = segs[0]
        combos = np.concatenate([s.combos for s in segs])[g_of]
        names, traits, weights = from_layerset(seg0.layerset)
        asked = [_asked(t, w, o, len(cplan)) for t, w, o in zip(traits, weights, seg0.options, strict=True)]
        write_report(out, names, traits, asked, combos, start=cplan.start, attributes=attributes)
        return
    keys, traits, combos = _stacked_columns(cplan)
    labels = [name if k == 0 else f"{name} ({k + 1})" for name, k in keys]
    write_report(out, labels, [traits[key] for key in keys], None, combos[g_of], start=cplan.start,
                 attributes=attributes)


def _stacked_columns(cplan):
    """Rarity columns of a collection of several stacks: (keys, trait names per key, combos)."""
    def columns(ls):
        seen: dict[str, int] = {}
        for layer in ls.layers:
            k = seen[layer.name] = seen.get(layer.name, -1) + 1
            yield (layer.name, k), layer

    segs = cplan.segments
    keys = list(dict.fromkeys(key for s in segs for key, _ in columns(s.layerset)))
    traits = {key: ["(none)"] for key in keys}
    for s in segs:
        for key, layer in columns(s.layerset):
            traits[key] += [t.name for t in layer.traits if t.name not in traits[key]]
    combos = np.zeros((len(cplan), len(keys)), np.int32)
    for s in segs:
        for li, (key, layer) in enumerate(columns(s.layerset)):
            lut = np.array([traits[key].index(t.name) for t in layer.traits], np.int32)
            combos[s.offset:s.offset + len(s.combos), keys.index(key)] = lut[s.combos[:, li]]
    return keys, traits, combos
