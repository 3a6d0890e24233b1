"""Renders a run's shards on Ray: every GPU of a machine, or every machine of a cluster.

The driver (this process) owns the collection folder exactly as a one-process run does
(folder.py: lock, manifest, plan, what is finished, the final files). It puts the shard
context — plan, layers, trait pixels — into Ray's object store once, starts one worker (a Ray
actor) per GPU, or per CPU without GPUs, and hands out shards (contiguous ranges of positions)
as workers free up, at most two queued per worker, so a slow device never holds the run. A
worker renders its shard with shard.ShardRenderer into the shared output folder, journaling
each item in the shard's own journal; a worker that dies is restarted by Ray and the shard is
retried, skipping what its journal proves finished. The driver journals what a shard returns in
OUT/gpucomp.journal, then drops the shard's journal; what a killed driver's shards left is
folded in by the next run (folder.merge_shard_journals).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Iterator

import numpy as np

from gpucomp._shared.threads import thread_count
from gpucomp.encode.png import deflate_engine, get_preset
from gpucomp.errors import BackendUnavailable, ConfigError, GpucompError, OutputError
from gpucomp.outdir.folder import Job, Planned, shard_journal
from gpucomp.outdir.journal import Journal
from gpucomp.outdir.layout import MANIFEST
from gpucomp.outdir.shard import Done, ShardContext, ShardRenderer, fault, journaled
from gpucomp.outdir.stats import Stats
from gpucomp.render.select import choose

MAX_RETRIES = 3  # restarts of a worker that died, and retries of the shard it was rendering
IN_FLIGHT = 2  # shards queued per worker: one rendering, one waiting


def import_ray():
    try:
        import ray  # deferred: optional (the [ray] extra)
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'gpucomp[ray]'") from None
    return ray


def shards_of(todo: np.ndarray, workers: int, cap: int) -> list[np.ndarray]:
    """Contiguous runs of the positions left, about four per worker, at most `cap` items each:
    small enough to balance slow and fast devices, large enough that a call's ~2 ms is noise."""
    size = max(1, min(cap, -(-len(todo) // (4 * workers))))
    return [todo[i:i + size] for i in range(0, len(todo), size)]


SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds this gpucomp package (gpucomp/outdir/ -> ..)


class ShardWorker:
    """One Ray worker: a backend on one device (or one CPU) rendering shards into OUT. The run's
    context comes with each call as a reference inside a list (so Ray does not resolve it as an
    argument); the worker fetches it once from the object store (zero-copy on its node), again
    after Ray restarted it."""

    def __init__(self, run: dict, threads: int):
        self.run, self.threads = run, threads
        self.renderer: ShardRenderer | None = None

    def _start(self, ctx_ref) -> ShardRenderer:
        import ray  # deferred: optional (the [ray] extra)

        ctx = ray.get(ctx_ref)
        run = self.run
        backend, _ = choose(run["backend"], opaque_rgb=run["opaque_rgb"], batch_size=run["batch_size"],
                            vram_budget=run["vram_budget"], cache=run["cache"])
        backend.warm(deflate=ctx.deflate == "gpu")
        gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
        device = f"GPU {','.join(map(str, gpus))}" if gpus and backend.name == "cuda" else "CPU"
        self.where = {"host": socket.gethostname(), "pid": os.getpid(), "device": device}
        return ShardRenderer(ctx, backend, Stats(), thread_count(self.threads))  # capped to this node's cores

    def render(self, ctx_ref: list, positions: np.ndarray) -> tuple[list[Done], dict]:
        """Render one shard; a retry skips what the shard's journal proves finished."""
        if self.renderer is None:
            self.renderer = self._start(ctx_ref[0])
        ctx = self.renderer.ctx
        if not sees(ctx.out):
            raise OutputError(f"{ctx.out}: the Ray worker on {socket.gethostname()} cannot see the output folder (no "
                              f"{MANIFEST} there); every node must see it at the same path, on a shared filesystem "
                              f"(see docs/ray.md, Scaling out)")
        path = shard_journal(ctx.out, positions)
        done, left = journaled(ctx, path, positions)
        self.renderer.stats = stats = Stats()
        t0 = time.perf_counter()
        journal = Journal(path, fresh=False)
        try:
            done += list(self.renderer.render(left, journal))
        finally:
            journal.close()
        return done, {"seconds": time.perf_counter() - t0, "rendered": len(left), "stage_s": stats.stage_s,
                      "counters": stats.counters, **self.where}


def sees(out: Path) -> bool:
    """Whether this process sees the run's output folder (its manifest)."""
    if os.environ.get("GPUCOMP_TEST_UNSEEN") == out.name:  # tests: a node without the shared folder
        return False
    return (out / MANIFEST).is_file()


class RayShards:
    """Renders a run's items on Ray workers; the interface of pipeline.LocalShards."""

    def __init__(self, cfg, log, stats: Stats):
        self.ray = import_ray()
        self.cfg, self.log, self.stats = cfg, log, stats
        self.abandoned = 0
        self.taken = 0  # shards returned
        self._workers: list = []
        self.devices: dict[int, dict] = {}
        self._started_ray = False

    def start(self, planned: Planned) -> str:
        """Join (or start) Ray and size the workers; returns the deflate engine (for the manifest)."""
        ray, cfg = self.ray, planned.cfg
        self.cfg = cfg
        if not ray.is_initialized():
            self._connect()
        res = ray.cluster_resources()
        gpus, cpus = res.get("GPU", 0.0), int(res.get("CPU", 0))
        if cfg.backend == "cuda" and not gpus:
            raise BackendUnavailable("--backend cuda: the Ray cluster has no GPU; use --backend cpu or auto")
        self.gpu = gpus > 0 and cfg.backend != "cpu"
        # more worker processes than CPUs (or devices) only wait, each holding a backend and its items
        n = min(cfg.ray_workers, max(1, cpus, int(gpus))) if cfg.ray_workers else (int(gpus) if self.gpu else max(1, cpus))
        if cfg.ray_workers and n < cfg.ray_workers:
            self.log(f"ray: {cfg.ray_workers} workers asked, {n} started (the cluster has {cpus} CPUs, {int(gpus)} GPUs)")
        per_cpu = max(1, cpus // n)
        # Fractions when there are more workers than devices: every worker must be able to start,
        # or the shards queued on it would wait forever.
        self.options = ({"num_gpus": min(1.0, gpus / n), "num_cpus": 0} if self.gpu
                        else {"num_cpus": per_cpu if n <= cpus else cpus / n})
        self.workers, self.threads = n, cfg.workers or per_cpu
        self.deflate = deflate_engine(get_preset(cfg.preset), gpu=self.gpu)
        # Start the workers now: their processes start and import while this one verifies OUT.
        run = {k: getattr(cfg, k) for k in ("backend", "opaque_rgb", "batch_size", "vram_budget", "cache")}
        remote = ray.remote(ShardWorker).options(max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES,
                                                 **self.options)
        self._workers = [remote.remote(run, self.threads) for _ in range(n)]
        self.log(f"ray: {n} {'GPU' if self.gpu else 'CPU'} workers, {self.threads} encoder threads each "
                 f"({int(gpus)} GPUs, {cpus} CPUs in the cluster); png: {cfg.preset} ({self.deflate} deflate)")
        return self.deflate

    def _connect(self) -> None:
        """`local`: start Ray on this machine (its workers import this copy of gpucomp); else join
        the cluster at that address (every node needs the same gpucomp, Ray and Python)."""
        kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if self.cfg.ray == "local":
            here = str(SOURCE_ROOT)
            path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
        else:
            kwargs["address"] = self.cfg.ray
        try:
            self.ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ConfigError(f"--ray {self.cfg.ray}: cannot start or join Ray ({err})") from err
        self._started_ray = True

    def render(self, job: Job, stop: threading.Event, stop_timeout: float | None) -> Iterator[Done]:
        if not len(job.todo):
            return
        ray, cfg = self.ray, self.cfg
        ctx = ShardContext(job.out.resolve(), job.index, get_preset(cfg.preset), self.deflate,
                           release_pixels=job.index.cplan.one_render_layerset(),
                           opaque_rgb=cfg.opaque_rgb)
        self._ctx_ref = ray.put(ctx)  # the traits go to each node once; kept while workers may restart
        shards = deque(shards_of(job.todo, self.workers, 512 if self.gpu else 64))
        try:
            yield from self._dispatch(job, self._workers, shards, stop, stop_timeout)
        finally:
            self._kill()

    def _dispatch(self, job: Job, workers: list, shards: deque, stop, stop_timeout) -> Iterator[Done]:
        """Keep every worker busy until no shard is left; a shard's items as it returns."""
        ray = self.ray
        in_flight: dict = {}  # ObjectRef -> (worker index, positions)
        load = [0] * len(workers)
        while shards or in_flight:
            while shards and not stop.is_set() and min(load) < IN_FLIGHT:
                k = load.index(min(load))
                positions = shards.popleft()
                in_flight[workers[k].render.remote([self._ctx_ref], positions)] = (k, positions)
                load[k] += 1
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.1)
            if stop.is_set():
                yield from self._wind_down(job, in_flight, stop_timeout)
                return
            for ref in ready:
                k, positions = in_flight.pop(ref)
                load[k] -= 1
                yield from self._take(job, ref, k, positions)

    def _take(self, job: Job, ref, k: int, positions: np.ndarray) -> Iterator[Done]:
        """A finished shard: its items into OUT/gpucomp.journal, then its own journal dropped."""
        first, last = job.index.numbers[int(positions[0])], job.index.numbers[int(positions[-1])]
        done, info = self._result(ref, f"items {first}..{last}")
        for d in done:
            job.journal.record(d.number, d.sha256.hex())
        shard_journal(job.out, positions).unlink(missing_ok=True)
        self.taken += 1
        fault(f"shard-taken:{self.taken}")  # tests: the driver killed between shards
        dev = self.devices.setdefault(k, {"worker": k + 1, "items": 0, "seconds": 0.0})
        dev.update(host=info["host"], pid=info["pid"], device=info["device"])
        dev["items"] += info["rendered"]
        dev["seconds"] += info["seconds"]
        for stage, s in info["stage_s"].items():
            self.stats.add_time(stage, s)
        for name, v in info["counters"].items():
            self.stats.count(name, v)
        yield from done

    def _result(self, ref, what: str):
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            cause = err.cause
            if isinstance(cause, GpucompError):
                raise type(cause)(str(cause)) from None
            raise OutputError(f"a Ray worker failed rendering {what}: {cause!r}; finished items are kept: re-run the "
                              f"same command to resume") from err
        except ray.exceptions.RayActorError as err:
            if "No module named 'gpucomp'" in str(err):
                raise ConfigError("the Ray workers cannot import gpucomp: install it (the same version as here) on "
                                  "every node of the cluster") from None
            raise OutputError(f"a Ray worker died {MAX_RETRIES + 1} times rendering {what} ({type(err).__name__}); "
                              f"finished items are kept: re-run the same command to resume") from err

    def _wind_down(self, job: Job, in_flight: dict, stop_timeout) -> Iterator[Done]:
        """stop(): take what finishes within `stop_timeout`; the rest is resumable from its journals."""
        ready, rest = self.ray.wait(list(in_flight), num_returns=len(in_flight), timeout=stop_timeout)
        for ref in ready:
            k, positions = in_flight.pop(ref)
            yield from self._take(job, ref, k, positions)
        self.abandoned = sum(len(p) for _, p in in_flight.values())

    def backend_stats(self) -> dict:
        devices = [{**d, "items_per_s": round(d["items"] / d["seconds"], 2) if d["seconds"] else None}
                   for _, d in sorted(self.devices.items())]
        return {"backend": "cuda" if self.gpu else "cpu",
                "ray": {"workers": self.workers, "shards": self.taken, "devices": devices}}

    def _kill(self) -> None:
        """End the workers (a stopped or failed run: what they finished is in their shard journals)."""
        for w in self._workers:
            self.ray.kill(w)
        self._workers, self._ctx_ref = [], None

    def close(self) -> None:
        self._kill()
        if self._started_ray:
            self.ray.shutdown()
