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
from .encode import deflate_engine, encode_filtered, encode_png, get_preset
from .errors import GpucompError, Interrupted, OutputError
from .journal import JOURNAL, Journal, load_records, write_provenance
from .lock import OutputLock
from .output import (MANIFEST, TMP_PREFIX, atomic_write_bytes, atomic_write_json, check_output, item_metadata,
                     json_bytes, reset_output, write_collection_metadata)
from .rarity import from_layerset, write_report
from .resume import clean_temporaries, differences, find_finished, make_manifest
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


def load_for_config(layers_dir, cfg: Config, progress=None):
    from .layers import load_layers

    order = [lo.folder for lo in cfg.layers] or None
    names = {lo.folder: lo.name for lo in cfg.layers if lo.name}
    return load_layers(layers_dir, order=order, display_names=names, delimiter=cfg.delimiter, progress=progress)


class Generation:
    """Iterable over the items finished in this run; `summary` holds throughput and stage
    times afterwards. Re-running into an output that holds an interrupted collection made
    from the same inputs resumes it; `stop()` (thread- and signal-safe) ends a run early."""

    def __init__(self, layers_dir, out_dir, cfg: Config, log: Callable[[str], None] | None = None,
                 progress: bool | None = None, backend=None, resume: bool = False,
                 stop_timeout: float | None = None):
        self.layers_dir, self.out, self.cfg = Path(layers_dir), Path(out_dir), cfg
        self.log = log or (lambda msg: None)
        self.progress_enabled = progress
        self.backend = backend
        self.resume = resume
        self.stop_timeout = stop_timeout  # after stop(): how long to wait for items in flight (None: all)
        self.stats = Stats()
        self.summary: dict = {}
        self.rendering = False  # True while items are in flight (stop() matters only then)
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish the items in flight, then end iteration with `Interrupted`."""
        self._stop.set()

    def __iter__(self) -> Iterator[Item]:
        from .plan import make_plan

        cfg, out, st = self.cfg, self.out, self.stats
        self._t_start = time.perf_counter()
        check_output(out, cfg.force, self.resume)
        with st.timer("load"):
            ls = load_for_config(self.layers_dir, cfg)
        self.log(f"layers: {len(ls.layers)} layers, {ls.trait_count} traits, {ls.width}x{ls.height}, "
                 f"{ls.combinations} combinations")
        with st.timer("plan"):
            plan = make_plan([layer.weights for layer in ls.layers], cfg.size, cfg.seed, cfg.start)
        # Only now, with layers and plan known to be good, is anything written.
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{out}: cannot create the output folder ({err.strerror or err})") from err
        with OutputLock(out) as lock:
            if lock.stale:
                self.log(f"note: an earlier run (pid {lock.stale.get('pid', '?')}) ended without finishing")
            yield from self._run(ls, plan)

    def _open_output(self, ls, plan, preset) -> bool:
        """Write the manifest; returns True when an earlier collection of the same inputs resumes."""
        out, cfg = self.out, self.cfg
        manifest = make_manifest(cfg, ls, plan, deflate_engine(preset))
        resume = False
        if (out / MANIFEST).exists() and not cfg.force:
            try:
                old = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise OutputError(f"{out / MANIFEST}: unreadable ({err}); pass --force to discard this output and start over") from err
            diffs = differences(old, manifest)
            if diffs:
                raise OutputError(
                    f"{out}: holds a collection made from other inputs: {'; '.join(diffs)}. Resuming would mix two "
                    f"collections: use the original layers and settings, or pass --force to discard it and start over")
            if old.get("encoder") != manifest["encoder"]:
                self.log(f"note: PNGs were encoded with {old.get('encoder')}, now {manifest['encoder']}: pixels match, "
                         f"file bytes of newly rendered items may not")
            resume = True
        elif cfg.force:
            reset_output(out)
        atomic_write_json(out / MANIFEST, manifest)
        _fault("manifest")
        try:
            for sub in ("images", "metadata"):
                (out / sub).mkdir(exist_ok=True)
        except OSError as err:
            raise OutputError(f"{out}: cannot create images/ and metadata/ ({err.strerror or err})") from err
        clean_temporaries(out, TMP_PREFIX)
        return resume

    def _run(self, ls, plan) -> Iterator[Item]:
        from .backends.select import choose
        from .plan import dna

        cfg, out, st = self.cfg, self.out, self.stats
        preset = get_preset(cfg.preset)
        workers = cfg.workers or os.cpu_count() or 1
        resume = self._open_output(ls, plan, preset)
        n = len(plan)
        numbers = [plan.number(i) for i in range(n)]
        layer_names = [layer.name for layer in ls.layers]

        def names_of(i: int) -> list[str]:
            return [layer.traits[j].name for layer, j in zip(ls.layers, plan.combos[i].tolist())]

        def meta_bytes(i: int) -> bytes:
            names = names_of(i)
            return json_bytes(item_metadata(numbers[i], names, layer_names, dna(names), cfg))

        shas = np.zeros((n, 32), np.uint8)
        if resume:
            with st.timer("verify"):
                shas = load_records(out, plan.start, n)
                done = find_finished(out, numbers, shas, meta_bytes, atomic_write_bytes, workers)
            shas[~done] = 0
            self.log(f"resuming: {int(done.sum())} of {n} items finished and intact, {n - int(done.sum())} to render")
        else:
            done = np.zeros(n, bool)
        todo = np.flatnonzero(~done)
        self.finished_before = n - len(todo)

        if self.backend is None:
            self.backend, why = choose(cfg.backend, opaque_rgb=cfg.opaque_rgb, batch_size=cfg.batch_size,
                                       vram_budget=cfg.vram_budget, cache=cfg.cache)
            self.log(f"backend: {self.backend.name} ({why})")
        backend = self.backend
        if len(todo):
            with st.timer("prepare"):
                if getattr(backend, "renders_in_workers", False):
                    backend.prepare(ls, release_pixels=True)  # the CPU backend keeps its own sparse copy
                else:
                    backend.prepare(ls)
        self.log(f"png: preset {preset.name} ({deflate_engine(preset)} deflate)")
        progress = Progress(len(todo), self.progress_enabled)
        journal = Journal(out / JOURNAL, fresh=not resume)
        written = [0, 0]  # items, PNG bytes this run: for the summary and the disk-space estimate
        count_lock = threading.Lock()

        def write(i: int, pixels) -> Item:
            number = numbers[i]
            with st.timer("encode"):
                if hasattr(pixels, "rows"):  # scanlines the GPU already filtered
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
                    atomic_write_bytes(meta_path, meta_bytes(i))
                except OSError as err:
                    raise self._write_error(img_path, err, len(png), len(todo) - written[0]) from err
                journal.record(number, digest.hex())
            shas[i] = np.frombuffer(digest, np.uint8)
            st.count("png_bytes", len(png))
            with count_lock:
                written[0] += 1
                written[1] += len(png)
            return Item(number, dict(zip(layer_names, names_of(i))), img_path, meta_path)

        def render_and_write(i: int) -> Item:
            with st.timer("composite"):
                pixels = backend.composite([plan.combos[i]])[0]
            return write(i, pixels)

        t_render = time.perf_counter()
        pending: set[Future] = set()
        limit = 2 * workers
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpucomp")
        wait_pool = True
        self.rendering = True
        try:
            def drain(block_until: int) -> Iterator[Item]:
                nonlocal pending
                while len(pending) > block_until:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        item = f.result()
                        progress.update()
                        if progress.done == 16:
                            self._check_space(written[1] / max(written[0], 1), len(todo) - written[0])
                        yield item

            if getattr(backend, "renders_in_workers", False):
                for i in todo.tolist():
                    if self._stop.is_set():
                        break
                    pending.add(pool.submit(render_and_write, i))
                    yield from drain(limit)
            else:
                batches = backend.render(plan.combos[todo], st, preset.filter)
                try:
                    for idx, images in batches:
                        limit = max(limit, 2 * len(images))
                        for j, pixels in zip(idx.tolist(), images):
                            pending.add(pool.submit(write, int(todo[j]), pixels))
                        del images
                        yield from drain(limit)
                        if self._stop.is_set():
                            break
                finally:
                    batches.close()
            if self._stop.is_set():
                for f in pending:
                    f.cancel()
                _, running = wait(pending, timeout=self.stop_timeout)
                wait_pool = not running
                self.summary = self._summary(n, written[0], len(todo), t_render, ls, preset, workers, backend)
                self.summary.update(interrupted=True, abandoned_in_flight=len(running))
                raise Interrupted(f"stopped: {self.finished_before + written[0]} of {n} items finished", self.summary)
            yield from drain(0)
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
            write_report(out, *from_layerset(ls), plan.combos, start=plan.start)
            self.provenance = write_provenance(out, numbers, shas)
            (out / JOURNAL).unlink(missing_ok=True)  # provenance.json now records every item
        self.summary = self._summary(n, written[0], len(todo), t_render, ls, preset, workers, backend)
        self.summary["provenance_hash"] = self.provenance
        backend.close()
        atomic_write_json(out / "summary.json", self.summary)

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
            "deflate": deflate_engine(preset), "width": ls.width, "height": ls.height,
        }

    def _write_error(self, path: Path, err: OSError, item_bytes: int, remaining: int) -> OutputError:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            need = item_bytes * remaining * 1.02
            return OutputError(
                f"{path}: no space left on the device (about {need / 1e9:.2f} GB more needed for the "
                f"{remaining} items left); finished items are kept: free space, then re-run the same command to resume")
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


def run(layers_dir, out_dir, config=None, **kwargs) -> dict:
    """Render a whole collection and return its summary dict."""
    gen = generate(layers_dir, out_dir, config, **kwargs)
    for _ in gen:
        pass
    return gen.summary


__all__ = ["Generation", "GpucompError", "Interrupted", "Item", "generate", "run"]
