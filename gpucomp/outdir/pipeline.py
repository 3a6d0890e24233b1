"""The streaming run: a collection folder (folder.py) plus the shards that render its items
(shard.py), in this process or on a Ray cluster (ray_run.py).

`Generation` is the streaming API: iterate it to get each finished item as soon as its files
are on disk. Memory stays flat: at most a few batches of pixels are in flight.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from gpucomp._shared.threads import capped_note, thread_count
from gpucomp.config import MAX_SIZE, Config, load_config, with_list_size, with_overrides
from gpucomp.encode.png import deflate_engine, get_preset
from gpucomp.errors import ConfigError, GpucompError, Interrupted, OutputError
from gpucomp.outdir.folder import CollectionFolder, Job, Planned, Request, source_of
from gpucomp.outdir.layout import MANIFEST
from gpucomp.outdir.ray_run import RayShards
from gpucomp.outdir.resume import read_manifest
from gpucomp.outdir.shard import Done, Item, ShardContext, ShardRenderer, human_bytes, write_error
from gpucomp.outdir.stats import Progress, Stats
from gpucomp.render.select import choose


class LocalShards:
    """Renders a run's items in this process: the whole run is one shard, journaled in
    OUT/gpucomp.journal, with the backend chosen here (beside the layer loading)."""

    def __init__(self, cfg: Config, log: Callable[[str], None], stats: Stats, backend=None):
        self.cfg, self.log, self.stats, self.backend = cfg, log, stats, backend
        self.workers = thread_count(cfg.workers)
        if note := capped_note(cfg.workers, self.workers):
            log(note)
        self.abandoned = 0
        self._init: Future | None = None
        if backend is None and cfg.backend != "cpu":
            # Importing CuPy, creating the CUDA context and compiling kernels take CPU time the
            # decode threads do not need: do it while the layers load.
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpucomp-init")
            self._init = pool.submit(self._choose)
            pool.shutdown(wait=False)

    def _choose(self):
        cfg = self.cfg
        backend, why = choose(cfg.backend, opaque_rgb=cfg.opaque_rgb, batch_size=cfg.batch_size,
                              vram_budget=cfg.vram_budget, cache=cfg.cache)
        backend.warm(deflate=get_preset(cfg.preset).engine == "gpu")
        return backend, why

    def start(self, planned: Planned) -> str:
        """Resolve the backend; returns the deflate engine the run uses (for the manifest)."""
        self.cfg = planned.cfg
        if self.backend is None:
            with self.stats.timer("backend_init"):
                self.backend, why = self._init.result() if self._init else self._choose()
            self.log(f"backend: {self.backend.name} ({why})")
            for note in self.backend.fallbacks:
                self.log(f"warning: {note}")
        preset = get_preset(self.cfg.preset)
        self.deflate = deflate_engine(preset, gpu=self.backend.gpu_deflate)
        note = ""
        if preset.engine == "gpu" != self.deflate:
            note = (" — the gpu preset needs the CUDA backend" if self.backend.name != "cuda"
                    else " — GPU deflate is unavailable (see the warning above)")
        self.log(f"png: preset {preset.name} ({self.deflate} deflate){note}")
        return self.deflate

    def render(self, job: Job, stop: threading.Event, stop_timeout: float | None) -> Iterator[Done]:
        ctx = ShardContext(job.out, job.index, get_preset(self.cfg.preset), self.deflate,
                           release_pixels=job.index.cplan.one_render_layerset(),
                           opaque_rgb=self.cfg.opaque_rgb)
        renderer = ShardRenderer(ctx, self.backend, self.stats, self.workers, stop, stop_timeout)
        try:
            yield from renderer.render(job.todo, job.journal)
        finally:
            self.abandoned = renderer.abandoned

    def backend_stats(self) -> dict:
        return self.backend.stats()

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


class Generation:
    """Iterable over the items finished in this run; `summary` holds throughput and stage
    times afterwards. Re-running into an output that holds an interrupted collection made
    from the same inputs resumes it; `stop()` (thread- and signal-safe) ends a run early.

    `extend=M` adds M new unique items to a finished or unfinished collection; `rerender=True`
    renders the same plan again with changed trait art, redoing only items that use it."""

    def __init__(self, layers_dir, out_dir, cfg: Config, log: Callable[[str], None] | None = None,
                 progress: bool | None = None, backend=None, resume: bool = False,
                 stop_timeout: float | None = None, extend: int = 0, extend_stack: int = 0, rerender: bool = False,
                 request: Request | None = None):
        self.layers_dir, self.out, self.cfg = Path(layers_dir), Path(out_dir), cfg
        self.log = log or (lambda msg: None)
        self.progress_enabled = progress
        self.backend = backend
        mode = "extend" if extend else "rerender" if rerender else "generate"
        self.request = request or Request(mode, insist=resume or bool(extend) or rerender, extend=extend,
                                          extend_stack=extend_stack)
        self.stop_timeout = stop_timeout  # after stop(): how long to wait for items in flight (None: all)
        self.stats = Stats()
        self.summary: dict = {}
        self.rendering = False  # True while items are in flight (stop() matters only then)
        self.finished_before = 0
        self.job: Job | None = None  # the run's job, once the folder is open
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish the items in flight, then end iteration with `Interrupted`."""
        self._stop.set()

    def __iter__(self) -> Iterator[Item]:
        self._t_start = time.perf_counter()
        folder = CollectionFolder(self.out, self.cfg, self.layers_dir, self.request, self.log, self.stats)
        try:
            with folder:
                runner = self._runner()
                try:
                    yield from self._run(folder, runner)
                finally:
                    runner.close()
        except OutputError:
            raise
        except OSError as err:  # the manifest, journal, final files or lock: same promise as item writes
            raise write_error(Path(err.filename or self.out), err, 0, 0) from err

    def every_item(self) -> Iterator[Item]:
        """Every item of the collection, once each, in number order: those an earlier run finished
        (`item.rendered` False) and those this run renders, each as soon as it and all before it are
        on disk. An upload loop over this that is interrupted and run again sees every item (plain
        iteration yields only what this run renders)."""
        rendered = iter(self)
        first = next(rendered, None)  # plans and opens the folder (and renders the first item, if any)
        if self.job is None:
            return
        index, todo = self.job.index, np.zeros(self.job.index.n, bool)
        todo[self.job.todo] = True
        ready = np.zeros(index.n, bool)  # rendered this run, not yet yielded: a byte an item, whatever the order
        if first is not None:
            ready[first.number - index.start] = True
        for p in range(index.n):
            while todo[p] and not ready[p]:
                item = next(rendered, None)
                if item is None:
                    return
                ready[item.number - index.start] = True
            yield replace(index.item(p, self.out), rendered=bool(todo[p]))
        for _ in rendered:  # nothing is left to render: this writes provenance.json and the summary
            pass

    def _run(self, folder: CollectionFolder, runner) -> Iterator[Item]:
        planned = folder.plan()
        self.cfg = planned.cfg
        encoder = runner.start(planned)
        job = folder.open(planned, encoder, runner.workers)
        self.job = job
        self.finished_before = job.index.n - len(job.todo)
        yield from self._collect(job, runner)
        self.provenance = folder.finish(job)
        self.summary = self._summary(job, runner)
        self.summary["provenance_hash"] = self.provenance
        folder.write_summary(self.summary)

    def _runner(self):
        """Where the shards render: on Ray workers (`ray`), or here as one shard."""
        if self.cfg.ray:
            if self.backend is not None:
                raise ConfigError("a backend object renders in this process; it cannot be used with ray")
            return RayShards(self.cfg, self.log, self.stats)
        return LocalShards(self.cfg, self.log, self.stats, self.backend)

    def _collect(self, job: Job, runner) -> Iterator[Item]:
        """Items as the shards finish them: progress, hashes for provenance, the early disk-space
        check; `Interrupted` (with the summary) once a stopped run has wound down."""
        progress = Progress(len(job.todo), self.progress_enabled)
        self._written = [0, 0]  # items, PNG bytes this run: for the summary and the disk-space estimate
        self._t_render = time.perf_counter()
        self.rendering = True
        try:
            for done in runner.render(job, self._stop, self.stop_timeout):
                job.shas[done.position] = np.frombuffer(done.sha256, np.uint8)
                self._written[0] += 1
                self._written[1] += done.png_bytes
                progress.update()
                if progress.done == 16:
                    self._check_space(self._written[1] / 16, len(job.todo) - 16)
                yield job.index.item(done.position, self.out)
        finally:
            self.rendering = False
            progress.close()
        if self._stop.is_set():
            self.summary = self._summary(job, runner)
            self.summary.update(interrupted=True, abandoned_in_flight=runner.abandoned)
            raise Interrupted(f"stopped: {self.finished_before + self._written[0]} of {job.index.n} items finished",
                              self.summary)

    def _summary(self, job: Job, runner) -> dict:
        st, ls = self.stats, job.planned.ls
        rendered, todo = self._written[0], len(job.todo)
        render_s = time.perf_counter() - self._t_render
        total_s = time.perf_counter() - self._t_start
        return {
            "items": job.index.n, "rendered": rendered, "resumed_from": self.finished_before,
            "remaining": todo - rendered, "seconds": round(total_s, 3), "render_seconds": round(render_s, 3),
            "items_per_s": round(rendered / render_s, 2) if render_s > 0 and rendered else None,
            "items_per_s_total": round(rendered / total_s, 2),
            "stage_seconds": {k: round(v, 3) for k, v in st.stage_s.items()},
            "avg_png_bytes": int(st.counters.get("png_bytes", 0) / max(rendered, 1)),
            "backend": runner.backend_stats(), "workers": runner.workers, "preset": self.cfg.preset,
            "deflate": runner.deflate, "width": ls.width, "height": ls.height,
        }

    def _check_space(self, avg_png: float, remaining: int) -> None:
        try:
            free = shutil.disk_usage(self.out).free
        except OSError:
            return
        need = avg_png * remaining * 1.02
        if need > free:
            self.log(f"warning: the remaining {remaining} items need about {human_bytes(need)} but only "
                     f"{human_bytes(free)} is free on {self.out}; the run will stop when the disk is full (resumable)")


def generate(layers_dir, out_dir, config: Config | str | os.PathLike | None = None, *, log=None,
             progress: bool | None = False, resume: bool = False, stop_timeout: float | None = None,
             **overrides) -> Generation:
    """Plan and render a collection; iterate the result to stream finished items.

    `config` is a Config, a TOML path or None; keyword overrides (size=, seed=, preset=,
    backend=, workers=, force=, ...) win over it. Nothing runs until iteration starts.
    An output folder holding an unfinished collection of the same inputs is resumed;
    `resume=True` additionally insists that there is one.
    """
    if config is None:
        cfg = Config()
    elif isinstance(config, Config):
        cfg = config
    else:
        cfg = load_config(config)
    cfg = with_overrides(cfg, **overrides)
    if cfg.from_list:
        cfg = with_list_size(cfg, overrides.get("size"))
    return Generation(layers_dir, out_dir, cfg, log=log, progress=progress, resume=resume, stop_timeout=stop_timeout)


def _from_output(out_dir, mode: str, layers, run_options: dict, **request) -> tuple[Path, Config, Request]:
    """Check now, at the call, that `out_dir` holds a collection to work from, and return its
    layers folder and config as they are now. The run reads them again under the folder's lock."""
    out = Path(out_dir)
    if not os.path.lexists(out / MANIFEST):
        raise OutputError(f"{out}: not a gpucomp output (no {MANIFEST}); pass the folder `gpucomp generate` wrote")
    layers_dir, cfg = source_of(out, read_manifest(out), layers, run_options)
    return layers_dir, cfg, Request(mode, insist=True, layers=layers, run_options=dict(run_options), from_output=True,
                                    **request)


def extend(out_dir, size: int, *, stack: int = 1, layers=None, log=None, progress: bool | None = False,
           stop_timeout: float | None = None, **run_options) -> Generation:
    """Add `size` new unique items (numbered after the last) to an existing collection, drawn
    from stack `stack` (1-based) without repeating any item; nothing existing is re-rendered."""
    if not 1 <= size <= MAX_SIZE:
        raise ConfigError(f"extend: the number of new items must be at least 1 and at most {MAX_SIZE}, got {size}")
    layers_dir, cfg, req = _from_output(out_dir, "extend", layers, run_options, extend=size, extend_stack=stack - 1)
    return Generation(layers_dir, out_dir, cfg, log=log, progress=progress, stop_timeout=stop_timeout, request=req)


def resume(out_dir, *, layers=None, log=None, progress: bool | None = False, stop_timeout: float | None = None,
           **run_options) -> Generation:
    """Finish an interrupted generate, extend or re-render from the collection's own manifest."""
    layers_dir, cfg, req = _from_output(out_dir, "resume", layers, run_options)
    return Generation(layers_dir, out_dir, cfg, log=log, progress=progress, stop_timeout=stop_timeout, request=req)


def rerender(out_dir, *, layers=None, log=None, progress: bool | None = False, stop_timeout: float | None = None,
             **run_options) -> Generation:
    """Render the same plan (same items, DNA and metadata) with the trait art as it is now in the
    layers folder (or `layers`); only items that use a changed trait are rendered again."""
    layers_dir, cfg, req = _from_output(out_dir, "rerender", layers, run_options)
    return Generation(layers_dir, out_dir, cfg, log=log, progress=progress, stop_timeout=stop_timeout, request=req)


def run(layers_dir, out_dir, config=None, **kwargs) -> dict:
    """Render a whole collection and return its summary dict."""
    gen = generate(layers_dir, out_dir, config, **kwargs)
    for _ in gen:
        pass
    return gen.summary


__all__ = ["Generation", "GpucompError", "Interrupted", "Item", "extend", "generate", "rerender", "resume", "run"]
