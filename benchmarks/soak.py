"""Soak run: a large collection at a small size, process memory sampled as it streams, and every
output verified at the end (reliability issue: "100k items at small size, reporting memory over
time (it must stay flat) and verifying every output at the end").

    python benchmarks/soak.py                      # 100,000 items, 6 layers, 60 traits, 64x64
    python benchmarks/soak.py -n 2000              # a quick run
    python benchmarks/soak.py --out DIR --keep     # keep the collection

Memory: VmRSS of this process from /proc/self/status, sampled every 1% of the items (and at least
every --sample-seconds), one line printed per 10%; peak = the larger of VmHWM and every VmRSS
sample. Verdict "flat" when the RSS growth over the second half (least-squares fit of the in-run
samples) is under 5% of the RSS at 50% or under 10 MB. Verification: every images/<n>.png exists,
matches its sha256 in provenance.json and decodes to the canvas size; every metadata/<n>.json
parses, has edition n, the layer names, known traits and the DNA of its traits, and equals entry n
of _metadata.json (read streaming); DNAs are unique; rarity.json counts match; the provenance hash
recomputes and matches summary.json; a random sample of items (--recomposite, default 200) is
composited again with the dense reference form of the contract and must equal the decoded PNG pixel
for pixel.

Exit status: 0 all good, 1 verification failed (the output is then kept for inspection), 2 memory
not flat. JSON with every sample goes to benchmarks/results/soak-<timestamp>.json.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

import gpucomp
from gpucomp.demo import trait_counts

from common import DATA, machine, table, workload_layers, write_json

MAX_EXAMPLES = 20  # problems listed per kind in the report; the rest are counted


def mem_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB (MiB, like common.peak_rss_mb)."""
    rss = hwm = 0
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss / 1024, hwm / 1024


class Sampler:
    """RSS samples at every 1% of the items (and every `every_s` seconds), a line per 10%."""

    def __init__(self, n: int, every_s: float, t0: float):
        self.n, self.every_s, self.t0 = n, every_s, t0
        self.step = max(1, n // 100)
        self.samples: list[dict] = []
        self.next_print = 1
        self.last_t = t0
        self.peak = 0.0
        self.take(0, "start")

    def take(self, items: int, phase: str = "run") -> dict:
        now = time.perf_counter()
        rss, hwm = mem_mb()
        # The kernel updates the high-water mark lazily, so VmHWM alone can read below an earlier VmRSS.
        self.peak = max(self.peak, rss, hwm)
        s = {"items": items, "seconds": round(now - self.t0, 3), "rss_mb": round(rss, 2), "hwm_mb": round(hwm, 2),
             "peak_mb": round(self.peak, 2), "phase": phase}
        self.samples.append(s)
        self.last_t = now
        return s

    def tick(self, items: int) -> None:
        if items % self.step and items != self.n and time.perf_counter() - self.last_t < self.every_s:
            return
        s = self.take(items)
        while self.next_print <= 10 and items * 10 >= self.next_print * self.n:
            rate = items / s["seconds"] if s["seconds"] > 0 else 0.0
            print(f"  {self.next_print * 10:3d}%  {items:>8} items  {s['seconds']:8.1f} s  {rate:7.1f} items/s  "
                  f"RSS {s['rss_mb']:7.1f} MB  peak {s['peak_mb']:7.1f} MB", flush=True)
            self.next_print += 1

    def at(self, items: int) -> dict:
        """The first in-run sample at or after `items`."""
        run = [s for s in self.samples if s["phase"] == "run"] or self.samples
        return next((s for s in run if s["items"] >= items), run[-1])


def memory_verdict(sampler: Sampler, n: int) -> dict:
    run = [s for s in sampler.samples if s["phase"] == "run"]
    half = [s for s in run if s["items"] >= n / 2]
    mid, end = sampler.at(math.ceil(n / 2)), run[-1]
    if len(half) >= 2 and half[-1]["items"] > half[0]["items"]:
        x = np.array([s["items"] for s in half], np.float64)
        y = np.array([s["rss_mb"] for s in half], np.float64)
        slope = float(np.polyfit(x, y, 1)[0])  # MB per item
        growth = slope * (x[-1] - x[0])
    else:
        slope, growth = 0.0, end["rss_mb"] - mid["rss_mb"]
    limit = max(10.0, 0.05 * mid["rss_mb"])
    return {
        "rss_start_mb": sampler.samples[0]["rss_mb"], "rss_1pct_mb": sampler.at(max(1, n // 100))["rss_mb"],
        "rss_mid_mb": mid["rss_mb"], "rss_end_mb": end["rss_mb"], "peak_in_run_mb": end["peak_mb"],
        "slope_mb_per_10k_items": round(slope * 10_000, 3),
        "growth_second_half_mb": round(growth, 2), "growth_second_half_raw_mb": round(end["rss_mb"] - mid["rss_mb"], 2),
        "growth_second_half_pct": round(100 * growth / mid["rss_mb"], 2) if mid["rss_mb"] else None,
        "flat_limit_mb": round(limit, 2), "verdict": "flat" if growth < limit else "GROWING",
    }


def iter_json_array(path: Path, chunk: int = 1 << 20):
    """Yield the elements of a top-level JSON array one at a time, reading `chunk` characters at a time."""
    dec, ws = json.JSONDecoder(), re.compile(r"\s*")
    with open(path, encoding="utf-8") as f:
        buf, pos, eof = "", 0, False

        def more() -> bool:
            nonlocal buf, pos, eof
            data = "" if eof else f.read(chunk)
            if not data:
                eof = True
                return False
            buf, pos = buf[pos:] + data, 0
            return True

        def skip_ws() -> None:
            nonlocal pos
            while True:
                pos = ws.match(buf, pos).end()
                if pos < len(buf) or not more():
                    return

        def expect(chars: str) -> str:
            nonlocal pos
            skip_ws()
            c = buf[pos:pos + 1]
            if not c or c not in chars:
                raise ValueError(f"expected one of {chars!r} at {c!r}")
            pos += 1
            return c

        expect("[")
        skip_ws()
        if buf[pos:pos + 1] == "]":
            pos += 1
        else:
            while True:
                skip_ws()
                while True:
                    try:
                        obj, end = dec.raw_decode(buf, pos)
                        if end < len(buf) or eof:  # a value cut at the chunk's end would parse short
                            break
                    except json.JSONDecodeError:
                        if eof:
                            raise
                    if not more():
                        obj, end = dec.raw_decode(buf, pos)
                        break
                pos = end
                yield obj
                if expect(",]") == "]":
                    break
        skip_ws()
        if pos < len(buf):
            raise ValueError("data after the array")


class Problems:
    def __init__(self):
        self.counts: Counter = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, msg: str) -> None:
        self.counts[kind] += 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(msg)

    def __bool__(self) -> bool:
        return bool(self.counts)


def verify(out: Path, layers_dir: Path, n: int, start: int, summary: dict, recomposite: int, seed: int) -> dict:
    """Check every output file; returns a report with problem counts and examples."""
    from PIL import Image

    from gpucomp.compositing import composite_dense, finalize
    from gpucomp.layers.layerset import load_layers
    from gpucomp.plan.sampler import dna as dna_of

    t0 = time.perf_counter()
    p = Problems()
    ls = load_layers(layers_dir)
    layer_names = [layer.name for layer in ls.layers]
    by_name = [{t.name: t for t in layer.traits} for layer in ls.layers]
    numbers = list(range(start, start + n))

    # provenance.json: order, count, and the collection hash (kept as a compact list of hex strings)
    try:
        prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
        items = prov.get("items", [])
        prov_numbers = [it.get("number") for it in items]
        shas = [it.get("sha256") for it in items]
        del items
        if prov_numbers != numbers:
            p.add("provenance", f"item numbers are not {start}..{start + n - 1} in order ({len(prov_numbers)} items)")
        if prov.get("count") != n:
            p.add("provenance", f"count {prov.get('count')} != {n}")
        total = hashlib.sha256()
        for h in shas:
            total.update(str(h).encode())
        if total.hexdigest() != prov.get("provenance_hash"):
            p.add("provenance", "provenance_hash does not recompute from the item digests")
        if summary.get("provenance_hash") != prov.get("provenance_hash"):
            p.add("provenance", "provenance_hash differs from the run's summary")
        shas = dict(zip(prov_numbers, shas, strict=True))
        del prov, prov_numbers
    except (OSError, ValueError, AttributeError, TypeError) as err:
        p.add("provenance", f"unreadable: {err}")
        shas = {}
    try:
        on_disk = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        if on_disk.get("provenance_hash") != summary.get("provenance_hash") or on_disk.get("items") != n:
            p.add("summary", "summary.json disagrees with the run's summary")
    except (OSError, ValueError) as err:
        p.add("summary", f"summary.json unreadable: {err}")

    for sub, ext in (("images", ".png"), ("metadata", ".json")):
        names = set(os.listdir(out / sub)) if (out / sub).is_dir() else set()
        extra = names - {f"{k}{ext}" for k in numbers}
        if extra:
            p.add("extra files", f"{sub}/: {len(extra)} unexpected, e.g. {sorted(extra)[:3]}")

    collection = iter_json_array(out / "_metadata.json")
    collection_len = 0
    dnas: set[str] = set()
    tally = [Counter() for _ in ls.layers]
    for number in numbers:
        img, meta_path = out / "images" / f"{number}.png", out / "metadata" / f"{number}.json"
        try:
            data = img.read_bytes()
        except OSError as err:
            p.add("image missing", f"{img}: {err.strerror or err}")
            data = None
        if data is not None:
            if hashlib.sha256(data).hexdigest() != shas.get(number):
                p.add("image sha256", f"{img}: sha256 does not match provenance.json")
            try:
                with Image.open(io.BytesIO(data)) as im:
                    im.load()
                    if im.size != (ls.width, ls.height):
                        p.add("image size", f"{img}: {im.size[0]}x{im.size[1]}, expected {ls.width}x{ls.height}")
            except Exception as err:  # Pillow raises many types
                p.add("image decode", f"{img}: {type(err).__name__}: {err}")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            p.add("metadata", f"{meta_path}: {err}")
            meta = None
        if meta is not None:
            try:
                attrs = meta["attributes"]
                values = [a["value"] for a in attrs]
                if meta.get("edition") != number:
                    p.add("metadata", f"{meta_path}: edition {meta.get('edition')!r} != {number}")
                if [a["trait_type"] for a in attrs] != layer_names:
                    p.add("metadata", f"{meta_path}: trait types are not the layers {layer_names}")
                elif any(v not in by_name[li] for li, v in enumerate(values)):
                    p.add("metadata", f"{meta_path}: unknown trait in {values}")
                else:
                    for li, v in enumerate(values):
                        tally[li][v] += 1
                if meta.get("dna") != dna_of(values):
                    p.add("metadata", f"{meta_path}: dna does not match its traits")
                elif meta["dna"] in dnas:
                    p.add("duplicate", f"{meta_path}: dna {meta['dna']} already seen")
                else:
                    dnas.add(meta["dna"])
            except (KeyError, TypeError) as err:
                p.add("metadata", f"{meta_path}: malformed ({type(err).__name__}: {err})")
        try:
            entry = next(collection, None)
            if entry is not None:
                collection_len += 1
                if meta is not None and entry != meta:
                    p.add("_metadata.json", f"entry {collection_len} differs from {meta_path}")
        except (OSError, ValueError) as err:
            p.add("_metadata.json", f"unreadable after {collection_len} entries: {err}")
            collection = iter(())
    try:
        collection_len += sum(1 for _ in collection)
    except (OSError, ValueError) as err:
        p.add("_metadata.json", f"unreadable after {collection_len} entries: {err}")
    if collection_len != n:
        p.add("_metadata.json", f"{collection_len} entries, expected {n}")
    del dnas

    try:
        rarity = json.loads((out / "rarity.json").read_text(encoding="utf-8"))
        if isinstance(rarity.get("layers"), list):  # {"items", "layers": [{"name", "traits": [{"name", "count"}]}]}
            if rarity.get("items") != n:
                p.add("rarity.json", f"items {rarity.get('items')!r} != {n}")
            counted = [{t["name"]: t["count"] for t in layer["traits"]} for layer in rarity["layers"]]
        else:  # older layout: {layer name: {trait name: {"count"}}}
            counted = [{t: v["count"] for t, v in rarity[name].items()} for name in layer_names]
        if len(counted) != len(tally):
            p.add("rarity.json", f"{len(counted)} layers, expected {len(tally)}")
        for name, got, want in zip(layer_names, counted, tally, strict=True):
            if {t: c for t, c in got.items() if c} != dict(want):
                p.add("rarity.json", f"counts of layer {name!r} do not match the metadata")
    except (OSError, ValueError, KeyError, TypeError) as err:
        p.add("rarity.json", f"unreadable: {err}")
    t_files = time.perf_counter() - t0

    # Composite a random sample again from the layers (dense reference form) and compare pixels.
    t1 = time.perf_counter()
    sample = random.Random(seed).sample(numbers, min(recomposite, n))
    compared = 0
    for number in sample:
        img, meta_path = out / "images" / f"{number}.png", out / "metadata" / f"{number}.json"
        try:
            values = [a["value"] for a in json.loads(meta_path.read_text(encoding="utf-8"))["attributes"]]
            traits = [by_name[li][v] for li, v in enumerate(values)]
            with Image.open(img) as im:
                got = np.asarray(im)
        except Exception as err:  # already reported above
            p.add("recomposite", f"item {number}: cannot compare ({type(err).__name__}: {err})")
            continue
        want = finalize(composite_dense((ls.height, ls.width), traits), opaque_rgb=True)
        compared += 1
        if got.shape != want.shape:
            p.add("recomposite", f"{img}: shape {got.shape}, recomposited {want.shape}")
        elif not np.array_equal(got, want):
            diff = int(np.abs(got.astype(np.int16) - want).max())
            p.add("recomposite", f"{img}: {int((got != want).any(axis=-1).sum())} pixels differ (max {diff})")
    return {
        "ok": not p, "items_checked": n, "metadata_entries": collection_len, "recomposited": compared,
        "problems": dict(p.counts), "examples": p.examples,
        "seconds_files": round(t_files, 2), "seconds_recomposite": round(time.perf_counter() - t1, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--items", type=int, default=100_000)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--traits", type=int, default=60, help="traits over all layers (spread evenly)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the layers and of the plan")
    ap.add_argument("--workers", type=int, default=0, help="0 = one per core")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--recomposite", type=int, default=200, help="items composited again and compared (0: none)")
    ap.add_argument("--sample-seconds", type=float, default=10.0, help="sample at least this often")
    ap.add_argument("--out", help="output folder (default: a temporary folder under benchmarks/.data)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary output folder")
    ap.add_argument("--json", help="results file (default benchmarks/results/soak-<timestamp>.json)")
    args = ap.parse_args()
    n = args.items
    combos = math.prod(trait_counts(args.layers, args.traits)) if args.traits >= args.layers >= 1 else 0
    if n < 1 or combos < n:
        ap.error(f"{args.layers} layers of {trait_counts(args.layers, args.traits) if combos else '?'} traits give "
                 f"{combos} combinations, fewer than {n} items: raise --traits or --layers")
    spec = dict(layers=args.layers, traits=args.traits, size=args.image_size, seed=args.seed)
    layers_dir = workload_layers(spec)
    DATA.mkdir(parents=True, exist_ok=True)
    temporary = not args.out
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="soak-", dir=DATA))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    print(f"soak: {n} items, {args.layers} layers, {args.traits} traits ({combos} combinations), "
          f"{args.image_size}x{args.image_size}, preset {args.preset}, backend {args.backend}, "
          f"workers {args.workers or os.cpu_count()} -> {out}", flush=True)
    ok = False
    try:
        t0 = time.perf_counter()
        sampler = Sampler(n, args.sample_seconds, t0)
        gen = gpucomp.generate(layers_dir, out, size=n, seed=args.seed, backend=args.backend, preset=args.preset,
                               workers=args.workers, force=True, progress=False,
                               log=lambda msg: print(f"  gpucomp: {msg}", file=sys.stderr, flush=True))
        count = 0
        for _item in gen:
            count += 1
            sampler.tick(count)
        after = sampler.take(count, "finished")  # after _metadata.json, rarity and provenance were written
        wall = time.perf_counter() - t0
        summary = gen.summary
        del gen, _item
        mem = memory_verdict(sampler, n)
        mem["rss_after_finish_mb"], mem["peak_mb"] = after["rss_mb"], after["peak_mb"]  # peak includes the finish

        print(f"verifying {n} items ...", flush=True)
        check = verify(out, layers_dir, n, 1, summary, args.recomposite, args.seed)
        rss_v, hwm_v = mem_mb()
        check["rss_after_mb"], check["peak_mb"] = round(rss_v, 2), round(max(hwm_v, sampler.peak), 2)
        ok = check["ok"]

        rate = count / wall if wall > 0 else 0.0
        rows = [
            ("items", f"{count} (rendered {summary.get('rendered')})"),
            ("wall time (generate, end to end)", f"{wall:.1f} s"),
            ("items/s end to end / render phase", f"{rate:.1f} / {summary.get('items_per_s')}"),
            ("backend, workers", f"{summary['backend'].get('backend')}, {summary.get('workers')}"),
            ("RSS before / at 1% / 50% / 100%", f"{mem['rss_start_mb']:.1f} / {mem['rss_1pct_mb']:.1f} / "
                                                f"{mem['rss_mid_mb']:.1f} / {mem['rss_end_mb']:.1f} MB"),
            ("RSS after finish; peak (VmHWM) items / all", f"{after['rss_mb']:.1f} MB; {mem['peak_in_run_mb']:.1f} / "
                                                          f"{mem['peak_mb']:.1f} MB"),
            ("RSS slope, second half", f"{mem['slope_mb_per_10k_items']:+.3f} MB per 10k items"),
            ("RSS growth, second half (fit / raw)", f"{mem['growth_second_half_mb']:+.2f} / "
                                                    f"{mem['growth_second_half_raw_mb']:+.2f} MB "
                                                    f"({mem['growth_second_half_pct']:+.2f}%; flat < "
                                                    f"{mem['flat_limit_mb']:.1f} MB)"),
            ("memory verdict", mem["verdict"]),
            ("verification", "PASS" if ok else "FAIL " + ", ".join(f"{k}: {v}" for k, v in check["problems"].items())),
            ("  checked", f"{check['items_checked']} images + metadata, {check['metadata_entries']} _metadata.json "
                          f"entries, {check['recomposited']} recomposited exactly"),
            ("  verify time, RSS after / peak", f"{check['seconds_files'] + check['seconds_recomposite']:.1f} s, "
                                                f"{check['rss_after_mb']:.1f} / {check['peak_mb']:.1f} MB"),
        ]
        print(table(rows, ("measure", "value")))
        for kind, examples in check["examples"].items():
            print(f"{kind}: " + "\n  ".join(examples), file=sys.stderr)
        write_json(args.json or str(Path(__file__).parent / "results" / f"soak-{stamp}.json"), {
            "kind": "soak", "args": vars(args), "workload": dict(spec, combinations=combos, preset=args.preset),
            "machine": machine(), "items": count, "wall_seconds": round(wall, 3), "items_per_s": round(rate, 2),
            "gpucomp": summary, "memory": mem, "verification": check, "samples": sampler.samples,
        })
        if not ok:
            print(f"verification FAILED: output kept at {out}", file=sys.stderr)
            return 1
        if mem["verdict"] != "flat":
            print("memory is not flat", file=sys.stderr)
            return 2
        return 0
    finally:
        if temporary and ok and not args.keep:
            shutil.rmtree(out, ignore_errors=True)
        elif temporary and not ok and out.exists():
            print(f"output left at {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
