"""Renders one shard: a set of item positions of a collection, with one backend on one device,
into the output folder, journaling every finished item.

A single-process run is one shard whose journal is OUT/gpucomp.journal; with Ray (ray_run.py)
each shard is rendered by a worker process with a journal of its own. An item's bytes depend
only on the plan: never on which shard, worker, batch or thread renders it. The folder itself
(lock, manifest, plan, what is finished, the final files) is folder.py's job.
"""
from __future__ import annotations

import errno
import hashlib
import json
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from gpucomp._shared.files import atomic_write_bytes, json_bytes, nonempty_file, open_regular, read_regular, write_failure
from gpucomp._shared.testhooks import fault  # noqa: F401 (GPUCOMP_TEST_KILL / GPUCOMP_TEST_SLOW points, also for folder.py)
from gpucomp.encode.animated import encoder
from gpucomp.encode.media import DEFAULT_FILES, OutputFile, is_default, render_files, write_others
from gpucomp.encode.png import Preset, encode_rendered
from gpucomp.errors import OutputError
from gpucomp.interop.engine_dna import HashLipsDna
from gpucomp.interop.oneofones import MAX_IMAGE_BYTES
from gpucomp.metadata.tokens import item_metadata
from gpucomp.outdir.journal import Journal, file_sha256
from gpucomp.outdir.writeback import Writeback, WritebackError
from gpucomp.plan.collection import ONE_OF_ONE, OneOfOneSegment
from gpucomp.plan.frames import frame_view
from gpucomp.plan.sampler import dna

ANIM_GROUP_FRAMES = 512  # CUDA, animated output: frames composited per render call (items x frames)


@dataclass(frozen=True)
class Item:
    """One finished item: its number, traits (layer display name -> trait name), the paths of its
    image and metadata file, and whether this run rendered it (False: an earlier run had)."""

    number: int
    traits: dict
    image: Path
    metadata: Path
    rendered: bool = True

    def read_metadata(self) -> dict:
        """The item's metadata, parsed (what `metadata` holds)."""
        return json.loads(self.metadata.read_bytes())


@dataclass(frozen=True)
class Done:
    """One item a shard wrote: small and picklable (a Ray worker returns a list of them)."""

    position: int
    number: int
    sha256: bytes
    png_bytes: int


class ItemIndex:
    """The items of a collection plan by position p = number - start (positions index the
    per-item state: hashes, what is finished); g is an item's index in plan order."""

    def __init__(self, cplan, meta_options, single_stack: bool, files: tuple[OutputFile, ...] = DEFAULT_FILES,
                 animation=None, frames: int = 1):
        self.cplan, self.options, self.single_stack = cplan, meta_options, single_stack
        self.files = files  # each item's image files, primary first (media.py)
        self.animation, self.frames = animation, frames  # anim_encode.Animation or None; frames per item
        self._views: dict[int, tuple] = {}
        self.start, self.n = cplan.start, len(cplan)
        self.g_of = np.argsort(cplan.numbers, kind="stable")
        self.pos_of = np.empty(self.n, np.int64)
        self.pos_of[self.g_of] = np.arange(self.n)
        self.numbers = range(self.start, self.start + self.n)  # lazy: no per-item Python objects
        self._hashlips = HashLipsDna()

    def locate(self, p: int):
        return self.cplan.locate(int(self.g_of[p]))

    def meta_bytes(self, p: int) -> bytes:
        seg, row = self.locate(p)
        if isinstance(seg, OneOfOneSegment):  # its own fields (name, description, attributes ...) over ours
            image = seg.image(row)
            meta = item_metadata(self.numbers[p], seg.attributes(row), dna([f"{ONE_OF_ONE}/{image.name}"]), self.options)
            return json_bytes({**meta, **(image.metadata or {})})
        if self.options.engine_dna == "hashlips":  # what HashLips v1 wrote for this item
            item_dna = self._hashlips.sha1([(t.path, o.dna) for t, o in zip(seg.traits(row), seg.options, strict=True)])
        else:  # with several stacks a trait name alone is ambiguous: qualify it by its layer
            item_dna = dna(seg.dna_names(row) if self.single_stack else [f"{a}/{b}" for a, b in seg.identity(row)])
        return json_bytes(item_metadata(self.numbers[p], seg.attributes(row), item_dna, self.options))

    def frame_view(self, seg):
        """The segment's render layers expanded to frames (animation.FrameView), made once per layer set."""
        ls = seg.render_layerset
        if id(ls) not in self._views:
            self._views[id(ls)] = (ls, frame_view(ls, self.frames))  # ls kept: its id stays unique
        return self._views[id(ls)][1]

    def __getstate__(self) -> dict:  # a Ray worker makes its own frame views
        return {**self.__dict__, "_views": {}}

    def item(self, p: int, out: Path) -> Item:
        seg, row = self.locate(p)
        number = self.numbers[p]
        return Item(number, dict(seg.attributes(row)), out / "images" / self.files[0].name(number),
                    out / "metadata" / f"{number}.json")

    def by_segment(self, positions: np.ndarray):
        """(segment, rows in it, their positions) for `positions`, in plan order: items of one
        segment share the backend's prepared layers, and plan order keeps the GPU cache warm."""
        g = np.sort(self.g_of[np.asarray(positions, np.int64)])
        for seg in self.cplan.segments:
            lo, hi = seg.offset, seg.offset + len(seg.combos)
            sel = g[(g >= lo) & (g < hi)]
            if len(sel):
                yield seg, sel - lo, self.pos_of[sel]


@dataclass
class ShardContext:
    """What every shard of one run needs, the same in every process (a Ray worker gets it once)."""

    out: Path
    index: ItemIndex
    preset: Preset
    deflate: str  # the run's deflate engine: 'gpu', 'isal' or 'zlib'
    release_pixels: bool  # one stack only: the CPU backend may drop dense pixels once indexed
    opaque_rgb: bool = True  # the other formats write opaque results as RGB too (formats.encode)


def human_bytes(n: float) -> str:
    """A size in a unit that fits: '312 KB', '4.1 MB', '1.2 GB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


def write_error(path: Path, err: OSError, item_bytes: int, remaining: int) -> OutputError:
    """The error for a failed write in OUT: what failed (files.write_failure's words), about how much
    space is missing, how to go on."""
    need = ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT) and remaining:
        need = f" (about {human_bytes(item_bytes * remaining * 1.02)} more needed for the {remaining} items left)"
    return write_failure(path, err, f"re-run the same command to resume{need}; finished items are kept")


class ShardRenderer:
    """Renders shards with one backend: composite (or take the backend's batches), encode in a
    thread pool, write atomically, journal. One renderer serves many shards (a Ray worker
    keeps one), preparing the backend again only when a segment has other layers."""

    def __init__(self, ctx: ShardContext, backend, stats, workers: int, stop: threading.Event | None = None,
                 stop_timeout: float | None = None):
        self.ctx, self.backend, self.stats, self.workers = ctx, backend, stats, max(1, workers)
        self.stop = stop or threading.Event()
        self.stop_timeout = stop_timeout  # after stop(): how long to wait for items in flight (None: all)
        self.gpu_deflate = ctx.deflate == "gpu" and backend.gpu_deflate
        self.abandoned = 0  # items still in flight when a stopped shard gave up waiting
        self._prepared = None
        self._count = threading.Lock()

    def render(self, positions: np.ndarray, journal: Journal) -> Iterator[Done]:
        """Render `positions`, yielding each item once its files are in place and journaled. After
        `stop` is set it submits nothing more and waits `stop_timeout` for the items in flight."""
        self.journal, self.total, self.written = journal, len(positions), 0
        self.pending: set[Future] = set()
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gpucomp")
        self.writeback = Writeback()
        wait_pool = True
        try:
            for seg, rows, pos in self.ctx.index.by_segment(positions):
                if self.stop.is_set():
                    break
                yield from self._drain(0)  # the backend is about to switch to this segment's layers
                if isinstance(seg, OneOfOneSegment):
                    yield from self._copy(seg, rows, pos)
                    continue
                anim = self.ctx.index.animation is not None
                self._prepare(self.ctx.index.frame_view(seg).layerset if anim else seg.render_layerset)
                yield from (self._submit_frames(seg, rows, pos) if anim else self._submit(seg, rows, pos))
            if not self.stop.is_set():
                yield from self._drain(0)
            if self.stop.is_set():
                wait_pool = self._abandon()
        except BaseException:
            for f in self.pending:
                f.cancel()
            self.pool.shutdown(wait=wait_pool, cancel_futures=True)
            self.writeback.close(raise_error=False)  # the error above is the one to see
            raise
        self.pool.shutdown(wait=wait_pool, cancel_futures=True)
        self._close_writeback()

    def _close_writeback(self) -> None:
        """Wait for the last files to reach the disk (writeback.py); a disk error is the run's error."""
        with self.stats.timer("write"):
            try:
                self.writeback.close()
            except WritebackError as err:
                raise write_error(Path(err.filename), err, 0, 0) from err

    def _prepare(self, layerset) -> None:
        if layerset is self._prepared:
            return
        with self.stats.timer("prepare"):
            if self.backend.renders_in_workers:  # the CPU backend keeps its own sparse copy
                self.backend.prepare(layerset, release_pixels=self.ctx.release_pixels)
            else:
                self.backend.prepare(layerset)
        self._prepared = layerset

    def _drain(self, block_until: int) -> Iterator[Done]:
        while len(self.pending) > block_until:
            finished, _ = wait(self.pending, timeout=0.1, return_when=FIRST_COMPLETED)
            if not finished and self.stop.is_set():
                return  # stop(): render() cancels what is queued and waits a bounded time
            self.pending.difference_update(finished)
            for f in finished:
                yield f.result()

    def _abandon(self) -> bool:
        """Cancel what is queued, wait a bounded time for what runs; True when nothing is left."""
        for f in self.pending:
            f.cancel()
        _, running = wait(self.pending, timeout=self.stop_timeout)
        self.abandoned = len(running)
        return not running

    def _submit(self, seg, rows: np.ndarray, pos: np.ndarray) -> Iterator[Done]:
        """Hand one segment's items to the pool: the CPU backend composites inside the workers,
        the CUDA backend yields batches that the workers only encode."""
        limit = 2 * self.workers
        if self.backend.renders_in_workers:
            for row, p in zip(rows.tolist(), pos.tolist(), strict=True):
                if self.stop.is_set():
                    return
                self.pending.add(self.pool.submit(self._composite_and_write, seg, row, p))
                yield from self._drain(limit)
            return
        raw = not is_default(self.ctx.index.files)  # other formats and sizes are made from the pixels
        sizes = tuple(dict.fromkeys(f.size for f in self.ctx.index.files if f.size is not None))
        batches = self.backend.render(seg.render_combos(rows), self.stats, "none" if raw else self.ctx.preset.filter,
                                      deflate=self.gpu_deflate and not raw, sizes=sizes)  # nearest ones: on the GPU
        try:
            for idx, outputs in batches:
                limit = max(limit, 2 * len(outputs))
                for j, rendered in zip(idx.tolist(), outputs, strict=True):
                    self.pending.add(self.pool.submit(self._write, int(pos[j]), rendered))
                del outputs
                yield from self._drain(limit)
                if self.stop.is_set():
                    return
        finally:
            batches.close()

    def _submit_frames(self, seg, rows: np.ndarray, pos: np.ndarray) -> Iterator[Done]:
        """Animated output: every frame of an item is a combination of the segment's frame view. The CPU
        backend composites an item's frames inside a worker; the CUDA backend composites the frames of
        a group of items in its batches, and the workers encode each item once its frames are back."""
        view = self.ctx.index.frame_view(seg)
        if self.backend.renders_in_workers:
            for row, p in zip(rows.tolist(), pos.tolist(), strict=True):
                if self.stop.is_set():
                    return
                self.pending.add(self.pool.submit(self._animate_and_write, view, seg.render_combos([row]), p))
                yield from self._drain(2 * self.workers)
            return
        L = view.frames
        group = max(1, ANIM_GROUP_FRAMES // L)  # items per call: bounds the frames held on the host
        for at in range(0, len(rows), group):
            combos = view.combos(seg.render_combos(rows[at:at + group]))
            frames: dict[int, list] = {}
            batches = self.backend.render(combos, self.stats, "none", deflate=False)
            try:
                for idx, outputs in batches:
                    for j, px in zip(idx.tolist(), outputs, strict=True):
                        got = frames.setdefault(j // L, [None] * L)
                        got[j % L] = px
                        if all(x is not None for x in got):
                            p = int(pos[at + j // L])
                            self.pending.add(self.pool.submit(self._encode_frames_and_write, p, frames.pop(j // L)))
                    yield from self._drain(2 * self.workers)
                    if self.stop.is_set():
                        return
            finally:
                batches.close()

    def _animate_and_write(self, view, render_combo: np.ndarray, p: int) -> Done:
        """CPU: composite an item's frames one at a time, each fed to the encoders as it comes."""
        combos = view.combos(render_combo)

        def frames():
            for c in combos:
                with self.stats.timer("composite"):
                    px = self.backend.composite([c])[0]
                yield px
        return self._encode_frames_and_write(p, frames())

    def _encode_frames_and_write(self, p: int, frames) -> Done:
        """Feed the frames to one encoder per animated format (encode/animated.py), keep frame `still_frame`
        for the still files, then write them all (_write)."""
        anim = self.ctx.index.animation
        files = [f for f in self.ctx.index.files if f.animated]
        encoders = [encoder(anim, f.format.name) for f in files]
        still = None
        for k, px in enumerate(frames):
            if k == anim.settings["still_frame"]:
                still = px
            with self.stats.timer("encode"):
                for e in encoders:
                    e.add(px)
        with self.stats.timer("encode"):
            blobs = [e.finish() for e in encoders]
        return self._write(p, still, blobs)

    def _copy(self, seg: OneOfOneSegment, rows: np.ndarray, pos: np.ndarray) -> Iterator[Done]:
        """One-of-ones: each image file's bytes, checked again (it may have changed since planning)."""
        for row, p in zip(rows.tolist(), pos.tolist(), strict=True):
            if self.stop.is_set():
                return
            self.pending.add(self.pool.submit(self._write, p, finished_png(seg.image(row))))
            yield from self._drain(2 * self.workers)

    def _composite_and_write(self, seg, row: int, p: int) -> Done:
        with self.stats.timer("composite"):
            if is_default(self.ctx.index.files):  # one PNG: the kernel may filter its rows as it writes them
                rendered = self.backend.composite_filtered(seg.render_combo(row), self.ctx.preset.filter)
            else:
                rendered = self.backend.composite([seg.render_combo(row)])[0]
        return self._write(p, rendered)

    def _write(self, p: int, rendered, animated: list[bytes] | None = None) -> Done:
        """Encode, write the other files, the primary image, then metadata (each atomically), then
        journal the item: a journal record means every file of the item was in place. `animated`: the
        bytes of the item's animated files (files after the still ones), already encoded."""
        ctx, st = self.ctx, self.stats
        files = ctx.index.files
        number = ctx.index.numbers[p]
        blobs: list[bytes] = []
        with st.timer("encode"):
            if isinstance(rendered, bytes):  # a one-of-one's file, as it is
                png = rendered
            elif is_default(files):
                png = encode_rendered(rendered, ctx.preset)
            else:  # pixels (see _submit): every format and size from them (formats.py, resize.py)
                blobs = render_files(rendered, files, ctx.preset, ctx.opaque_rgb) + (animated or [])
                png = blobs[0]
            digest = hashlib.sha256(png).digest()
        img_path = ctx.out / "images" / files[0].name(number)
        others = 0
        with st.timer("write"):
            try:
                if blobs:
                    others = write_others(ctx.out / "images", number, files, blobs, self.writeback)
                    fault(f"others:{number}")  # the other files in place, the primary not yet
                atomic_write_bytes(img_path, png, writeback=self.writeback)
                fault(f"image:{number}")
                atomic_write_bytes(ctx.out / "metadata" / f"{number}.json", ctx.index.meta_bytes(p))
            except OSError as err:
                failed = Path(err.filename) if isinstance(err, WritebackError) else img_path  # maybe an earlier file
                raise write_error(failed, err, len(png) + others, self.total - self.written) from err
            self.journal.record(number, digest.hex())
        st.count("png_bytes", len(png) + others)  # every file of the item
        with self._count:
            self.written += 1
        return Done(p, number, digest, len(png) + others)


def finished_png(image) -> bytes:
    """A one-of-one's bytes, refused when the file no longer matches what the manifest records."""
    try:
        data = read_regular(image.path, MAX_IMAGE_BYTES)
    except OSError as err:
        raise OutputError(f"one-of-ones: {image.path}: cannot read it ({err.strerror or err})") from None
    if hashlib.sha256(data).hexdigest() != image.sha256:
        raise OutputError(f"one-of-ones: {image.path} changed while the collection was being made; put the "
                          f"original back, or start over with --force")
    return data


def read_journal(path: Path) -> dict[int, bytes]:
    """number -> SHA-256 from a journal's complete, well-formed lines (later lines win); a torn
    or damaged line is skipped: that item is re-verified or re-rendered."""
    records: dict[int, bytes] = {}
    with open_regular(path) as f:  # never follows a link, never blocks on a FIFO
        for raw in f:
            parts = raw.decode("ascii", "replace").split()
            if raw.endswith(b"\n") and len(parts) == 2 and parts[0].isdecimal() and len(parts[1]) == 64:
                try:
                    records[int(parts[0])] = bytes.fromhex(parts[1])
                except ValueError:
                    pass
    return records


def journaled(ctx: ShardContext, path: Path, positions: np.ndarray) -> tuple[list[Done], np.ndarray]:
    """A shard run again (a retried Ray task): the items its journal at `path` records whose primary
    image still hashes to the record (and whose other files are there), and the positions left to render."""
    try:
        records = read_journal(path)
    except FileNotFoundError:
        return [], positions
    done, left = [], []
    for p in positions.tolist():
        number = ctx.index.numbers[p]
        image = ctx.out / "images" / ctx.index.files[0].name(number)
        sha = records.get(number)
        others = (ctx.out / "images" / f.name(number) for f in ctx.index.files[1:])
        if sha is not None and file_sha256(image) == sha and all(nonempty_file(o) for o in others):
            done.append(Done(p, number, sha, image.stat().st_size))
        else:
            left.append(p)
    return done, np.array(left, np.int64)
