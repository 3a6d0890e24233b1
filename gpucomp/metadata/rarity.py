"""Rarity report: how often each trait came out against what its weight asked for, and
how rare each item is.

Everything here works on plain data (layer names, trait names, weight arrays and the
(N, L) `combos` plan), so a report can be made from a LayerSet (`from_layerset`) or from
any other source; pass `weights=None` where what was asked is unknown.

Layers are identified by their index: two layers may share a display name, and the same
trait name may appear in several layers. The JSON therefore holds a list of layers, not a
dict keyed by name, and the CSV header de-duplicates repeated layer names.

Scores (per item, over its L traits, with `count` the number of items sharing the trait):
  score       = sum of N / count            ("rarity.tools" rarity score; higher = rarer)
  log_rarity  = -log10(prod of count / N)   ("statistical rarity" as -log10 of the
                                            probability; higher = rarer)
Rank 1 is the rarest item by `score`; equal scores are ranked by item number.

OpenRarity (gpucomp/metadata/openrarity.py), when the caller passes the items' attributes as their
metadata states them: `openrarity_score`, `openrarity_rank` (ties share a rank: 1, 2, 2, 4) and
`openrarity_unique_traits` per item in the CSV, and an "openrarity" section in the JSON.

Asked-for vs observed: for a trait asked with probability p = w / sum(w), the count in N
items is compared with N*p using the binomial standard deviation sqrt(N p (1-p)). Unique
combinations are drawn by rejecting repeats, which pulls frequencies slightly toward even
when N is a large share of all combinations; the z-score then measures that pull too.

Output bytes depend only on the inputs: no timestamps, floats rounded to fixed places.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from gpucomp._shared.files import atomic_open, atomic_write_bytes, atomic_write_json
from gpucomp._shared.safe_text import csv_text_cell, terminal_safe
from gpucomp.metadata import openrarity

SIGMA = 3.0  # |z| above this marks a trait as off from what was asked
TOP = 10  # rarest items listed in the JSON summary and the text
_PCT = 3  # decimals for percentages
_Z = 3  # decimals for z-scores and expected counts
_SCORE = 6  # decimals for item scores
_OR_SCORE = 10  # decimals for OpenRarity scores (near 1; ties are judged at 1e-9)
# rarity.csv's OpenRarity columns, after the layer columns (a layer of one of these names is renamed)
OPENRARITY_COLUMNS = ("openrarity_rank", "openrarity_score", "openrarity_unique_traits")
OPENRARITY_TEXT = ("OpenRarity 0.7.5 information content: sum over trait names (with the meta-trait "
                   "meta_trait:trait_count, and 'null' for a missing trait) of log2(items / count), divided by "
                   "the collection's entropy; names and values lower-cased. Rank 1 = most traits no other item has, "
                   "then highest score; equal scores (within 1e-9) share a rank")


# ---------------------------------------------------------------------------- inputs


def _check(layer_names: Sequence[str], trait_names: Sequence[Sequence[str]], weights, combos) -> np.ndarray:
    combos = np.asarray(combos)
    n_layers = len(layer_names)
    if combos.ndim != 2 or combos.shape[1] != n_layers:
        raise ValueError(f"combos must be an (N, {n_layers}) array of trait indices, got shape {combos.shape}")
    if len(trait_names) != n_layers:
        raise ValueError(f"{len(trait_names)} trait name lists for {n_layers} layers")
    if weights is not None:
        if len(weights) != n_layers:
            raise ValueError(f"{len(weights)} weight arrays for {n_layers} layers")
        for li, (names, w) in enumerate(zip(trait_names, weights, strict=True)):
            if len(np.asarray(w).reshape(-1)) != len(names):
                raise ValueError(f"layer {li} ({layer_names[li]!r}): {len(np.asarray(w).reshape(-1))} weights "
                                 f"for {len(names)} traits")
    if combos.size:
        if not np.issubdtype(combos.dtype, np.integer):
            raise ValueError(f"combos must hold integer trait indices, got {combos.dtype}")
        lo = combos.min(axis=0)
        hi = combos.max(axis=0)
        for li, names in enumerate(trait_names):
            if lo[li] < 0 or hi[li] >= len(names):
                raise ValueError(f"layer {li} ({layer_names[li]!r}): trait index out of range "
                                 f"[{int(lo[li])}, {int(hi[li])}] for {len(names)} traits")
    return combos


def from_layerset(layerset) -> tuple[list[str], list[list[str]], list[np.ndarray]]:
    """(layer_names, trait_names, weights) of a LayerSet, for the functions below."""
    return ([layer.name for layer in layerset.layers],
            [[t.name for t in layer.traits] for layer in layerset.layers],
            [layer.weights for layer in layerset.layers])


# ---------------------------------------------------------------------------- traits


def _counts(combos: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    return [np.bincount(combos[:, li], minlength=size) for li, size in enumerate(sizes)]


def reachable(sizes: Sequence[int], n: int) -> list[tuple[float, float]]:
    """Per layer: the (lowest, highest) share of `n` unique items one of its traits can have,
    whatever the weights: an item is one combination of the layers, so a trait is in at most
    total / size of them (each combination of the other layers once) and left out of at most
    the rest. Rules and exact counts only narrow this."""
    total = math.prod(sizes)
    out = []
    for size in sizes:
        most = total // max(size, 1)
        out.append((max(0, n - (total - most)) / n, min(n, most) / n) if n else (0.0, 1.0))
    return out


def unreachable(layer_names: Sequence[str], trait_names: Sequence[Sequence[str]], weights, n: int,
                checked: Sequence[bool] | None = None) -> list[str]:
    """`Eye color/Yellow: asked 66.7%, at most 27.0% possible with 200 unique items of 324` for
    every trait whose weight asks for a share uniqueness cannot give at this size (the layers
    given are those that make an item unique; `checked` leaves out layers whose counts are fixed)."""
    sizes = [len(t) for t in trait_names]
    total, out = math.prod(sizes), []
    for li, (lo, hi) in enumerate(reachable(sizes, n)):
        if checked is not None and not checked[li]:
            continue
        w = np.asarray(weights[li], np.float64).reshape(-1)
        for name, pi in zip(trait_names[li], w / w.sum() if w.sum() > 0 else w, strict=True):
            if pi > hi + 0.005 or pi < lo - 0.005:  # half a percent: what the sampler's rounding allows anyway
                bound = f"at most {100 * hi:.1f}%" if pi > hi else f"at least {100 * lo:.1f}%"
                out.append(f"{layer_names[li]}/{name}: asked {100 * pi:.1f}%, {bound} possible with {n:,} unique "
                           f"items of {total:,}")
    return out


def achievable(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The shares a layer's traits can be expected at when some asked share lies outside [lo, hi]:
    those are held at the bound, and what they give up (or take) is shared by the others in
    proportion to their weights, again and again until every share fits (water-filling). A trait of
    weight 0 keeps share 0."""
    adj, fixed = p.astype(np.float64).copy(), (p <= 0)
    for _ in range(len(p)):
        out = ~fixed & ((adj > hi + 1e-12) | (adj < lo - 1e-12))
        if not out.any():
            break
        adj[out] = np.clip(adj[out], lo, hi)
        fixed |= out
        free = ~fixed
        if p[free].sum() > 0:
            adj[free] = p[free] / p[free].sum() * max(0.0, 1.0 - adj[fixed].sum())
    return adj


def trait_table(layer_names: Sequence[str], trait_names: Sequence[Sequence[str]], weights, combos,
                sigma: float = SIGMA) -> dict:
    """Per layer (in order, by index) and trait: count, observed % of the collection, % asked
    by the weights, expected count, z-score of the difference and whether |z| > sigma.

    `weights` may be None (e.g. from a manifest): the asked-for fields are then null.
    A trait asked with probability 0 or 1 has no spread: its z is null and it is off iff
    its count differs from the expected count.
    """
    combos = _check(layer_names, trait_names, weights, combos)
    n = int(combos.shape[0])
    counts = _counts(combos, [len(t) for t in trait_names])
    # bounds hold for items that are distinct combinations of these layers (not so with a layer that is
    # not part of uniqueness, or a report of any other combos): otherwise every share is reachable
    distinct = weights is not None and n > 0 and len(np.unique(combos, axis=0)) == n
    reach = reachable([len(t) for t in trait_names], n) if distinct else [(0.0, 1.0)] * len(trait_names)
    layers = []
    for li, (lname, names) in enumerate(zip(layer_names, trait_names, strict=True)):
        if weights is not None:
            w = np.asarray(weights[li], np.float64).reshape(-1)
            wsum = float(w.sum())
            p = w / wsum if wsum > 0 else np.zeros_like(w)
            lo, hi = reach[li]
            adj = achievable(p, lo, hi)  # equal to p unless uniqueness moves some share
            moved = not np.allclose(adj, p, rtol=0, atol=1e-12)
        traits = []
        for ti, name in enumerate(names):
            c = int(counts[li][ti])
            row = {"index": ti, "name": name, "count": c,
                   "percent": round(100.0 * c / n, _PCT) if n else 0.0,
                   "weight_percent": None, "expected": None, "z": None, "off": False}
            if weights is not None:
                pi = float(p[ti])
                if pi > 0 and not lo <= pi <= hi:  # uniqueness cannot give what was asked (weight 0: "never")
                    row["reachable_percent"] = [round(100.0 * lo, _PCT), round(100.0 * hi, _PCT)]
                if moved:  # judged against what uniqueness lets it have, not the weight alone
                    row["achievable_percent"] = round(100.0 * float(adj[ti]), _PCT)
                pc = float(adj[ti]) if moved else pi
                expected, sd = n * pc, math.sqrt(n * pc * (1.0 - pc))
                z = (c - expected) / sd if sd > 0 else None
                row.update(weight_percent=round(100.0 * pi, _PCT), expected=round(expected, _Z),
                           z=None if z is None else round(z, _Z),
                           off=bool(abs(z) > sigma) if z is not None else bool(abs(c - expected) > 1e-9))
            traits.append(row)
        layers.append({"index": li, "name": lname, "traits": traits})
    return {"items": n, "sigma": sigma, "weights_known": weights is not None, "layers": layers}


# ---------------------------------------------------------------------------- items


def _terms(combos: np.ndarray) -> tuple[int, np.ndarray]:
    """(N, per-item trait counts (N, L) int64): how many items share each of the item's traits."""
    combos = np.asarray(combos)
    n = int(combos.shape[0])
    out = np.empty(combos.shape, np.int64)
    for li in range(combos.shape[1]):
        col = combos[:, li]
        out[:, li] = np.bincount(col)[col] if n else col
    return n, out


def _rank(scores: np.ndarray) -> np.ndarray:
    """Rank 1 = highest score; equal scores in item order."""
    order = np.lexsort((np.arange(scores.shape[0]), -scores))
    ranks = np.empty(scores.shape[0], np.int64)
    ranks[order] = np.arange(1, scores.shape[0] + 1)
    return ranks


def item_scores(combos) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ranks) per item: score = sum over layers of N / count(trait), float64;
    rank 1 = rarest (highest score), ties by item number. Terms are summed in sorted
    order so items with the same counts in any layer order get bit-identical scores."""
    n, counts = _terms(combos)
    terms = np.sort(n / counts, axis=1)
    scores = terms.sum(axis=1)
    return scores, _rank(scores)


def item_log_rarity(combos) -> np.ndarray:
    """Statistical rarity per item: -log10 of the product of its trait frequencies
    (count / N); higher = rarer. 10 ** -value is the probability itself."""
    n, counts = _terms(combos)
    terms = np.sort(np.log10(n / counts), axis=1)
    return terms.sum(axis=1)


# ---------------------------------------------------------------------------- report


def _stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"min": None, "max": None, "mean": None, "median": None}
    return {"min": round(float(values.min()), _SCORE), "max": round(float(values.max()), _SCORE),
            "mean": round(float(values.mean()), _SCORE), "median": round(float(np.median(values)), _SCORE)}


def _rarest(ranks: np.ndarray, top: int) -> np.ndarray:
    """Item indices of ranks 1..top, in rank order."""
    k = min(top, ranks.shape[0])
    idx = np.flatnonzero(ranks <= k)
    return idx[np.argsort(ranks[idx])]


def build_report(layer_names, trait_names, weights, combos, start: int = 1, sigma: float = SIGMA,
                 top: int = TOP, open_rarity: "openrarity.Result | None" = None
                 ) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """(report dict for rarity.json, scores, ranks, log_rarity). With `open_rarity` (its result
    for these items, in item order) the rarest items also carry their OpenRarity rank and score,
    and the report has an "openrarity" section."""
    table = trait_table(layer_names, trait_names, weights, combos, sigma)
    combos = np.asarray(combos)
    scores, ranks = item_scores(combos)
    logr = item_log_rarity(combos)
    if open_rarity is not None and open_rarity.scores.shape[0] != combos.shape[0]:
        raise ValueError(f"OpenRarity result for {open_rarity.scores.shape[0]} items, combos for {combos.shape[0]}")

    def item(i: int) -> dict:
        row = {"number": start + int(i), "rank": int(ranks[i]), "score": round(float(scores[i]), _SCORE),
               "log_rarity": round(float(logr[i]), _SCORE),
               "traits": [trait_names[li][int(t)] for li, t in enumerate(combos[i])]}
        if open_rarity is not None:
            row.update(openrarity_rank=int(open_rarity.ranks[i]),
                       openrarity_score=round(float(open_rarity.scores[i]), _OR_SCORE))
        return row

    rarest = [item(i) for i in _rarest(ranks, top)]
    off = [{"layer": layer["index"], "layer_name": layer["name"], "trait": t["name"], "z": t["z"]}
           for layer in table["layers"] for t in layer["traits"] if t["off"]]
    report = {
        "items": table["items"], "start": start, "sigma": sigma, "weights_known": table["weights_known"],
        "score": "sum over layers of items / count(trait); rank 1 = highest, ties by item number",
        "log_rarity": "-log10 of the product over layers of count(trait) / items",
        "layers": table["layers"],
        "summary": {"score": _stats(scores), "log_rarity": _stats(logr), "off_traits": off, "rarest": rarest},
    }
    if open_rarity is not None:
        report["openrarity"] = {
            "definition": OPENRARITY_TEXT, "entropy": round(open_rarity.entropy, _OR_SCORE),
            "score": _stats(open_rarity.scores), "columns": list(OPENRARITY_COLUMNS),
            "rarest": [item(i) for i in _rarest(open_rarity.ranks, top)],
        }
    return report, scores, ranks, logr


def summary_lines(report: dict) -> list[str]:
    """Readable summary of a build_report dict: per layer its traits by count (most first)
    with observed % and asked %, `!` where |z| > sigma, then the rarest items. Names are shown
    terminal-safe: rarity.txt is what people `cat`, and a name may hold escape sequences."""
    n = report["items"]
    sigma = report["sigma"]
    known = report["weights_known"]
    lines = [f"Rarity report: {n} items, {len(report['layers'])} layers"
             + (f"; '!' marks a trait more than {sigma:g} sigma from its weight" if known else "; weights unknown")]
    for layer in report["layers"]:
        lines.append("")
        lines.append(f"Layer {layer['index'] + 1}: {terminal_safe(layer['name'])}")
        traits = sorted(layer["traits"], key=lambda t: (-t["count"], t["index"]))
        shown = [terminal_safe(t["name"]) for t in traits]  # the width is that of what is printed
        width = max([5] + [len(s) for s in shown])
        head = f"  {'trait':<{width}}  {'count':>8}  {'observed':>9}"
        if known:
            head += f"  {'asked':>9}  {'z':>8}"
        lines.append(head)
        for t, name in zip(traits, shown, strict=True):
            row = f"  {name:<{width}}  {t['count']:>8}  {t['percent']:>8.3f}%"
            if known:
                z = "-" if t["z"] is None else f"{t['z']:+.2f}"
                row += f"  {t['weight_percent']:>8.3f}%  {z:>8}"
                if t["off"]:
                    row += "  !"
                if "achievable_percent" in t:  # judged against what uniqueness allows, not the weight
                    row += f"  (achievable {t['achievable_percent']:.3f}%"
                    if "reachable_percent" in t:
                        row += f": unique items allow {t['reachable_percent'][0]:.3f}% to {t['reachable_percent'][1]:.3f}%"
                    row += ")"
            lines.append(row.rstrip())
    rarest = report["summary"]["rarest"]
    lines.append("")
    lines.append(f"{len(rarest)} rarest items (score = sum of items/count; log rarity = -log10 probability):")
    for r in rarest:
        lines.append(f"  #{r['rank']:<4} item {r['number']:<8} score {r['score']:>10.3f}  "
                     f"log rarity {r['log_rarity']:>7.3f}  "
                     + " / ".join(map(terminal_safe, r["traits"])))
    orr = report.get("openrarity")
    if orr:
        lines.append("")
        lines.append(f"{len(orr['rarest'])} rarest items by OpenRarity (the rank marketplaces show; ties share a rank):")
        for r in orr["rarest"]:
            lines.append(f"  #{r['openrarity_rank']:<4} item {r['number']:<8} score {r['openrarity_score']:>10.6f}  "
                         + " / ".join(map(terminal_safe, r["traits"])))
    return lines


def csv_header(layer_names: Sequence[str]) -> list[str]:
    """number, rank, score, log_rarity, then one column per layer; repeated names get ' (2)', ' (3)'...
    (as do layers named like one of the OpenRarity columns, which write_csv may add after these).
    A layer's column is a CSV text cell from an input: one that starts like a formula is neutralised
    (safe_text.csv_text_cell), after the repeats are told apart, so distinct columns stay distinct."""
    header = ["number", "rank", "score", "log_rarity"]
    taken = set(header) | set(OPENRARITY_COLUMNS)
    for name in layer_names:
        col, k = name, 2
        while col in taken:
            col, k = f"{name} ({k})", k + 1
        taken.add(col)
        header.append(csv_text_cell(col))
    return header


def _csv_rows(trait_names, combos, scores, ranks, logr, start: int, open_rarity=None,
              chunk: int = 4096) -> Iterable[list]:
    # trait names are the only text from an input here: neutralised once per trait, not per row
    names = [np.array([csv_text_cell(name) for name in t], dtype=object) for t in trait_names]
    for s in range(0, combos.shape[0], chunk):
        e = min(s + chunk, combos.shape[0])
        cols = [names[li][combos[s:e, li]] for li in range(combos.shape[1])]
        sc = [f"{x:.{_SCORE}f}" for x in scores[s:e].tolist()]
        lr = [f"{x:.{_SCORE}f}" for x in logr[s:e].tolist()]
        rk = ranks[s:e].tolist()
        more = [[] for _ in range(e - s)]
        if open_rarity is not None:
            more = zip(open_rarity.ranks[s:e].tolist(),
                       [f"{x:.{_OR_SCORE}f}" for x in open_rarity.scores[s:e].tolist()],
                       open_rarity.unique[s:e].tolist(), strict=True)
        for k, extra in enumerate(more):
            yield [start + s + k, rk[k], sc[k], lr[k], *(c[k] for c in cols), *extra]


def write_csv(path, layer_names, trait_names, combos, scores, ranks, logr, start: int = 1,
              open_rarity: "openrarity.Result | None" = None) -> None:
    """Stream one row per item into a temporary file in the same folder, then rename."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(csv_header(layer_names) + (list(OPENRARITY_COLUMNS) if open_rarity is not None else []))
        w.writerows(_csv_rows(trait_names, np.asarray(combos), scores, ranks, logr, start, open_rarity))


def write_report(out_dir, layer_names, trait_names, weights, combos, start: int = 1, sigma: float = SIGMA,
                 top: int = TOP, attributes: "Sequence[openrarity.Column] | None" = None) -> dict:
    """Write OUT/rarity.json (trait table + summary), OUT/rarity.csv (one row per item) and
    OUT/rarity.txt (readable summary), each atomically. Returns the JSON report dict.
    `attributes`: the items' metadata attributes (openrarity.Column, item order); with them the
    reports add OpenRarity's score and rank."""
    out = Path(out_dir)
    combos = np.asarray(combos)
    open_rarity = None if attributes is None else openrarity.score(attributes, combos.shape[0])
    report, scores, ranks, logr = build_report(layer_names, trait_names, weights, combos, start, sigma, top,
                                               open_rarity)
    atomic_write_json(out / "rarity.json", report)
    write_csv(out / "rarity.csv", layer_names, trait_names, combos, scores, ranks, logr, start, open_rarity)
    atomic_write_bytes(out / "rarity.txt", ("\n".join(summary_lines(report)) + "\n").encode("utf-8"))
    return report
