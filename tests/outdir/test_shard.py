"""The shard renderer (gpucomp/outdir/shard.py) on its own: any split of a collection's positions into
shards, rendered in any order with journals of their own, writes the bytes of a one-process
run; a shard run again skips what its journal proves finished; the encoder dispatches on the
explicit types a backend hands back."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gpucomp
from gpucomp.config import Config, with_overrides
from gpucomp.encode.png import encode_png, encode_rendered, filter_rows, get_preset
from gpucomp.encode.rendered import Deflated, Filtered
from gpucomp.outdir.folder import CollectionFolder, Request, shard_journal
from gpucomp.outdir.journal import Journal
from gpucomp.outdir.shard import ShardContext, ShardRenderer, human_bytes, journaled
from gpucomp.outdir.stats import Stats
from gpucomp.render.numpy_backend import NumpyBackend


def snapshot(out: Path) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "summary.json"}


@pytest.fixture(scope="module")
def reference(demo_layers, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    gpucomp.run(demo_layers, out, size=30, seed=4, shuffle=True)
    return snapshot(out)


def open_job(layers, out):
    cfg = with_overrides(Config(), size=30, seed=4, shuffle=True, backend="cpu")
    folder = CollectionFolder(out, cfg, layers, Request(), lambda m: None, Stats())
    folder.__enter__()
    planned = folder.plan()
    job = folder.open(planned, "isal", 2)
    ctx = ShardContext(out, job.index, get_preset("fast"), "isal", release_pixels=True)
    return folder, job, ShardRenderer(ctx, NumpyBackend(), Stats(), workers=2)


def test_shards_in_any_order_with_their_own_journals_equal_one_run(demo_layers, tmp_path, reference):
    out = tmp_path / "out"
    folder, job, renderer = open_job(demo_layers, out)
    try:
        shards = np.array_split(job.todo, 4)[::-1]  # the last numbers first
        for shard in shards:
            path = shard_journal(out, shard)
            journal = Journal(path, fresh=True)
            for done in renderer.render(shard, journal):
                job.shas[done.position] = np.frombuffer(done.sha256, np.uint8)
            journal.close()
            assert len(path.read_text().splitlines()) == len(shard)
        folder.finish(job)
    finally:
        folder.__exit__(None, None, None)
    assert snapshot(out) == reference  # shard journals are gone too


def test_a_shard_run_again_skips_what_its_journal_proves(demo_layers, tmp_path):
    out = tmp_path / "out"
    folder, job, renderer = open_job(demo_layers, out)
    try:
        shard = job.todo[5:15]
        path = shard_journal(out, shard)
        journal = Journal(path, fresh=True)
        written = {d.number: d for d in renderer.render(shard, journal)}
        journal.close()
        numbers = sorted(written)
        (out / "images" / f"{numbers[0]}.png").unlink()  # missing
        (out / "images" / f"{numbers[1]}.png").write_bytes(b"\x89PNG damaged")  # damaged
        done, left = journaled(renderer.ctx, path, shard)
        assert sorted(d.number for d in done) == numbers[2:]
        assert all(d == written[d.number] for d in done)
        assert sorted(job.index.numbers[p] for p in left) == numbers[:2]
        assert journaled(renderer.ctx, tmp_path / "none.journal", shard)[1].tolist() == shard.tolist()
    finally:
        folder.__exit__(None, None, None)


def test_the_encoder_dispatches_on_what_the_backend_returned():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    preset = get_preset("fast")
    want = encode_png(pixels, preset)
    assert encode_rendered(pixels, preset) == want
    assert encode_rendered(Filtered(filter_rows(pixels, "up"), 7, 9, 3), preset) == want
    import io
    import zlib

    rows = filter_rows(pixels, "up").tobytes()
    co = zlib.compressobj(wbits=-15)  # raw deflate blocks ending byte-aligned, as the GPU's segments do
    body = co.compress(rows) + co.flush(zlib.Z_SYNC_FLUSH)
    deflated = Deflated(memoryview(body), zlib.adler32(rows), 7, 9, 3)
    png = encode_rendered(deflated, preset)
    with Image.open(io.BytesIO(png)) as im:
        assert np.array_equal(np.asarray(im), pixels)
    with pytest.raises(TypeError, match="expected pixels, Filtered or Deflated"):
        encode_rendered(b"not an image", preset)


@pytest.mark.parametrize("n, text", [(0, "0 bytes"), (999, "999 bytes"), (312_456, "312 KB"), (300_000, "300 KB"),
                                     (4_130_000, "4.13 MB"), (1.2e9, "1.2 GB"), (2.5e12, "2.5e+03 GB")])
def test_sizes_are_said_in_a_unit_that_fits(n, text):
    assert human_bytes(n) == text
