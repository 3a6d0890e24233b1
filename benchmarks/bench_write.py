"""Writing a collection's files: plain writes (every byte stays in the page cache) against
gpucomp's streamed writeback (gpucomp/outdir/writeback.py), in alternating rounds on the same machine.

    python benchmarks/bench_write.py                 # 600 files of 3.6 MB, 3 rounds each, 2 threads
    python benchmarks/bench_write.py -n 200 --mb 1 --threads 1

Each round writes new files (gpucomp's atomic writes, 1 MiB pieces) into a fresh folder beside the
benchmark (same filesystem as benchmarks/.data), times them, deletes them, then waits `--idle`
seconds: on a virtual machine that hands free memory back to its host, the next round then
starts, as a real run does, with memory that is not backed yet. Streamed rounds include waiting
for their last files to reach the disk; plain rounds leave theirs dirty in the cache, as a run did.
Prints ms per file (median of rounds) and CPU seconds per file; JSON in benchmarks/results/.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpucomp._shared.files import atomic_write_bytes  # noqa: E402
from gpucomp.outdir import writeback  # noqa: E402

from common import DATA, machine, table, write_json  # noqa: E402


def one_round(folder: Path, data: bytes, n: int, threads: int, streamed: bool) -> dict:
    folder.mkdir(parents=True)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    back = writeback.Writeback() if streamed else None
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: atomic_write_bytes(folder / f"{i}.png", data, writeback=back), range(n)))
    if back is not None:
        back.close()
    dt, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    shutil.rmtree(folder)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"seconds": dt, "ms_per_file": dt / n * 1e3, "cpu_ms_per_file": cpu / n * 1e3,
            "sys_ms_per_file": (r1.ru_stime - r0.ru_stime) / n * 1e3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--files", type=int, default=600)
    ap.add_argument("--mb", type=float, default=3.6, help="MB per file (the standard workload's PNGs: 3.6)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=float, default=8.0, help="seconds between rounds")
    ap.add_argument("--json", default="benchmarks/results/write.json")
    args = ap.parse_args()
    if not writeback.available():
        print(f"streamed writeback is not available here ({writeback.describe()}): nothing to compare", file=sys.stderr)
        return 2
    data = os.urandom(int(args.mb * 1e6))
    runs: dict[str, list[dict]] = {"plain": [], "streamed": []}
    for r in range(args.rounds):
        for kind in runs:
            time.sleep(args.idle)
            runs[kind].append(one_round(DATA / f"write-bench-{os.getpid()}", data, args.files, args.threads,
                                        kind == "streamed"))
            print(f"round {r + 1} {kind}: {runs[kind][-1]['ms_per_file']:.2f} ms per file", file=sys.stderr)

    def med(kind, key):
        return statistics.median(x[key] for x in runs[kind])
    rows = [(kind, args.files, f"{med(kind, 'ms_per_file'):.2f}", f"{med(kind, 'cpu_ms_per_file'):.2f}",
             f"{med(kind, 'sys_ms_per_file'):.2f}") for kind in runs]
    m = machine()
    print(f"{args.files} files of {args.mb} MB, {args.threads} threads; machine: {m['cpu']}, {m['cores']} cores")
    print(table(rows, ("writes", "files", "wall ms per file (median)", "CPU ms per file", "of it system")))
    print(f"plain / streamed, wall: {med('plain', 'ms_per_file') / med('streamed', 'ms_per_file'):.2f}x")
    write_json(args.json, {"machine": m, "args": vars(args), "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
