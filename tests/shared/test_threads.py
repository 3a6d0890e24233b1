"""Thread counts (gpucomp/_shared/threads.py): what was asked, capped to what the machine can use."""
import os

import gpucomp
from gpucomp._shared.threads import MAX_PER_CORE, capped_note, thread_count

CORES = os.cpu_count() or 1


def test_zero_or_none_is_one_per_core_and_a_small_ask_is_kept():
    assert thread_count(0) == thread_count(None) == CORES
    assert thread_count(1) == 1
    assert capped_note(1, 1) is None and capped_note(0, CORES) is None


def test_a_huge_ask_is_capped_and_said():
    assert thread_count(100_000) == MAX_PER_CORE * CORES
    assert capped_note(100_000, thread_count(100_000)) == (
        f"workers: 100000 asked, {MAX_PER_CORE * CORES} used (at most {MAX_PER_CORE} per CPU core here: "
        f"more threads only hold more items in memory)")


def test_a_run_with_workers_past_the_cap_uses_the_cap_and_says_so(demo_layers, tmp_path):
    lines = []
    gen = gpucomp.generate(demo_layers, tmp_path / "out", size=6, seed=2, workers=100_000, log=lines.append)
    list(gen)
    assert gen.summary["workers"] == MAX_PER_CORE * CORES
    assert any(line.startswith("workers: 100000 asked") for line in lines)


def test_sheets_and_reels_cap_their_decoding_threads(demo_layers, tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from gpucomp.publish import preview, reel

    started = []

    def pool(max_workers, **kw):
        started.append(max_workers)
        return ThreadPoolExecutor(max_workers, **kw)

    monkeypatch.setattr(preview, "ThreadPoolExecutor", pool)
    monkeypatch.setattr(reel, "ThreadPoolExecutor", pool)
    out = tmp_path / "out"
    gpucomp.run(demo_layers, out, size=4, seed=1)
    assert len(gpucomp.make_sheets(out, thumb=16, workers=100_000)) == 1
    assert gpucomp.make_reel(out, items=2, size=32, workers=100_000).is_file()
    assert started == [MAX_PER_CORE * CORES] * 2
