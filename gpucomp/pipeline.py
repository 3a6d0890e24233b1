"""Wires the stages: layers -> plan -> composite -> encode -> write, with bounded queues.

`Generation` is the streaming API: iterate it to get each finished item as soon as its
files are on disk. Memory stays flat: at most a few batches of pixels are in flight.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from . import __version__
from .config import Config, to_dict
from .encode import deflate_engine, encode_filtered, encode_png, get_preset
from .errors import GpucompError, OutputError
from .output import (MANIFEST, atomic_write_bytes, atomic_write_json, check_output, item_metadata, prepare_output,
                     rarity_summary, write_collection_metadata)
from .stats import Progress, Stats


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
    """Iterable over finished `Item`s; `summary` holds throughput and stage times afterwards."""

    def __init__(self, layers_dir, out_dir, cfg: Config, log: Callable[[str], None] | None = None,
                 progress: bool | None = None, backend=None):
        self.layers_dir, self.out, self.cfg = Path(layers_dir), Path(out_dir), cfg
        self.log = log or (lambda msg: None)
        self.progress_enabled = progress
        self.backend = backend
        self.stats = Stats()
        self.summary: dict = {}

    def __iter__(self) -> Iterator[Item]:
        from .backends.select import choose
        from .plan import dna, make_plan

        cfg, out, st = self.cfg, self.out, self.stats
        t_start = time.perf_counter()
        check_output(out, cfg.force)
        with st.timer("load"):
            ls = load_for_config(self.layers_dir, cfg)
        self.log(f"layers: {len(ls.layers)} layers, {ls.trait_count} traits, {ls.width}x{ls.height}, "
                 f"{ls.combinations} combinations")
        with st.timer("plan"):
            plan = make_plan([layer.weights for layer in ls.layers], cfg.size, cfg.seed, cfg.start)
        layer_names = [layer.name for layer in ls.layers]
        names = [[layer.traits[i].name for layer, i in zip(ls.layers, row)] for row in plan.combos.tolist()]
        prepare_output(out, cfg.force)  # only now: bad layers or an infeasible plan write nothing
        atomic_write_json(out / MANIFEST, {
            "gpucomp": __version__, "config": to_dict(cfg), "layers_fingerprint": ls.fingerprint,
            "width": ls.width, "height": ls.height, "layers": layer_names, "size": len(plan),
            "items": [{"number": plan.number(i), "traits": n} for i, n in enumerate(names)],
        })
        if self.backend is None:
            self.backend, why = choose(cfg.backend, opaque_rgb=cfg.opaque_rgb, batch_size=cfg.batch_size,
                                       vram_budget=cfg.vram_budget, cache=cfg.cache)
            self.log(f"backend: {self.backend.name} ({why})")
        backend = self.backend
        with st.timer("prepare"):
            if getattr(backend, "renders_in_workers", False):
                backend.prepare(ls, release_pixels=True)  # the CPU backend keeps its own sparse copy
            else:
                backend.prepare(ls)
        preset = get_preset(cfg.preset)
        self.log(f"png: preset {preset.name} ({deflate_engine(preset)} deflate)")
        workers = cfg.workers or os.cpu_count() or 1
        progress = Progress(len(plan), self.progress_enabled)

        def write(i: int, pixels) -> Item:
            number = plan.number(i)
            with st.timer("encode"):
                if hasattr(pixels, "rows"):  # scanlines the GPU already filtered
                    png = encode_filtered(pixels.rows, pixels.width, pixels.height, pixels.channels, preset)
                else:
                    png = encode_png(pixels, preset)
            img_path = out / "images" / f"{number}.png"
            meta_path = out / "metadata" / f"{number}.json"
            meta = item_metadata(number, names[i], layer_names, dna(names[i]), cfg)
            with st.timer("write"):
                try:
                    atomic_write_bytes(img_path, png)
                    atomic_write_json(meta_path, meta)
                except OSError as err:
                    raise OutputError(f"{img_path}: cannot write ({err.strerror or err}); finished items are kept") from err
            st.count("png_bytes", len(png))
            return Item(number, dict(zip(layer_names, names[i])), img_path, meta_path)

        def render_and_write(i: int) -> Item:
            with st.timer("composite"):
                pixels = backend.composite([plan.combos[i]])[0]
            return write(i, pixels)

        t_render = time.perf_counter()
        pending: set[Future] = set()
        limit = 2 * workers
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpucomp")
        try:
            def drain(block_until: int) -> Iterator[Item]:
                nonlocal pending
                while len(pending) > block_until:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        item = f.result()
                        progress.update()
                        yield item

            if getattr(backend, "renders_in_workers", False):
                for i in range(len(plan)):
                    pending.add(pool.submit(render_and_write, i))
                    yield from drain(limit)
            else:
                for indices, images in backend.render(plan.combos, st, preset.filter):
                    limit = max(limit, 2 * len(images))
                    for i, pixels in zip(indices.tolist(), images):
                        pending.add(pool.submit(write, i, pixels))
                    del images
                    yield from drain(limit)
            yield from drain(0)
        except BaseException:
            for f in pending:
                f.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            progress.close()
        render_s = time.perf_counter() - t_render
        with st.timer("finish"):
            write_collection_metadata(out, [plan.number(i) for i in range(len(plan))])
            atomic_write_json(out / "rarity.json", rarity_summary(ls, plan.combos))
        total_s = time.perf_counter() - t_start
        n = len(plan)
        self.summary = {
            "items": n, "seconds": round(total_s, 3), "render_seconds": round(render_s, 3),
            "items_per_s": round(n / render_s, 2) if render_s > 0 else None,
            "items_per_s_total": round(n / total_s, 2),
            "stage_seconds": {k: round(v, 3) for k, v in st.stage_s.items()},
            "avg_png_bytes": int(st.counters.get("png_bytes", 0) / max(n, 1)),
            "backend": backend.stats(), "workers": workers, "preset": preset.name,
            "deflate": deflate_engine(preset), "width": ls.width, "height": ls.height,
        }
        backend.close()
        atomic_write_json(out / "summary.json", self.summary)


def generate(layers_dir, out_dir, config: Config | str | os.PathLike | None = None, *, log=None,
             progress: bool | None = False, **overrides) -> Generation:
    """Plan and render a collection; iterate the result to stream finished items.

    `config` is a Config, a TOML path or None; keyword overrides (size=, seed=, preset=,
    backend=, workers=, force=, ...) win over it. Nothing runs until iteration starts.
    """
    from .config import load_config, with_overrides

    if config is None:
        cfg = Config()
    elif isinstance(config, Config):
        cfg = config
    else:
        cfg = load_config(config)
    cfg = with_overrides(cfg, **overrides)
    return Generation(layers_dir, out_dir, cfg, log=log, progress=progress)


def run(layers_dir, out_dir, config=None, **kwargs) -> dict:
    """Render a whole collection and return its summary dict."""
    gen = generate(layers_dir, out_dir, config, **kwargs)
    for _ in gen:
        pass
    return gen.summary


__all__ = ["Generation", "GpucompError", "Item", "generate", "run"]
