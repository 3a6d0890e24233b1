"""A/B: the standard workload rendered by an earlier revision and by the working tree, in
alternating runs on the same machine, so that a change's cost shows through the noise.

    python benchmarks/ab_standard.py --base f6c3fbd -n 300 --reps 3

Each run is a fresh process (`gpucomp.run` on the CPU backend, `fast` preset) with
PYTHONPATH pointing at one tree; the base tree is a temporary `git worktree`. Prints the
median items/s of each side and their ratio; writes JSON to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import STANDARD, machine, table, workload_layers, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUN = """
import json, sys, gpucomp
s = gpucomp.run(sys.argv[1], sys.argv[2], size=int(sys.argv[3]), seed=1, backend="cpu", preset="fast", force=True)
print(json.dumps({"items_per_s": s["items_per_s"], "items_per_s_total": s["items_per_s_total"]}))
"""


def one_run(tree: Path, layers: Path, n: int) -> dict:
    """One fresh process; adds its CPU seconds (user + system) per item: on a machine shared with
    other work that moves much less than items/s does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="gpucomp-ab-") as out:
        env = dict(os.environ, PYTHONPATH=str(tree))
        done = subprocess.run([sys.executable, "-c", RUN, str(layers), out, str(n)], env=env, check=True,
                              capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "cpu_s_per_item": round(cpu / n, 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("-n", "--items", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/ab-standard.json"))
    args = ap.parse_args()
    layers = workload_layers(STANDARD)
    with tempfile.TemporaryDirectory(prefix="gpucomp-base-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.base],
                       check=True, capture_output=True)
        try:
            runs: dict[str, list[dict]] = {"base": [], "head": []}
            for rep in range(args.reps):
                for side, tree in (("base", base), ("head", REPO)):
                    r = one_run(tree, layers, args.items)
                    runs[side].append(r)
                    print(f"rep {rep + 1} {side}: {r['items_per_s']} items/s render, {r['items_per_s_total']} end to end, "
                          f"{r['cpu_s_per_item'] * 1e3:.0f} ms CPU per item", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], capture_output=True)
    keys = ("items_per_s", "items_per_s_total", "cpu_s_per_item")
    med = {side: {k: statistics.median(r[k] for r in rs) for k in keys} for side, rs in runs.items()}
    rows = [(side, args.items, f"{m['items_per_s']:.2f}", f"{m['items_per_s_total']:.2f}",
             f"{m['cpu_s_per_item'] * 1e3:.0f}") for side, m in med.items()]
    print(table(rows, ("tree", "items", "items/s render (median)", "items/s end to end (median)",
                       "CPU ms per item (median, incl. load)")))
    ratio = med["head"]["items_per_s_total"] / med["base"]["items_per_s_total"]
    print(f"head / base, end to end: {ratio:.3f}; CPU per item head / base: "
          f"{med['head']['cpu_s_per_item'] / med['base']['cpu_s_per_item']:.3f}")
    write_json(args.json, {"machine": machine(), "base": args.base, "items": args.items, "workload": STANDARD,
                           "runs": runs, "median": med, "ratio_end_to_end": ratio})
    return 0


if __name__ == "__main__":
    sys.exit(main())
