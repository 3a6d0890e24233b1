"""`gpucomp import-config config.js`: a HashLips art engine v1 (or nftchef art-engine) config as a
gpucomp TOML the user keeps.

Only what `module.exports` exports counts (the engines' main.js reads nothing else). Converted:
`layerConfigurations` (`growEditionSizeTo` is cumulative: each configuration becomes a [[stacks]]
entry of the difference), each `layersOrder` entry's `name` (folder), `options.displayName` or
nftchef's `trait` (display name), `options.bypassDNA` (dna = false), `blend` and `opacity` (HashLips
under `options`, nftchef on the entry itself), nftchef's `sublayerOptions` (per-trait blend and
opacity), `namePrefix`, `description`, `baseUri`, `startIndex`, `shuffleLayerConfigurations`,
`rarityDelimiter`, `emptyLayerName`, `extraMetadata`, `network = NETWORK.sol` with `solanaMetadata`
(Solana metadata numbered from 0), `outputJPEG` (JPEG images), `format.width/height` (a sized copy
where the layers are another size), and with the layers folder nftchef's `incompatible` and
`forcedCombinations` (as never / always rules) and `traitValueOverrides` (per-trait `value`, and the
spaces the engines keep in a trait's raw name). Every other setting is one that changes no image,
number or metadata (NO_EFFECT), or gets a note (comments at the top of the TOML, and printed):
nothing is dropped without a word.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from PIL import Image

from gpucomp._shared.files import read_config_text
from gpucomp._shared.safe_text import EscapeTable, terminal_safe
from gpucomp.compositing import BLEND_MODES
from gpucomp.errors import ConfigError
from gpucomp.interop.jsconfig import Unreadable, read_js_module
from gpucomp.layers.scan import Walk

# Every setting HashLips v1's and nftchef's config.js export (their src/config.js, main.js) and what
# becomes of it: converted (below), a note when it is set, or no effect on images, numbers or metadata.
CONVERTED = ("layerConfigurations", "namePrefix", "description", "baseUri", "startIndex", "shuffleLayerConfigurations",
             "rarityDelimiter", "emptyLayerName", "extraMetadata", "incompatible", "forcedCombinations", "format",
             "network", "solanaMetadata", "outputJPEG")
NO_EFFECT = {  # used by the engines' utilities or their console only
    "debugLogs": "console logging", "uniqueDnaTorrance": "how often the engine retries a repeated DNA",
    "preview": "utils/preview.js", "preview_gif": "utils/preview_gif.js", "pixelFormat": "utils/pixelate.js",
    "buildDir": "where the engine writes (gpucomp: -o)", "layersDir": "where the engine reads (gpucomp: its argument)",
}
NOTED = {  # set (truthy) -> the note
    "background": "background.generate (a generated background colour): add a Background layer folder instead",
    "incompatible": "incompatible: pass --layers to convert it to [[rules]] never = [...]",
    "forcedCombinations": "forcedCombinations: pass --layers to convert it to [[rules]] always = [...]",
    "traitValueOverrides": "traitValueOverrides: pass --layers to convert it to per-trait `value` options",
    "extraAttributes": "extraAttributes (a function adding attributes): not converted",
    "hashImages": "hashImages (an imageHash in each item's metadata): not converted; gpucomp writes each image's "
                  "SHA-256 in provenance.json",
    "useRootTraitType": "useRootTraitType: not converted; gpucomp names nested folders' traits by their layer "
                        "(check the trait_type of nested folders)",
    "text": "text.only (the engine writes trait names as text instead of drawing the images): not converted",
    "gif": "gif.export (HashLips' animated GIF of the drawing order): not converted",
}
SOLANA_KEYS = ("symbol", "seller_fee_basis_points", "external_url", "creators")
# settings only nftchef's config.js has (HashLips v1's has none of them)
NFTCHEF_ONLY = ("startIndex", "emptyLayerName", "hashImages", "outputJPEG", "traitValueOverrides", "useRootTraitType",
                "incompatible", "forcedCombinations", "extraAttributes")


class _Converter:
    def __init__(self, values: dict, source: str):
        self.values, self.source = values, source
        self.notes: list[str] = []

    def get(self, name: str, default=None, where: str | None = None, value=None):
        """A value by name (or `value` itself), or a clear error if it is not a plain value."""
        v = self.values.get(name, default) if value is None else value
        if isinstance(v, Unreadable):
            raise ConfigError(f"{self.source}: line {v.line}: {where or name} is not a plain value ({v.why}); "
                              f"write it as a literal (a string, number, array or object) and convert again")
        return v

    def typed(self, value, typ, where: str):
        value = self.get("", value=value, where=where)
        if value is not None and (not isinstance(value, typ) or isinstance(value, bool) and typ is not bool):
            raise ConfigError(f"{self.source}: {where} should be {getattr(typ, '__name__', 'a number')}, "
                              f"got {json.dumps(value)}")
        return value

    def blend(self, value, where: str) -> str | None:
        value = self.typed(value, str, where)
        if value is None:
            return None
        name = "normal" if value == "source-over" else value
        if name not in BLEND_MODES:
            raise ConfigError(f"{self.source}: {where} is {value!r}, which gpucomp does not draw (it draws source-over "
                              f"and the separable blend modes: {', '.join(BLEND_MODES[1:])}); change it or remove it")
        return name

    def layer(self, entry, where: str) -> dict:
        entry = self.typed(entry, dict, where)
        name = self.typed(entry.get("name"), str, f"{where}.name")
        if not name:
            raise ConfigError(f"{self.source}: {where} has no name (the layer folder)")
        options = self.typed(entry.get("options", {}), dict, f"{where}.options") or {}
        out: dict = {"folder": name}
        display = self.typed(options.get("displayName", entry.get("trait")), str, f"{where} displayName")
        if display is not None and display != name:
            out["name"] = display
        blend = self.blend(entry.get("blend", options.get("blend")), f"{where} blend")
        if blend not in (None, "normal"):
            out["blend"] = blend
        opacity = self.typed(entry.get("opacity", options.get("opacity")), (int, float), f"{where} opacity")
        if opacity is not None and opacity != 1:
            out["opacity"] = float(opacity)
        if self.typed(options.get("bypassDNA"), bool, f"{where}.options.bypassDNA"):
            out["dna"] = False
        subs = self.typed(entry.get("sublayerOptions", {}), dict, f"{where}.sublayerOptions") or {}
        traits = {}
        for trait, opts in subs.items():
            opts = self.typed(opts, dict, f"{where}.sublayerOptions.{trait}")
            # nftchef resets what a sublayerOptions entry leaves out to source-over and 1
            blend = self.blend(opts.get("blend"), f"{where}.sublayerOptions.{trait}.blend") or "normal"
            traits[trait] = {"blend": blend,
                             "opacity": float(self.typed(opts.get("opacity", 1), (int, float), f"{where} opacity"))}
            if "trait" in opts:
                self.notes.append(f"{where}.sublayerOptions.{trait}.trait (another trait_type): not converted")
        if traits:
            out["traits"] = traits
            self.notes.append(f"{where}.sublayerOptions: converted to per-trait options; each key must be a trait "
                              f"of layer {name!r} (a file, or a folder of parts)")
        for key in sorted(set(entry) - {"name", "options", "trait", "blend", "opacity", "sublayerOptions"}):
            self.notes.append(f"{where}.{key}: not converted")
        return out

    def stacks(self) -> tuple[list[tuple[int, list[dict], str | None]], int]:
        configs = self.typed(self.get("layerConfigurations"), list, "layerConfigurations")
        if not configs:
            raise ConfigError(f"{self.source}: no layerConfigurations array found; is this a HashLips or nftchef "
                              f"config.js?")
        out, before = [], 0
        for k, cfg in enumerate(configs):
            where = f"layerConfigurations[{k}]"
            cfg = self.typed(cfg, dict, where)
            grow = self.typed(cfg.get("growEditionSizeTo"), int, f"{where}.growEditionSizeTo")
            if grow is None or grow <= before:
                raise ConfigError(f"{self.source}: {where}.growEditionSizeTo is {grow}; it counts up over the "
                                  f"configurations (cumulative), so it must be more than {before}")
            order = self.typed(cfg.get("layersOrder"), list, f"{where}.layersOrder")
            if not order:
                raise ConfigError(f"{self.source}: {where}.layersOrder is missing or empty")
            layers = [self.layer(e, f"{where}.layersOrder[{i}]") for i, e in enumerate(order)]
            prefix = self.typed(cfg.get("namePrefix"), str, f"{where}.namePrefix")
            if cfg.get("resetNameIndex"):
                self.notes.append(f"{where}.resetNameIndex: not converted (items are numbered through)")
            out.append((grow - before, layers, prefix))
            before = grow
        return out, before


def _walk(layers_dir: Path, stacks: list, delimiter: str) -> dict[str, list]:
    """Each layer folder the configurations name -> its traits as the walk finds them (names and
    files only: nothing is decoded), walked once for the rules, the values and the canvas size."""
    walk, out = Walk(layers_dir, delimiter, []), {}
    for _, layers, _ in stacks:
        for layer in layers:
            if layer["folder"] not in out:
                out[layer["folder"]] = walk.layer(layer["folder"])
    return out


def _trait_layers(found: dict[str, list]) -> dict[str, list[str]]:
    """Trait name -> the layer folders that have it."""
    where: dict[str, list[str]] = {}
    for folder, traits in found.items():
        for trait in traits:
            where.setdefault(trait.name, []).append(folder)
    return where


def _value_overrides(conv: "_Converter", found: dict[str, list], stacks: list, delimiter: str) -> None:
    """The metadata values the engines write, as `value` options of the traits they differ for: both
    take a trait's raw name (the file name without `z<N>,`, extension and weight) with its spaces
    (`shirt one #3.png` is "shirt one "), which gpucomp's names drop; nftchef then looks the raw name
    up in `traitValueOverrides` as it is, so a key matching no raw name changes nothing there either,
    and gets a note."""
    overrides = conv.typed(conv.values.get("traitValueOverrides"), dict, "traitValueOverrides") or {}
    used, spaced = set(), []
    for _, layers, _ in stacks:
        for layer in layers:
            for trait in found[layer["folder"]]:
                raw = re.sub(r"^z-?[0-9]+,", "", trait.path.name if trait.path.is_dir() else trait.path.stem)
                raw = raw.split(delimiter)[0]
                value = raw
                if raw in overrides:
                    value = conv.typed(overrides[raw], str, f"traitValueOverrides.{raw}")
                    used.add(raw)
                if value != trait.name:
                    layer.setdefault("traits", {}).setdefault(trait.name, {})["value"] = value
                    if raw not in overrides:
                        spaced.append(trait.name)
    if spaced:
        conv.notes.append(f"{len(spaced)} trait name(s) with spaces around them ({', '.join(map(repr, spaced[:5]))}): "
                          f"the engine writes the spaces into the metadata, so a `value` option keeps them")
    for key in overrides:
        if key not in used:
            conv.notes.append(f"traitValueOverrides.{key}: matches no trait's raw name exactly (the engine keeps "
                              f"the spaces before the weight: `shirt one #3.png` is \"shirt one \"), so it changes "
                              f"nothing, as in nftchef")


def _rules(conv: "_Converter", key: str, kind: str, where: dict[str, list[str]]) -> list[dict]:
    """nftchef's `incompatible` (never) or `forcedCombinations` (always) as [[rules]], each name looked
    up in the layers folder; a name found in no layer, or in several, is a note instead of a rule."""
    table = conv.typed(conv.values.get(key), dict, key) or {}
    out = []
    for a, bs in table.items():
        for b in conv.typed(bs, list, f"{key}.{a}") or []:
            la, lb = where.get(a, []), where.get(str(b), [])
            if len(la) == 1 and len(lb) == 1:
                out.append({kind: [f"{la[0]}/{a}", f"{lb[0]}/{b}"]})
            else:
                why = "in no layer" if not la or not lb else "in several layers"
                conv.notes.append(f"{key}: {a!r} with {b!r} not converted: a name is {why}; write the rule by hand")
    return out


def convert(text: str, source: str, layers_dir: str | Path | None = None) -> tuple[str, list[str]]:
    """(TOML text, notes) for a config.js's text. With `layers_dir`, nftchef's `incompatible` and
    `forcedCombinations` become [[rules]] (their names are looked up in the layer folders) and
    `format` is compared with the layers' size. Only what `module.exports` exports counts, as in
    the engines (their main.js reads the exports); a config.js without one counts every constant."""
    declared, exports = read_js_module(text, source)
    conv = _Converter(declared if exports is None else exports, source)
    _unknown_settings(conv, declared, exports)
    stacks, size = conv.stacks()
    rules, found = [], None
    if layers_dir is not None:
        delimiter = conv.typed(conv.values.get("rarityDelimiter"), str, "rarityDelimiter") or "#"
        found = _walk(Path(layers_dir), stacks, delimiter)
        where = _trait_layers(found)
        rules = _rules(conv, "incompatible", "never", where) + _rules(conv, "forcedCombinations", "always", where)
        _value_overrides(conv, found, stacks, delimiter)
    tables = {"collection": _collection(conv, stacks, size), "input": {}, "output": {}, "metadata": {}}
    for key, toml_key in (("rarityDelimiter", "delimiter"), ("emptyLayerName", "empty_name")):
        v = conv.typed(conv.values.get(key), str, key)
        if v is not None:
            tables["input"][toml_key] = v
    extra = conv.typed(conv.values.get("extraMetadata"), dict, "extraMetadata")
    if extra:
        tables["metadata"]["extra"] = extra
    if not any(key in conv.values for key in NFTCHEF_ONLY):  # HashLips v1 writes a dna; nftchef none
        tables["metadata"]["engine_dna"] = "hashlips"
    _network(conv, tables)
    sizes = _format(conv, tables, found)
    for key, note in NOTED.items():
        if layers_dir is not None and key in ("incompatible", "forcedCombinations", "traitValueOverrides"):
            continue
        v = conv.values.get(key)
        off = (key == "background" and isinstance(v, dict) and not v.get("generate")
               or key in ("text", "gif") and isinstance(v, dict) and not v.get("only" if key == "text" else "export"))
        if v not in (None, {}, [], False) and not off:
            conv.notes.append(note)
    return _toml(tables, sizes, stacks, rules, conv.notes, source), conv.notes


def _unknown_settings(conv: "_Converter", declared: dict, exports: dict | None) -> None:
    """A note for every exported name that is no engine setting, and for every setting the file
    declares but does not export (the engine does not see it: HashLips then names items
    `undefined #1` without namePrefix)."""
    known = (*CONVERTED, *NO_EFFECT, *NOTED)
    if exports is None:
        return
    for key in exports:
        if key not in known:
            conv.notes.append(f"{key}: not a setting HashLips v1 or nftchef reads; not converted")
    for key in declared:
        if key in known and key not in exports and key not in NO_EFFECT:
            conv.notes.append(f"{key} is declared but not in module.exports, so the engine does not see it; "
                              f"not converted (export it and convert again, if it was meant)")


def _collection(conv: "_Converter", stacks: list, size: int) -> dict:
    prefixes = [p for _, _, p in stacks if p is not None]
    prefix = conv.typed(conv.values.get("namePrefix"), str, "namePrefix") or (prefixes[0] if prefixes else None)
    if len(set(prefixes)) > 1:
        conv.notes.append(f"namePrefix differs between configurations ({', '.join(map(repr, prefixes))}); "
                          f"gpucomp uses one: {prefix!r}")
    collection = {"size": size}
    for key, toml_key, typ in (("description", "description", str), ("baseUri", "base_uri", str),
                               ("startIndex", "start", int), ("shuffleLayerConfigurations", "shuffle", bool)):
        v = conv.typed(conv.values.get(key), typ, key)
        if v is not None:
            collection[toml_key] = v
    if prefix is not None:
        collection["name_prefix"] = prefix
    return collection


def _network(conv: "_Converter", tables: dict) -> None:
    """HashLips v1's `network = NETWORK.sol`: Solana metadata from `solanaMetadata`, numbered from 0
    (main.js starts at 0 for sol, at 1 otherwise; nftchef has startIndex and no network)."""
    network = conv.typed(conv.values.get("network"), str, "network")
    if network not in (None, "eth", "sol"):
        raise ConfigError(f"{conv.source}: network is {network!r}; HashLips knows NETWORK.eth and NETWORK.sol")
    collection = tables["collection"]
    if network != "sol":
        collection.setdefault("start", 1)  # HashLips v1 numbers editions from 1
        return
    collection.setdefault("start", 0)
    if collection.get("base_uri"):
        conv.notes.append("baseUri: HashLips writes no base URI for Solana (image and files are `<n>.png`), so "
                          "neither does this config")
    collection["base_uri"] = ""  # file names, as HashLips writes them (not gpucomp's placeholder URI)
    meta = tables["metadata"]
    meta["format"] = "solana"
    solana = conv.typed(conv.values.get("solanaMetadata"), dict, "solanaMetadata") or {}
    for key in SOLANA_KEYS:
        if key in solana:
            meta[key] = conv.get("", value=solana[key], where=f"solanaMetadata.{key}")
    for key in sorted(set(solana) - set(SOLANA_KEYS)):
        conv.notes.append(f"solanaMetadata.{key}: not converted (HashLips writes only {', '.join(SOLANA_KEYS)})")


def _format(conv: "_Converter", tables: dict, found: dict[str, list] | None) -> list[dict]:
    """`format.width/height`: the engines draw every layer scaled to that size. gpucomp composites at
    the layers' own size (no layer is resampled before it is composited) and writes the configured
    size as a sized copy, images/format/, when the two differ; `outputJPEG` makes the images JPEG."""
    if conv.typed(conv.values.get("outputJPEG"), bool, "outputJPEG"):
        tables["output"]["format"] = "jpeg"
    fmt = conv.typed(conv.values.get("format"), dict, "format") or {}
    width = conv.typed(fmt.get("width"), int, "format.width")
    height = conv.typed(fmt.get("height"), int, "format.height")
    smooth = conv.typed(fmt.get("smoothing"), bool, "format.smoothing")
    if width is None or height is None:
        return []
    size = _layers_size(found) if found is not None else None
    if size == (width, height):
        return []
    if size is None:
        conv.notes.append(f"format: {width}x{height}: the engine scales every layer to it; gpucomp renders at the "
                          f"layer images' size, so convert again with --layers <folder> to have a {width}x{height} "
                          f"copy written if the layers are another size")
        return []
    conv.notes.append(f"format: {width}x{height}, the layers are {size[0]}x{size[1]}: the engine scales every layer "
                      f"to {width}x{height} as it draws; gpucomp composites at {size[0]}x{size[1]} (images/) and "
                      f"writes a {width}x{height} copy in images/format/ ({'lanczos' if smooth else 'nearest'}, as "
                      f"format.smoothing = {str(bool(smooth)).lower()}): the same art, resampled once")
    return [{"name": "format", "width": width, "height": height, "filter": "lanczos" if smooth else "nearest"}]


def _layers_size(found: dict[str, list]) -> tuple[int, int] | None:
    """The size of the first layer image the layers hold (the canvas)."""
    for traits in found.values():
        for trait in traits:
            for path in trait.files:
                try:
                    with Image.open(path) as im:
                        return im.size
                except OSError:
                    continue
    return None


# TOML basic strings: quote and backslash escaped, and every control (TOML refuses them raw; tab too, and C1
# controls, bidi and format characters, which TOML takes raw, so that `cat`ing the file shows them): the
# value tomllib reads back is the text itself, and no string can end its line or its quotes
_TOML_ESCAPES = EscapeTable(lambda c: f"\\u{c:04x}" if c < 0x10000 else f"\\U{c:08x}",
                            {0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"})


def toml_string(text: str) -> str:
    """`text` as a TOML basic string (a value, or a quoted key: the same escapes)."""
    if any(0xD800 <= ord(c) < 0xE000 for c in text):  # no TOML (or UTF-8) text can hold half a pair
        raise ConfigError(f"cannot write {text!r} into TOML: it holds half of a UTF-16 surrogate pair")
    return '"' + text.translate(_TOML_ESCAPES) + '"'


def _q(value) -> str:
    """A TOML value; strings (and inline tables' keys) as TOML basic strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_q(k)} = {_q(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_q(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} into TOML")


def _toml(tables: dict, sizes: list[dict], stacks, rules, notes, source) -> str:
    # comments hold text from the config.js (its name, its keys): a newline there would end the
    # comment and make the rest TOML, so each is one line, its controls shown as escapes
    lines = [f"# Converted by `gpucomp import-config` from {terminal_safe(Path(source).name)} (HashLips art "
             f"engine / nftchef).", "# Keep it: gpucomp generate <layers folder> -c <this file> -o <output folder>"]
    lines += [f"# note: {terminal_safe(n)}" for n in notes]
    for name, table in tables.items():
        if table or name == "collection":
            lines += ["", f"[{name}]"] + [f"{k} = {_q(v)}" for k, v in table.items()]
    for size in sizes:
        lines += ["", "[[output.sizes]]"] + [f"{k} = {_q(v)}" for k, v in size.items()]
    if len(stacks) == 1:
        for layer in stacks[0][1]:
            lines += ["", "[[layers]]"] + [f"{k} = {_q(v)}" for k, v in layer.items()]
    else:
        for size, layers, _ in stacks:
            lines += ["", "[[stacks]]", f"size = {size}", "layers = ["]
            lines += [f"  {_q(layer)}," for layer in layers] + ["]"]
    for rule in rules:
        lines += ["", "[[rules]]"] + [f"{k} = {_q(v)}" for k, v in rule.items()]
    return "\n".join(lines) + "\n"


def import_config(path: str | Path, layers_dir: str | Path | None = None) -> tuple[str, list[str]]:
    """Read a config.js (the same file checks as a TOML config) and convert it."""
    path = Path(path)
    return convert(read_config_text(path), str(path), layers_dir)
