"""Resuming: what a collection was made from (the manifest), and which items are finished.

The manifest splits the inputs by what they decide: the plan (seed, size, layers, weights),
the pixels (trait art, PNG preset) and the metadata text. A resume refuses when the plan or
the pixels would differ, and simply rewrites metadata when only its text changed.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from gpucomp._shared import json_input
from gpucomp._shared.files import TMP_PREFIX, atomic_write_bytes, nonempty_file, read_regular, remove_temporaries
from gpucomp._version import __version__
from gpucomp.config import from_dict, to_dict
from gpucomp.errors import OutputError
from gpucomp.metadata.tokens import options_for_config
from gpucomp.outdir.journal import file_sha256, is_known
from gpucomp.outdir.layout import MANIFEST, MAX_METADATA_BYTES
from gpucomp.plan.render_view import trait_digest

FORMAT = 3
# never change the output
RUN_FIELDS = ("workers", "backend", "batch_size", "vram_budget", "cache", "ray", "ray_workers", "force")


def output_settings(cfg, frames: int = 1) -> dict:
    """The manifest's art.output: formats (with their settings), sizes and, for animated output, its
    settings and frame count. Absent from the manifest for one PNG at the canvas size, so earlier
    manifests (which lack it) mean exactly that."""
    out = {"formats": [f.to_dict() for f in cfg.formats], "sizes": [s.to_dict() for s in cfg.sizes]}
    if getattr(cfg, "animation", None) is not None:
        out["animation"] = {**cfg.animation.to_dict(), "frames": frames}
    return out


DEFAULT_OUTPUT = {"formats": [{"name": "png"}], "sizes": []}


def make_manifest(cfg, ls, stacks, cplan, encoder: str, extensions, layers_dir, frames: int = 1) -> dict:
    """`ls` is every loaded layer (for the art hashes), `stacks` the (LayerSet, options) per stack."""
    manifest = {
        "gpucomp": __version__,
        "format": FORMAT,
        "plan": {
            "seed": cfg.seed, "size": cfg.size, "start": cfg.start, "shuffle": cfg.shuffle,
            "stacks": [{"size": size, "layers": [
                {"folder": layer.folder, "name": layer.name, "dna": o.dna, "exact": dict(o.exact),
                 "traits": [[t.name, t.weight] for t in layer.traits]} for layer, o in zip(sl.layers, opts, strict=True)]}
                for (sl, opts), size in zip(stacks, cfg.stack_sizes, strict=True)],
            "rules": [r.text for r in cfg.rules],
            **({"links": [list(link.layers) for link in cfg.links]} if cfg.links else {}),
            **({"from": cplan.given} if cplan.given is not None else {}),
            **({"one_of_ones": cplan.one_of_ones} if cplan.one_of_ones else {}),
            "extensions": list(extensions),
        },
        "plan_sha256": cplan.digest(),
        "art": {"width": ls.width, "height": ls.height, "preset": cfg.preset, "opaque_rgb": cfg.opaque_rgb,
                "blend": [[[o.folder, o.blend, o.opacity] for o in opts] for _, opts in stacks],
                "traits": {layer.folder: {t.name: trait_digest(layer.folder, t, stacks) for t in layer.traits}
                           for layer in ls.layers}},
        "encoder": encoder,
        "metadata": {**options_for_config(cfg).to_dict(),
                     "layers": [[[o.folder, o.metadata, o.none] for o in opts] for _, opts in stacks]},
        "source": {"layers_dir": str(Path(layers_dir).resolve()),
                   "config": {k: v for k, v in to_dict(cfg).items() if k not in RUN_FIELDS}},
    }
    if output_settings(cfg, frames) != DEFAULT_OUTPUT:
        manifest["art"]["output"] = output_settings(cfg, frames)
    return manifest


MAX_MANIFEST_BYTES = 256 << 20  # plan, trait lists and art hashes: no per-item data

class _Row(tuple):
    """Schema of a fixed-length list: one spec per position."""


@dataclass(frozen=True)
class _Optional:
    """A key that manifests written before it existed lack (its absence means "none")."""

    spec: object


# The manifest's shape, checked on every read so that a damaged or hand-edited one is named, not
# a traceback. A dict is required keys -> specs; [spec] a list of spec; _Row(...) a fixed-length
# list; {str: spec} an object of any keys; a type, or a tuple of types, a value.
_NUMBER = (int, float)
_LAYER = {"folder": str, "name": str, "dna": bool, "exact": {str: int}, "traits": [_Row((str, _NUMBER))]}
_SCHEMA = {
    "format": int,
    "plan": {"seed": int, "size": int, "start": int, "shuffle": bool,
             "stacks": [{"size": int, "layers": [_LAYER]}], "rules": [str], "links": _Optional([[str]]),
             "from": _Optional({"kind": str, "sha256": str, "items": int}),
             "one_of_ones": _Optional([_Row((str, str, int))]),
             "extensions": [{"stack": int, "size": int, "seed": int}]},
    "plan_sha256": str,
    "art": {"width": int, "height": int, "preset": str, "opaque_rgb": bool,
            "blend": [[_Row((str, str, _NUMBER))]], "traits": {str: {str: str}}},
    "encoder": str,
    "metadata": {"layers": [[_Row((str, bool, (str, type(None))))]]},
    "source": {"layers_dir": str, "config": {str: object}},
}


def read_manifest(out: Path) -> dict:
    """OUT/gpucomp.json, checked against its schema: a damaged or hand-edited manifest raises
    OutputError naming the field and what to do."""
    path = Path(out) / MANIFEST
    fix = "pass --force to discard this output and start over"
    try:
        manifest = json_input.loads(read_regular(path, MAX_MANIFEST_BYTES))
    except (OSError, ValueError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise OutputError(f"{path}: unreadable ({why}); {fix}") from err
    if isinstance(manifest, dict) and manifest.get("format") not in (FORMAT, None):
        return manifest  # another format: `differences` names it, with the version that wrote it
    problem = (_schema_problem(manifest, _SCHEMA, "") or _output_problem(manifest["art"]) or _plan_problem(manifest["plan"])
               or _config_problem(manifest["source"]["config"]))
    if problem:
        raise OutputError(f"{path}: damaged or edited by hand: {problem}; {fix}")
    return manifest


def _schema_problem(value, spec, where: str) -> str | None:
    if isinstance(spec, dict) and not (len(spec) == 1 and next(iter(spec)) is str):
        if not isinstance(value, dict):
            return f"{where or 'the file'} should be an object, not {_kind(value)}"
        for key, sub in spec.items():
            if isinstance(sub, _Optional):
                if key not in value:
                    continue
                sub = sub.spec
            if key not in value:
                return f"{where + '.' if where else ''}{key} is missing"
            problem = _schema_problem(value[key], sub, f"{where + '.' if where else ''}{key}")
            if problem:
                return problem
        return None
    if isinstance(spec, dict):  # {str: spec}
        if not isinstance(value, dict):
            return f"{where} should be an object, not {_kind(value)}"
        subs = ((v, f"{where}[{k!r}]") for k, v in value.items())
        return next((p for v, w in subs if (p := _schema_problem(v, spec[str], w))), None)
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{where} should be a list, not {_kind(value)}"
        return next((p for i, v in enumerate(value) if (p := _schema_problem(v, spec[0], f"{where}[{i}]"))), None)
    if isinstance(spec, _Row):
        if not isinstance(value, list) or len(value) != len(spec):
            return f"{where} should be a list of {len(spec)} values, not {_kind(value)}"
        return next((p for i, (v, s) in enumerate(zip(value, spec, strict=True))
                     if (p := _schema_problem(v, s, f"{where}[{i}]"))), None)
    types = spec if isinstance(spec, tuple) else (spec,)
    if isinstance(value, bool) and bool not in types and object not in types:
        return f"{where} should be {_names(types)}, not {_kind(value)}"
    if not isinstance(value, types):
        return f"{where} should be {_names(types)}, not {_kind(value)}"
    return None


def _output_problem(art: dict) -> str | None:
    """art.output is optional (earlier manifests lack it); when there, its shape is checked here and its
    values by rebuilding the config (source.config holds the same settings)."""
    if "output" not in art:
        return None
    return _schema_problem(art["output"], {"formats": [{"name": str}], "sizes": [{"name": str}]}, "art.output")


def _plan_problem(plan: dict) -> str | None:
    """What the schema cannot say: cross-references inside the plan."""
    stacks = plan["stacks"]
    if not stacks:
        return "plan.stacks is empty"
    for k, ext in enumerate(plan["extensions"]):
        if not 0 <= ext["stack"] < len(stacks):
            return f"plan.extensions[{k}].stack is {ext['stack']}, but the plan has {len(stacks)} stacks"
        if ext["size"] < 1:
            return f"plan.extensions[{k}].size is {ext['size']}, not a positive number of items"
    for k, stack in enumerate(stacks):
        if stack["size"] < 0 or not stack["layers"]:
            return f"plan.stacks[{k}] has a negative size or no layers"
    return None


def _config_problem(stored: dict) -> str | None:
    """source.config must rebuild a valid Config: resume, extend and rerender run from it."""
    try:
        from_dict(stored)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:  # ConfigError is a ValueError
        return f"source.config is not a valid config ({type(err).__name__}: {err})"
    return None


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), f"the number {value!r}" if isinstance(value, (int, float)) else type(value).__name__)


def _names(types) -> str:
    words = {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
             type(None): "null", dict: "an object", list: "a list"}
    return " or ".join(words.get(t, t.__name__) for t in types)


def differences(old: dict, new: dict, art: bool = True, folder: str = "OUT") -> list[str]:
    """What changed in a way that would change the plan (or, with `art`, the pixels); empty
    means the old collection can be resumed with the new inputs. `folder` names OUT in advice."""
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        return ["its manifest has another format (written by gpucomp "
                f"{old.get('gpucomp', '?') if isinstance(old, dict) else '?'})"]
    out = []
    op, np_ = old.get("plan", {}), new["plan"]
    for key in ("seed", "size", "start", "shuffle"):
        if op.get(key) != np_[key]:
            out.append(f"{key} was {op.get(key)!r}, now {np_[key]!r}")
    os_, ns = op.get("stacks", []), np_["stacks"]
    if len(os_) != len(ns):
        out.append(f"the number of stacks changed ({len(os_)} -> {len(ns)})")
    for k, (a, b) in enumerate(zip(os_, ns, strict=False)):
        where = f" of stack {k + 1}" if len(ns) > 1 else ""
        al, bl = a.get("layers", []), b["layers"]
        if [(x.get("folder"), x.get("name")) for x in al] != [(x["folder"], x["name"]) for x in bl]:
            out.append("the layers or their order{} changed ({} -> {})".format(
                where, ", ".join(str(x.get("folder")) for x in al), ", ".join(x["folder"] for x in bl)))
            continue
        for x, y in zip(al, bl, strict=True):
            if x.get("traits") != y["traits"]:
                out.append(f"traits or weights of layer {y['folder']!r}{where} changed")
            elif (x.get("dna"), x.get("exact")) != (y["dna"], y["exact"]):
                out.append(f"dna or exact counts of layer {y['folder']!r}{where} changed")
    for key, what in (("rules", "rules"), ("links", "links"), ("from", "--from list of items"),
                      ("one_of_ones", "one-of-ones (their images or numbers)"),
                      ("extensions", "extensions")):
        if op.get(key, []) != np_.get(key, []):
            out.append(f"the {what} changed")
    if not out and old.get("plan_sha256") != new["plan_sha256"]:
        if (op.get("from") or {}).get("kind") == "dna":  # the one reading of a list that changed
            out.append("the DNA list now reads as HashLips writes it (a piece's place is its layer; gpucomp before "
                       "this took a piece's first number for its layer), which gives these items other traits")
        else:
            out.append("the same inputs now give another plan (was NumPy upgraded?)")
    if art:
        oa, na = old.get("art", {}), new["art"]
        for key, what in (("width", "canvas width"), ("height", "canvas height"), ("preset", "PNG preset"),
                          ("opaque_rgb", "opaque_rgb"), ("blend", "blend modes or opacities")):
            if oa.get(key) != na[key]:
                out.append(f"{what} was {oa.get(key)!r}, now {na[key]!r}" if key != "blend" else f"{what} changed")
        (o_anim, o_out), (n_anim, n_out) = _split_animation(output_of(old)), _split_animation(output_of(new))
        if o_out != n_out:
            out.append(f"the output formats or sizes changed ({_describe(o_out)} -> {_describe(n_out)})")
        if o_anim != n_anim:
            out.append(f"the animation settings changed ({_describe_animation(o_anim, n_anim)})")
        changed = changed_traits(old, new)
        if changed:
            shown = ", ".join(f"{f}/{t}" for f, t in sorted(changed)[:5]) + (" ..." if len(changed) > 5 else "")
            out.append(f"trait art changed ({shown}); `gpucomp rerender {folder}` re-renders the items that use it")
    return out


def output_of(manifest: dict) -> dict:
    """A manifest's output settings; DEFAULT_OUTPUT (one PNG) for one without them."""
    art = manifest.get("art", {})
    return art.get("output", DEFAULT_OUTPUT) if isinstance(art, dict) else DEFAULT_OUTPUT


def _split_animation(output: dict) -> tuple[dict | None, dict]:
    """(animation settings or None, the rest of the output settings)."""
    if not isinstance(output, dict):
        return None, output
    return output.get("animation"), {k: v for k, v in output.items() if k != "animation"}


def _describe_animation(old: dict | None, new: dict | None) -> str:
    """What changed between two animation settings: `fps 10 -> 12, formats ['gif'] -> ['webp']`."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return f"{'none' if old is None else '+'.join(map(str, old.get('formats', [])))} -> " \
               f"{'none' if new is None else '+'.join(map(str, new.get('formats', [])))}"
    keys = sorted(set(old) | set(new), key=lambda k: (k != "formats", k))
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


def _describe(output: dict) -> str:
    sizes = [s.get("name", "?") for s in output.get("sizes", []) if isinstance(s, dict)]
    formats = "+".join(str(f.get("name")) for f in output.get("formats", []) if isinstance(f, dict))
    return formats + (f", sizes {', '.join(sizes)}" if sizes else "")


def changed_traits(old: dict, new: dict) -> set[tuple[str, str]]:
    """(folder, trait) whose PNG content differs from what the old collection was rendered with."""
    ot = old.get("art", {}).get("traits", {})
    return {(folder, name) for folder, traits in new["art"]["traits"].items() for name, sha in traits.items()
            if ot.get(folder, {}).get(name) != sha}


def find_finished(out: Path, numbers, shas: np.ndarray, meta_bytes: Callable[[int], bytes], workers: int,
                  files: tuple[str, ...] = ("{n}.png",)) -> np.ndarray:
    """Bool mask of items whose primary image (files[0], a path under images/ with {n}) hashes to its
    record and whose other files (further formats and sizes) are there as non-empty plain files; an
    item missing one is rendered again, all its files. Their metadata is checked and rewritten if its
    text differs (e.g. a new base URI). Hashing runs in threads, in blocks, so memory stays flat."""
    done = np.zeros(len(numbers), bool)
    images = out / "images"

    def check(i: int) -> bool:
        n = numbers[i]
        if not is_known(shas[i]) or file_sha256(images / files[0].replace("{n}", str(n))) != shas[i].tobytes():
            return False
        if not all(nonempty_file(images / f.replace("{n}", str(n))) for f in files[1:]):
            return False
        path = out / "metadata" / f"{n}.json"
        want = meta_bytes(i)
        try:
            ok = read_regular(path, MAX_METADATA_BYTES) == want
        except OSError:
            ok = False
        if not ok:
            atomic_write_bytes(path, want)
        return True

    candidates = np.flatnonzero(shas.any(axis=1))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for b in range(0, len(candidates), 4096):
            block = candidates[b:b + 4096].tolist()
            done[block] = list(pool.map(check, block))
    return done


def clean_temporaries(out: Path, tmp_prefix: str = TMP_PREFIX, sizes: tuple[str, ...] = ()) -> int:
    """Remove partial files a killed run left under temporary names in OUT, images/, metadata/ and
    the sizes' folders images/<name>/."""
    folders = (out, out / "images", out / "metadata", *(out / "images" / s for s in sizes))
    return sum(remove_temporaries(d, tmp_prefix) for d in folders)
