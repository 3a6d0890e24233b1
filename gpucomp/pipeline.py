"""Wires the stages: layers -> plan -> composite -> encode -> write, with bounded queues.

`Generation` is the streaming API: iterate it to get each finished item as soon as its
files are on disk. Memory stays flat: at most a few batches of pixels are in flight.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .config import Config
from .encode import deflate_engine, encode_deflated, encode_filtered, encode_png, get_preset
from .errors import ConfigError, GpucompError, Interrupted, OutputError
from .journal import JOURNAL, Journal, load_records, rewrite_journal, unfinished, write_provenance
from .lock import OutputLock
from .metadata import check_numbers, check_traits, item_metadata, options_for_config
from .output import (MANIFEST, TMP_PREFIX, atomic_write_bytes, atomic_write_json, check_output, ensure_folder,
                     json_bytes, reset_output, write_collection_metadata)
from .openrarity import metadata_columns
from .rarity import from_layerset, write_report
from .resume import clean_temporaries, differences, find_finished, make_manifest, read_manifest
from .stats import Progress, Stats


def _fault(point: str) -> None:
    """Test hooks for tests/test_faults.py: GPUCOMP_TEST_KILL=<point> kills this process with
    SIGKILL right there; GPUCOMP_TEST_SLOW=<seconds> slows each item so a run can be caught midway."""
    if os.environ.get("GPUCOMP_TEST_KILL") == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if point.startswith("image:") and "GPUCOMP_TEST_SLOW" in os.environ:
        time.sleep(float(os.environ["GPUCOMP_TEST_SLOW"]))


@dataclass(frozen=True)
class Item:
    """One finished item: its number, traits (layer display name -> trait name) and files."""

    number: int
    traits: dict
    image: Path
    metadata: Path


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


def load_stacks(layers_dir, cfg: Config, progress=None):
    """Read every layer folder the config uses, once; returns (all layers as one LayerSet,
    [(LayerSet view, LayerOptions)] per stack). Stacks share trait objects."""
    from .collection import stack_layerset
    from .config import LayerOption
    from .layers import list_layer_folders, load_layers

    stack_opts = [list(st.layers) for st in cfg.stacks] or [list(cfg.layers)]
    if not any(stack_opts):
        root = Path(layers_dir)
        if not root.is_dir():
            from .errors import LayerError

            raise LayerError(f"{root}: layers folder not found; pass the folder that holds one sub-folder per layer")
        stack_opts = [[LayerOption(f) for f in list_layer_folders(root)]]
    folders = list(dict.fromkeys(o.folder for opts in stack_opts for o in opts)) or None
    ls = load_layers(layers_dir, order=folders, delimiter=cfg.delimiter, progress=progress, empty_name=cfg.empty_name)
    loaded = {layer.folder: layer for layer in ls.layers}
    stacks = [(stack_layerset(loaded, ls.root, ls.width, ls.height, opts), opts) for opts in stack_opts]
    return ls, stacks


class Generation:
    """Iterable over the items finished in this run; `summary` holds throughput and stage
    times afterwards. Re-running into an output that holds an interrupted collection made
    from the same inputs resumes it; `stop()` (thread- and signal-safe) ends a run early.

    `extend=M` adds M new unique items to a finished or unfinished collection; `rerender=True`
    renders the same plan again with changed trait art, redoing only items that use it."""

    def __init__(self, layers_dir, out_dir, cfg: Config, log: Callable[[str], None] | None = None,
                 progress: bool | None = None, backend=None, resume: bool = False,
                 stop_timeout: float | None = None, extend: int = 0, extend_stack: int = 0, rerender: bool = False):
        self.layers_dir, self.out, self.cfg = Path(layers_dir), Path(out_dir), cfg
        self.log = log or (lambda msg: None)
        self.progress_enabled = progress
        self.backend = backend
        self.resume = resume or bool(extend) or rerender
        self.extend, self.extend_stack, self.rerender = extend, extend_stack, rerender
        self.stop_timeout = stop_timeout  # after stop(): how long to wait for items in flight (None: all)
        self.stats = Stats()
        self.summary: dict = {}
        self.rendering = False  # True while items are in flight (stop() matters only then)
        self._stop = threading.Event()
        self._backend_init: Future | None = None

    def stop(self) -> None:
        """Finish the items in flight, then end iteration with `Interrupted`."""
        self._stop.set()

    def __iter__(self) -> Iterator[Item]:
        from .collection import derived_seed, metadata_layers, plan_collection

        cfg, out, st = self.cfg, self.out, self.stats
        self._t_start = time.perf_counter()
        state = check_output(out, cfg.force, self.resume)
        self._start_backend()
        with st.timer("load"):
            ls, stacks = load_stacks(self.layers_dir, cfg)
        self.log(f"layers: {len(ls.layers)} layers, {ls.trait_count} traits, {ls.width}x{ls.height}"
                 + (f", {len(stacks)} stacks" if len(stacks) > 1 else f", {stacks[0][0].combinations} combinations"))
        old = read_manifest(out) if state == "ours" and not cfg.force else None
        extensions = list(old.get("plan", {}).get("extensions", [])) if old else []
        if self.extend and extensions and unfinished(out):
            raise OutputError(f"{out}: an earlier extend (or its resume) did not finish; `gpucomp resume {out}` "
                              f"finishes it (extending again now would add {self.extend} more items on top)")
        if self.extend:
            if not 0 <= self.extend_stack < len(stacks):
                raise ConfigError(f"extend: stack {self.extend_stack + 1} does not exist (the collection has {len(stacks)})")
            extensions.append({"stack": self.extend_stack, "size": self.extend,
                               "seed": derived_seed(cfg.seed, "extension", len(extensions))})
        with st.timer("plan"):
            cplan = plan_collection(cfg, stacks, extensions)
        check_traits(options_for_config(cfg), metadata_layers(stacks), "config")
        check_numbers(options_for_config(cfg), cplan.start, cplan.start + len(cplan) - 1, "config")  # extend too
        # Only now, with layers and plan known to be good, is anything written.
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{out}: cannot create the output folder ({err.strerror or err})") from err
        try:
            with OutputLock(out) as lock:
                if lock.stale:
                    self.log(f"note: an earlier run (pid {lock.stale.get('pid', '?')}) ended without finishing")
                yield from self._run(ls, stacks, cplan, extensions)
        except OutputError:
            raise
        except OSError as err:  # the manifest, journal, final files or lock: same promise as item writes
            raise self._write_error(Path(err.filename or out), err, 0, 0) from err

    def _open_output(self, ls, stacks, cplan, extensions, preset) -> tuple[bool, set, dict]:
        """Check the output against the new manifest. Returns (resume, changed traits, manifest):
        whether an earlier collection of the same inputs continues, and for a re-render which
        (folder, trait) art changed."""
        from .resume import changed_traits

        out, cfg = self.out, self.cfg
        manifest = make_manifest(cfg, ls, stacks, cplan, self._deflate(preset), extensions, self.layers_dir)
        resume, changed = False, set()
        if (out / MANIFEST).exists() and not cfg.force:
            old = read_manifest(out)
            if self.extend:  # the old plan is the new one without the extension
                if old.get("plan", {}).get("extensions", []) != manifest["plan"]["extensions"][:-1]:
                    raise OutputError(f"{out}: another run changed this collection while this one was starting; "
                                      f"check it with `gpucomp resume {out}`, then extend again")
                old = json.loads(json.dumps(old))
                old.setdefault("plan", {})["extensions"] = manifest["plan"]["extensions"]
                if old.get("plan_sha256") == cplan.digest(len(cplan.segments) - 1):
                    old["plan_sha256"] = manifest["plan_sha256"]
            diffs = differences(old, manifest, art=not self.rerender)
            if diffs:
                raise OutputError(
                    f"{out}: holds a collection made from other inputs: {'; '.join(diffs)}. Resuming would mix two "
                    f"collections: use the original layers and settings, or pass --force to discard it and start over")
            if self.rerender:
                oa, na = old.get("art", {}), manifest["art"]
                if any(oa.get(k) != na[k] for k in ("width", "height", "preset", "opaque_rgb", "blend")):
                    changed = {"*"}
                else:
                    changed = changed_traits(old, manifest)
                self.log(f"re-render: {'every item' if '*' in changed else f'{len(changed)} changed traits'}")
            if old.get("encoder") != manifest["encoder"]:
                self.log(f"note: PNGs were encoded with {old.get('encoder')}, now {manifest['encoder']}: pixels match, "
                         f"file bytes of newly rendered items may not")
            resume = True
        elif cfg.force:
            reset_output(out)
        return resume, changed, manifest

    def _choose(self):
        from .backends.select import choose

        cfg = self.cfg
        backend, why = choose(cfg.backend, opaque_rgb=cfg.opaque_rgb, batch_size=cfg.batch_size,
                              vram_budget=cfg.vram_budget, cache=cfg.cache)
        if hasattr(backend, "warm"):
            backend.warm(deflate=get_preset(cfg.preset).engine == "gpu")
        return backend, why

    def _start_backend(self) -> None:
        """Pick the backend beside the layer loading: importing CuPy, creating the CUDA context and
        compiling (or loading cached) kernels take CPU time the decode threads do not need."""
        if self.backend is None and self.cfg.backend != "cpu":
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpucomp-init")
            self._backend_init = pool.submit(self._choose)
            pool.shutdown(wait=False)

    def _deflate(self, preset) -> str:
        return deflate_engine(preset, gpu=getattr(self.backend, "gpu_deflate", False))

    def _write_manifest(self, manifest: dict) -> None:
        out = self.out
        atomic_write_json(out / MANIFEST, manifest, fsync=True)  # the one file a resume cannot rebuild
        _fault("manifest")
        for sub in ("images", "metadata"):
            ensure_folder(out / sub)
        clean_temporaries(out, TMP_PREFIX)

    def _run(self, ls, stacks, cplan, extensions) -> Iterator[Item]:
        from .plan import dna

        cfg, out, st = self.cfg, self.out, self.stats
        preset = get_preset(cfg.preset)
        workers = cfg.workers or os.cpu_count() or 1
        if self.backend is None:
            with st.timer("backend_init"):
                self.backend, why = self._backend_init.result() if self._backend_init else self._choose()
            self.log(f"backend: {self.backend.name} ({why})")
            for note in getattr(self.backend, "fallbacks", []):
                self.log(f"warning: {note}")
        backend = self.backend
        resume, changed, manifest = self._open_output(ls, stacks, cplan, extensions, preset)
        n = len(cplan)
        start = cplan.start
        # Position p = number - start indexes per-item state; g is the index in plan order.
        g_of = np.argsort(cplan.numbers, kind="stable")
        numbers = range(start, start + n)  # lazy: no per-item Python objects

        def locate(p: int):
            return cplan.locate(int(g_of[p]))

        opts = options_for_config(cfg)
        single_stack = len(stacks) == 1

        def meta_bytes(p: int) -> bytes:
            seg, row = locate(p)
            # With several stacks a trait name alone is ambiguous: qualify it by its layer.
            key = seg.dna_names(row) if single_stack else [f"{a}/{b}" for a, b in seg.identity(row)]
            return json_bytes(item_metadata(numbers[p], seg.attributes(row), dna(key), opts))

        shas = np.zeros((n, 32), np.uint8)
        if resume:
            shas = load_records(out, start, n)
        if changed:
            # Forget the old images' records before the new manifest names the new art, so that
            # an interrupted re-render still knows which items are left to redo.
            shas[self._uses(cplan, changed, g_of)] = 0
            rewrite_journal(out, numbers, shas)
        self._write_manifest(manifest)
        if resume:
            with st.timer("verify"):
                done = find_finished(out, numbers, shas, meta_bytes, workers)
            shas[~done] = 0
            self.log(f"resuming: {int(done.sum())} of {n} items finished and intact, {n - int(done.sum())} to render")
        else:
            done = np.zeros(n, bool)
        todo_pos = np.flatnonzero(~done)
        self.finished_before = n - len(todo_pos)
        note = ""
        if preset.engine == "gpu" != self._deflate(preset):
            note = (" — the gpu preset needs the CUDA backend" if backend.name != "cuda"
                    else " — GPU deflate is unavailable (see the warning above)")
        self.log(f"png: preset {preset.name} ({self._deflate(preset)} deflate){note}")
        progress = Progress(len(todo_pos), self.progress_enabled)
        journal = Journal(out / JOURNAL, fresh=not resume)
        written = [0, 0]  # items, PNG bytes this run: for the summary and the disk-space estimate
        count_lock = threading.Lock()

        def write(p: int, pixels) -> Item:
            number = numbers[p]
            with st.timer("encode"):
                if hasattr(pixels, "idat"):  # deflated on the GPU
                    png = encode_deflated(pixels)
                elif hasattr(pixels, "rows"):  # scanlines the GPU already filtered
                    png = encode_filtered(pixels.rows, pixels.width, pixels.height, pixels.channels, preset)
                else:
                    png = encode_png(pixels, preset)
                digest = hashlib.sha256(png).digest()
            img_path = out / "images" / f"{number}.png"
            meta_path = out / "metadata" / f"{number}.json"
            with st.timer("write"):
                try:
                    atomic_write_bytes(img_path, png)
                    _fault(f"image:{number}")
                    atomic_write_bytes(meta_path, meta_bytes(p))
                except OSError as err:
                    raise self._write_error(img_path, err, len(png), len(todo_pos) - written[0]) from err
                journal.record(number, digest.hex())
            shas[p] = np.frombuffer(digest, np.uint8)
            st.count("png_bytes", len(png))
            with count_lock:
                written[0] += 1
                written[1] += len(png)
            seg, row = locate(p)
            return Item(number, dict(seg.attributes(row)), img_path, meta_path)

        t_render = time.perf_counter()
        pending: set[Future] = set()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpucomp")
        wait_pool = True
        self.rendering = True
        try:
            def drain(block_until: int) -> Iterator[Item]:
                while len(pending) > block_until:
                    finished, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                    if not finished and self._stop.is_set():
                        return  # stop(): the caller cancels what is queued and waits a bounded time
                    pending.difference_update(finished)  # in place: _render_segment holds this set too
                    for f in finished:
                        item = f.result()
                        progress.update()
                        if progress.done == 16:
                            self._check_space(written[1] / max(written[0], 1), len(todo_pos) - written[0])
                        yield item

            g_todo = np.sort(g_of[todo_pos])
            pos_of = np.empty(n, np.int64)
            pos_of[g_of] = np.arange(n)
            for seg in cplan.segments:
                if self._stop.is_set():
                    break
                lo, hi = seg.offset, seg.offset + len(seg.combos)
                rows = g_todo[(g_todo >= lo) & (g_todo < hi)] - lo
                if not len(rows):
                    continue
                yield from drain(0)  # the backend is about to switch to this segment's layers
                with st.timer("prepare"):
                    if getattr(backend, "renders_in_workers", False):
                        # the CPU backend keeps its own sparse copy: dense pixels can go unless a later stack needs them
                        backend.prepare(seg.render_layerset, release_pixels=len(cplan.segments) == 1)
                    else:
                        backend.prepare(seg.render_layerset)
                yield from self._render_segment(backend, seg, rows, pos_of, pool, pending, write, drain, workers, preset)
            if not self._stop.is_set():
                yield from drain(0)
            if self._stop.is_set():
                for f in pending:
                    f.cancel()
                _, running = wait(pending, timeout=self.stop_timeout)
                wait_pool = not running
                self.summary = self._summary(n, written[0], len(todo_pos), t_render, ls, preset, workers, backend)
                self.summary.update(interrupted=True, abandoned_in_flight=len(running))
                raise Interrupted(f"stopped: {self.finished_before + written[0]} of {n} items finished", self.summary)
        except BaseException:
            for f in pending:
                f.cancel()
            raise
        finally:
            self.rendering = False
            pool.shutdown(wait=wait_pool, cancel_futures=True)
            journal.close()
            progress.close()
        with st.timer("finish"):
            write_collection_metadata(out, numbers)
            _fault("finish")
            self._write_rarity(cplan, g_of)
            self.provenance = write_provenance(out, numbers, shas)
            (out / JOURNAL).unlink(missing_ok=True)  # provenance.json now records every item
        self.summary = self._summary(n, written[0], len(todo_pos), t_render, ls, preset, workers, backend)
        self.summary["provenance_hash"] = self.provenance
        backend.close()
        atomic_write_json(out / "summary.json", self.summary)

    def _render_segment(self, backend, seg, rows, pos_of, pool, pending, write, drain, workers, preset):
        """Submit one segment's rows (local indices) to the encode pool; yields finished items."""
        limit = 2 * workers
        if getattr(backend, "renders_in_workers", False):
            def render_and_write(row: int) -> Item:
                with self.stats.timer("composite"):
                    pixels = backend.composite([seg.render_combo(row)])[0]
                return write(int(pos_of[seg.offset + row]), pixels)

            for row in rows:  # a NumPy array: no per-item list
                if self._stop.is_set():
                    return
                pending.add(pool.submit(render_and_write, int(row)))
                yield from drain(limit)
            return
        batches = backend.render(seg.render_combos(rows), self.stats, preset.filter, deflate=self._deflate(preset) == "gpu")
        try:
            for idx, images in batches:
                limit = max(limit, 2 * len(images))
                for j, pixels in zip(idx.tolist(), images):
                    pending.add(pool.submit(write, int(pos_of[seg.offset + rows[j]]), pixels))
                del images
                yield from drain(limit)
                if self._stop.is_set():
                    return
        finally:
            batches.close()

    @staticmethod
    def _uses(cplan, changed: set, g_of: np.ndarray) -> np.ndarray:
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

    def _write_rarity(self, cplan, g_of) -> None:
        """Rarity over the whole collection in item-number order. With several stacks, layers are
        matched by display name (and by order among layers of one name) and an item without a
        layer counts as trait '(none)'; what was asked is then not known per layer."""
        segs = cplan.segments
        # OpenRarity scores what the metadata states (hidden layers and 'none' traits left out)
        attributes = metadata_columns(segs, g_of, options_for_config(self.cfg).display_types)
        if len({seg.stack for seg in segs}) == 1:
            seg0 = segs[0]
            combos = np.concatenate([s.combos for s in segs])[g_of]
            names, traits, weights = from_layerset(seg0.layerset)
            asked = [_asked(t, w, o, len(cplan)) for t, w, o in zip(traits, weights, seg0.options)]
            write_report(self.out, names, traits, asked, combos, start=cplan.start, attributes=attributes)
            return

        def columns(ls):
            seen: dict[str, int] = {}
            for layer in ls.layers:
                k = seen[layer.name] = seen.get(layer.name, -1) + 1
                yield (layer.name, k), layer

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
        labels = [name if k == 0 else f"{name} ({k + 1})" for name, k in keys]
        write_report(self.out, labels, [traits[key] for key in keys], None, combos[g_of], start=cplan.start,
                     attributes=attributes)

    def _summary(self, n, rendered, todo, t_render, ls, preset, workers, backend) -> dict:
        st = self.stats
        render_s = time.perf_counter() - t_render
        total_s = time.perf_counter() - self._t_start
        return {
            "items": n, "rendered": rendered, "resumed_from": self.finished_before, "remaining": todo - rendered,
            "seconds": round(total_s, 3), "render_seconds": round(render_s, 3),
            "items_per_s": round(rendered / render_s, 2) if render_s > 0 and rendered else None,
            "items_per_s_total": round(rendered / total_s, 2),
            "stage_seconds": {k: round(v, 3) for k, v in st.stage_s.items()},
            "avg_png_bytes": int(st.counters.get("png_bytes", 0) / max(rendered, 1)),
            "backend": backend.stats(), "workers": workers, "preset": preset.name,
            "deflate": self._deflate(preset), "width": ls.width, "height": ls.height,
        }

    def _write_error(self, path: Path, err: OSError, item_bytes: int, remaining: int) -> OutputError:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            need = f" (about {item_bytes * remaining * 1.02 / 1e9:.2f} GB more needed for the {remaining} items left)" \
                if remaining else ""
            return OutputError(
                f"{path}: no space left on the device{need}; finished items are kept: free space, then re-run "
                f"the same command to resume")
        return OutputError(f"{path}: cannot write ({err.strerror or err}); finished items are kept: "
                           f"fix the cause, then re-run the same command to resume")

    def _check_space(self, avg_png: float, remaining: int) -> None:
        try:
            free = shutil.disk_usage(self.out).free
        except OSError:
            return
        need = avg_png * remaining * 1.02
        if need > free:
            self.log(f"warning: the remaining {remaining} items need about {need / 1e9:.1f} GB but only "
                     f"{free / 1e9:.1f} GB is free on {self.out}; the run will stop when the disk is full (resumable)")


def generate(layers_dir, out_dir, config: Config | str | os.PathLike | None = None, *, log=None,
             progress: bool | None = False, resume: bool = False, stop_timeout: float | None = None,
             **overrides) -> Generation:
    """Plan and render a collection; iterate the result to stream finished items.

    `config` is a Config, a TOML path or None; keyword overrides (size=, seed=, preset=,
    backend=, workers=, force=, ...) win over it. Nothing runs until iteration starts.
    An output folder holding an unfinished collection of the same inputs is resumed;
    `resume=True` additionally insists that there is one.
    """
    from .config import load_config, with_overrides

    if config is None:
        cfg = Config()
    elif isinstance(config, Config):
        cfg = config
    else:
        cfg = load_config(config)
    cfg = with_overrides(cfg, **overrides)
    return Generation(layers_dir, out_dir, cfg, log=log, progress=progress, resume=resume, stop_timeout=stop_timeout)


def _from_output(out_dir, layers, overrides: dict) -> tuple[Path, Config]:
    """The layers folder and config a collection was made from (its manifest's `source`)."""
    from .config import from_dict, with_overrides
    from .resume import RUN_FIELDS

    out = Path(out_dir)
    if not os.path.lexists(out / MANIFEST):
        raise OutputError(f"{out}: not a gpucomp output (no {MANIFEST}); pass the folder `gpucomp generate` wrote")
    source = read_manifest(out).get("source")
    if not isinstance(source, dict):
        raise OutputError(f"{out / MANIFEST}: written by an older gpucomp without a source section; re-generate it")
    bad = set(overrides) - set(RUN_FIELDS)
    if bad:
        raise ConfigError(f"only run options can be changed here ({', '.join(RUN_FIELDS)}), not {', '.join(sorted(bad))}")
    cfg = with_overrides(from_dict(source["config"]), **{**overrides, "force": None})
    if not layers and not Path(source["layers_dir"]).is_dir():
        raise OutputError(f"{out}: the layers folder it was made from, {source['layers_dir']}, is gone; "
                          f"pass --layers (layers= in Python) with its new place")
    return Path(layers or source["layers_dir"]), cfg


def extend(out_dir, size: int, *, stack: int = 1, layers=None, log=None, progress: bool | None = False,
           stop_timeout: float | None = None, **run_options) -> Generation:
    """Add `size` new unique items (numbered after the last) to an existing collection, drawn
    from stack `stack` (1-based) without repeating any item; nothing existing is re-rendered."""
    if size < 1:
        raise ConfigError(f"extend: the number of new items must be at least 1, got {size}")
    layers_dir, cfg = _from_output(out_dir, layers, run_options)
    return Generation(layers_dir, out_dir, cfg, log=log, progress=progress, stop_timeout=stop_timeout,
                      extend=size, extend_stack=stack - 1)


def resume(out_dir, *, layers=None, log=None, progress: bool | None = False, stop_timeout: float | None = None,
           **run_options) -> Generation:
    """Finish an interrupted generate, extend or re-render from the collection's own manifest."""
    layers_dir, cfg = _from_output(out_dir, layers, run_options)
    return Generation(layers_dir, out_dir, cfg, log=log, progress=progress, stop_timeout=stop_timeout, resume=True)


def rerender(out_dir, *, layers=None, log=None, progress: bool | None = False, stop_timeout: float | None = None,
             **run_options) -> Generation:
    """Render the same plan (same items, DNA and metadata) with the trait art as it is now in the
    layers folder (or `layers`); only items that use a changed trait are rendered again."""
    layers_dir, cfg = _from_output(out_dir, layers, run_options)
    return Generation(layers_dir, out_dir, cfg, log=log, progress=progress, stop_timeout=stop_timeout, rerender=True)


def run(layers_dir, out_dir, config=None, **kwargs) -> dict:
    """Render a whole collection and return its summary dict."""
    gen = generate(layers_dir, out_dir, config, **kwargs)
    for _ in gen:
        pass
    return gen.summary


__all__ = ["Generation", "GpucompError", "Interrupted", "Item", "extend", "generate", "rerender", "resume", "run"]
