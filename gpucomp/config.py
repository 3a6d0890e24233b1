"""The TOML config: schema, defaults, validation and CLI overrides.

Every key is optional; `gpucomp generate LAYERS -n N -o OUT` needs no file. Errors
name the file and the key. Every key, its default and an example: docs/configuration.md.
"""
from __future__ import annotations

import os
import tomllib
import unicodedata
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gpucomp._shared.files import read_config_text
from gpucomp._shared.tables import check_table
from gpucomp.compositing import BLEND_MODES
from gpucomp.encode.animated import Animation, parse_animation
from gpucomp.encode.formats import EXTENSIONS, OutputFormat, check_available, format_settings, parse_formats
from gpucomp.encode.png import PRESETS
from gpucomp.encode.resize import Size, parse_sizes
from gpucomp.errors import ConfigError
from gpucomp.interop.itemlist import read_list
from gpucomp.layers.naming import is_plain_name
from gpucomp.metadata.tokens import BASE_KEYS, default_start, options_for_config
from gpucomp.plan.options import LayerOption, LinkOption, RuleOption, Stack, TraitOption
from gpucomp.render.budget import MAX_BATCH, parse_budget

MAX_SIZE = 10_000_000  # the plan holds every combination in memory; far above any real collection


@dataclass(frozen=True)
class Config:
    size: int = 100
    seed: int = 0
    start: int = 1  # number of the first item
    name_prefix: str = "Item"
    description: str = ""
    base_uri: str = "ipfs://REPLACE-WITH-CID"
    layers: tuple[LayerOption, ...] = ()  # bottom first; empty = every folder in natural order
    delimiter: str = "#"
    empty_name: str = "NONE"  # nftchef's emptyLayerName: a trait of this name draws nothing and is not listed
    preset: str = "fast"
    opaque_rgb: bool = True  # write results that are opaque everywhere as RGB (smaller, faster)
    workers: int = 0  # encode/composite threads; 0 = one per CPU core
    backend: str = "auto"  # auto | cuda | cpu
    batch_size: int = 0  # items per GPU launch; 0 = chosen from the VRAM budget
    vram_budget: str = "0.8"  # fraction of free VRAM, or a size such as "8GiB"
    cache: str = "auto"  # GPU prefix cache: auto (when it saves traffic) | on | off
    ray: str = ""  # "" = render in this process; "local" = Ray on this machine; else a Ray cluster address
    ray_workers: int = 0  # Ray workers; 0 = one per GPU (one per CPU without GPUs)
    force: bool = False
    shuffle: bool = False  # number the items in a seeded random order (mixes the stacks)
    stacks: tuple[Stack, ...] = ()  # several layer configurations; sizes add up to `size`
    rules: tuple[RuleOption, ...] = ()
    links: tuple[LinkOption, ...] = ()
    from_list: str = ""  # `generate --from FILE`: render exactly these items, in this order (itemlist.py)
    # [one_of_ones]: a folder of finished PNGs (oneofones.py), absolute once loaded, and the numbers given to some
    one_of_ones: str = ""
    one_of_ones_numbers: tuple[tuple[str, int], ...] = ()
    metadata: dict = field(default_factory=dict, hash=False)  # the [metadata] table (see metadata/tokens.py)
    # [output] format and [[output.sizes]] (formats.py, resize.py); the first format is the primary image.
    # Python callers may also pass "webp", ["png", "webp"] and a list of size tables: validate parses them.
    formats: tuple[OutputFormat, ...] = (OutputFormat("png"),)
    sizes: tuple[Size, ...] = ()
    # [output] animation and [output.animated] (encode/animated.py): None, no animated output. Python callers
    # may pass "webp" or ["webp", "mp4"] (default settings): validate parses them.
    animation: Animation | str | list | None = None

    @property
    def stack_sizes(self) -> list[int]:
        return [st.size for st in self.stacks] if self.stacks else [self.size]


# TOML table -> {key: (field name, type)}
SCHEMA: dict[str, dict[str, tuple[str, type]]] = {
    "collection": {"size": ("size", int), "seed": ("seed", int), "start": ("start", int),
                   "name_prefix": ("name_prefix", str), "description": ("description", str),
                   "base_uri": ("base_uri", str), "shuffle": ("shuffle", bool)},
    "input": {"delimiter": ("delimiter", str), "empty_name": ("empty_name", str)},
    "output": {"preset": ("preset", str), "opaque_rgb": ("opaque_rgb", bool)},
    "run": {"workers": ("workers", int), "backend": ("backend", str), "batch_size": ("batch_size", int),
            "vram_budget": ("vram_budget", str), "cache": ("cache", str), "ray": ("ray", str),
            "ray_workers": ("ray_workers", int)},
}


def _check_type(value: Any, typ: type, where: str) -> Any:
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if typ is str and isinstance(value, (int, float)) and not isinstance(value, bool) and where.endswith("vram_budget"):
        return str(value)
    if not ok:
        raise ConfigError(f"{where}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


def load_config(path: str | os.PathLike) -> Config:
    path = Path(path)
    text = read_config_text(path)
    try:
        data = tomllib.loads(text)
    except ValueError as err:  # TOMLDecodeError, or an integer of more than 4300 digits
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (arrays or tables nested too deep to read)") from None
    values: dict[str, Any] = {}
    for table, body in data.items():
        if table == "layers":
            values["layers"] = _layers(body, f"{path}: layers")
            continue
        if table == "stacks":
            values["stacks"] = _stacks(body, path)
            continue
        if table == "rules":
            values["rules"] = _rules(body, path)
            continue
        if table == "links":
            values["links"] = _links(body, path)
            continue
        if table == "one_of_ones":
            values.update(_one_of_ones(body, path))
            continue
        if table == "metadata":
            if not isinstance(body, dict):
                raise ConfigError(f"{path}: [metadata] must be a table")
            values["metadata"] = body
            continue
        if table == "output" and isinstance(body, dict):
            body = _output_media(body, values, path)
        if table not in SCHEMA:
            raise ConfigError(f"{path}: unknown table [{table}]; known: " +
                              ", ".join(sorted([*SCHEMA, "layers", "stacks", "rules", "links", "metadata", "one_of_ones"])))
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: [{table}] must be a table")
        for key, value in body.items():
            if key not in SCHEMA[table]:
                known = [*SCHEMA[table], *(("format", "sizes", "webp", "jpeg", "avif", "animation", "animated")
                                            if table == "output" else ())]
                raise ConfigError(f"{path}: unknown key {table}.{key}; known: {', '.join(known)}")
            name, typ = SCHEMA[table][key]
            values[name] = _check_type(value, typ, f"{path}: {table}.{key}")
    if "stacks" in values:
        total = sum(st.size for st in values["stacks"])
        if "size" in values and values["size"] != total:
            raise ConfigError(f"{path}: collection.size is {values['size']} but the [[stacks]] sizes add up to {total}; "
                              f"drop collection.size (it is their sum)")
        values["size"] = total
    if "start" not in values:  # [metadata] format = "solana": numbered from 0, as Sugar's assets are
        start = default_start(values.get("metadata"))
        if start is not None:
            values["start"] = start
    return validate(Config(**values), str(path))


FORMAT_TABLES = ("webp", "jpeg", "avif", "png")


def _output_media(body: dict, values: dict, path: Path) -> dict:
    """Take format, the per-format tables and sizes out of [output] (parsed into values); returns the rest."""
    where = f"{path}: output"
    tables = {k: body[k] for k in FORMAT_TABLES if k in body}
    values["formats"] = parse_formats(body.get("format", "png"), tables, where)
    if "sizes" in body:
        values["sizes"] = parse_sizes(body["sizes"], tuple(f.name for f in values["formats"]), where)
    if "animation" in body:
        webp = format_settings("webp", tables.get("webp", {}), f"{where}.webp")
        values["animation"] = parse_animation(body["animation"], body.get("animated", {}), webp, where)
    elif "animated" in body:
        raise ConfigError(f"{where}.animated: settings for animated output, but [output] animation names no format; "
                          f"add e.g. animation = \"webp\"")
    return {k: v for k, v in body.items() if k not in ("format", "sizes", "animation", "animated", *FORMAT_TABLES)}


def format_flag(text: str, config_path: str | os.PathLike | None = None) -> tuple[OutputFormat, ...]:
    """`--format png,webp`: these formats in this order (the first is the primary image), each with
    its settings table from the config's [output] when it has one (`webp = { quality = 70 }`), even
    for a format the config's own `format` does not list; else the defaults."""
    names = [n.strip() for n in text.split(",")]
    for name in names:
        if name not in EXTENSIONS:
            hint = " (write jpeg)" if name == "jpg" else ""
            raise ConfigError(f"--format: unknown format {name!r}{hint}; give one or more of {', '.join(EXTENSIONS)}, "
                              f"comma-separated, e.g. --format png,webp")
    if len(set(names)) != len(names):
        raise ConfigError(f"--format: {text!r} names a format twice")
    tables: dict = {}
    if config_path:
        try:
            body = tomllib.loads(read_config_text(Path(config_path))).get("output", {})
        except (ValueError, RecursionError, AttributeError):
            body = {}  # loading the config reports what is wrong with it
        tables = {k: body[k] for k in FORMAT_TABLES if k != "png" and isinstance(body, dict) and k in body}
    return parse_formats(names, tables, f"{config_path or 'options'}: output")


def _media(cfg: "Config", source: str) -> "Config":
    """Formats and sizes given in Python as names and tables, parsed; every format checked against Pillow;
    a size's own formats must be among them (a --format flag may leave one out)."""
    formats = cfg.formats
    if not (isinstance(formats, tuple) and formats and all(isinstance(f, OutputFormat) for f in formats)):
        names = list(formats) if isinstance(formats, (tuple, list)) else formats
        formats = parse_formats(names, {}, f"{source}: output")
    sizes = cfg.sizes
    if not all(isinstance(s, Size) for s in sizes):
        sizes = parse_sizes(list(sizes), tuple(f.name for f in formats), f"{source}: output")
    names = [f.name for f in formats]
    for size in sizes:
        if missing := [f for f in size.formats if f not in names]:
            raise ConfigError(f"{source}: output.sizes: size {size.name!r} is written as {', '.join(missing)}, "
                              f"which is not among the formats ({', '.join(names)}); add it to the formats or "
                              f"change the size's format")
    check_available(formats, source)
    anim = cfg.animation
    if anim is not None and not isinstance(anim, Animation):
        webp = next((f.settings for f in formats if f.name == "webp"), format_settings("webp", {}, "webp"))
        anim = parse_animation(list(anim) if isinstance(anim, tuple) else anim, {}, webp, f"{source}: output")
    if anim is not None and cfg.one_of_ones:
        raise ConfigError(f"{source}: [one_of_ones] are finished still images; a collection with animated output "
                          f"cannot include them (drop [one_of_ones] or [output] animation)")
    if anim is not None and any(s.name == "animation" for s in sizes):
        raise ConfigError(f"{source}: output.sizes: a size named \"animation\" would share images/animation/ with "
                          f"the animated files; rename the size")
    if (formats, sizes, anim) != (cfg.formats, cfg.sizes, cfg.animation):
        return replace(cfg, formats=formats, sizes=sizes, animation=anim)
    return cfg


LAYER_KEYS = {"folder": str, "name": str, "blend": str, "opacity": (int, float), "dna": bool, "metadata": bool,
              "none": str, "exact": dict, "traits": dict}


def _layers(body: Any, where: str) -> tuple[LayerOption, ...]:
    if not isinstance(body, list):
        raise ConfigError(f"{where} must be an array of tables: [[layers]] folder = \"Background\"")
    out = []
    for i, item in enumerate(body):
        w = f"{where}[{i}]"
        if isinstance(item, str):  # shorthand in [[stacks]]: layers = ["Background", "Body"]
            item = {"folder": item}
        if not isinstance(item, dict) or "folder" not in item:
            raise ConfigError(f"{w}: each layer entry needs folder = \"<sub-folder name>\"")
        check_table(item, LAYER_KEYS, w)
        exact = []
        for trait, count in item.get("exact", {}).items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ConfigError(f"{w}.exact.{trait}: expected a whole number of items (0 or more), got {count!r}")
            exact.append((_nfc(trait), count))
        out.append(LayerOption(item["folder"], _nfc(item.get("name")), item.get("blend", "normal"),
                               float(item.get("opacity", 1.0)), item.get("dna", True), item.get("metadata", True),
                               _nfc(item.get("none")), tuple(exact), _trait_options(item.get("traits", {}), w)))
    return tuple(out)


TRAIT_KEYS = {"z": int, "blend": str, "opacity": (int, float), "value": str}


def _trait_options(body: dict, where: str) -> tuple[tuple[str, TraitOption], ...]:
    out = []
    for trait, opts in body.items():
        w = f"{where}.traits.{trait}"
        if not isinstance(opts, dict):
            raise ConfigError(f"{w}: expected a table such as {{ z = 1, blend = \"screen\", opacity = 0.5 }}")
        check_table(opts, TRAIT_KEYS, w)
        op = opts.get("opacity")
        value = opts.get("value")
        if value is not None and not value.strip():
            raise ConfigError(f"{w}.value: empty; give the metadata value, or leave `value` out for the trait's name")
        out.append((_nfc(trait), TraitOption(opts.get("z"), opts.get("blend"), None if op is None else float(op),
                                             value)))
    return tuple(out)


def _nfc(text: str | None) -> str | None:
    """Names as the layers folder's names are read (NFC), so `Café` typed either way matches."""
    return None if text is None else unicodedata.normalize("NFC", text)


def _stacks(body: Any, path: Path) -> tuple[Stack, ...]:
    if not isinstance(body, list) or not body:
        raise ConfigError(f"{path}: stacks must be an array of tables: [[stacks]] size = 900, layers = [...]")
    out = []
    for i, item in enumerate(body):
        w = f"{path}: stacks[{i}]"
        if not isinstance(item, dict) or set(item) - {"size", "layers"} or "size" not in item or "layers" not in item:
            raise ConfigError(f"{w}: each [[stacks]] entry needs exactly size = <items> and layers = [...]")
        layers = _layers(item["layers"], f"{w}.layers")
        if not layers:
            raise ConfigError(f"{w}.layers: empty; list the layer folders of this stack, bottom first")
        out.append(Stack(_check_type(item["size"], int, f"{w}.size"), layers))
    return tuple(out)


def _rules(body: Any, path: Path) -> tuple[RuleOption, ...]:
    if not isinstance(body, list):
        raise ConfigError(f"{path}: rules must be an array of tables: [[rules]] never = [\"Hat/Crown\", \"Hair/Mohawk\"]")
    out = []
    for i, item in enumerate(body):
        w = f"{path}: rules[{i}]"
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in ("never", "always"):
            raise ConfigError(f"{w}: write either never = [\"Layer/Trait\", \"Layer/Trait\"] or always = [...]")
        kind, pair = next(iter(item.items()))
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) and "/" in x for x in pair)):
            raise ConfigError(f"{w}.{kind}: expected two \"Layer/Trait\" strings, got {pair!r}")
        a, b = ((layer, _nfc(trait)) for layer, trait in (x.split("/", 1) for x in pair))
        out.append(RuleOption(kind, a, b))
    return tuple(out)


def _one_of_ones(body: Any, path: Path) -> dict:
    """[one_of_ones] folder = "ones", numbers = {"Golden King" = 1}: the folder is relative to the config file."""
    example = '[one_of_ones] folder = "one-of-ones", numbers = { "Golden King" = 1 }'
    if not isinstance(body, dict):
        raise ConfigError(f"{path}: [one_of_ones] must be a table: {example}")
    check_table(body, {"folder": str, "numbers": dict}, f"{path}: one_of_ones")
    if not body.get("folder"):
        raise ConfigError(f"{path}: [one_of_ones] needs folder = \"...\" (a folder of finished PNGs): {example}")
    numbers = body.get("numbers", {})
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in numbers.values()):
        raise ConfigError(f"{path}: one_of_ones.numbers must map image names to whole numbers: {example}")
    return {"one_of_ones": str((path.parent / body["folder"]).resolve()),
            "one_of_ones_numbers": tuple(numbers.items())}


def _links(body: Any, path: Path) -> tuple[LinkOption, ...]:
    example = '[[links]] layers = ["Body", "Arms"]'
    if not isinstance(body, list):
        raise ConfigError(f"{path}: links must be an array of tables: {example}")
    out = []
    for i, item in enumerate(body):
        w = f"{path}: links[{i}]"
        if not isinstance(item, dict) or set(item) != {"layers"}:
            raise ConfigError(f"{w}: each [[links]] entry needs exactly layers = [...] (two or more layers): {example}")
        names = item["layers"]
        if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(x, str) and x for x in names)):
            raise ConfigError(f"{w}.layers: expected two or more layer names, got {names!r}")
        if len(set(names)) != len(names):
            raise ConfigError(f"{w}.layers: a layer is named twice in {names!r}")
        out.append(LinkOption(tuple(_nfc(x) for x in names)))
    return tuple(out)


def validate(cfg: Config, source: str = "options") -> Config:
    if cfg.size < 1:
        raise ConfigError(f"{source}: size must be at least 1, got {cfg.size}")
    if cfg.start > 2**53 or cfg.seed > 2**63 - 1:
        raise ConfigError(f"{source}: start must be at most 2**53 and seed below 2**63")
    if cfg.start < 0:
        raise ConfigError(f"{source}: start must be 0 or more, got {cfg.start}")
    if cfg.preset not in PRESETS:
        raise ConfigError(f"{source}: unknown preset {cfg.preset!r}; choose one of {', '.join(PRESETS)}")
    if cfg.backend not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"{source}: backend must be auto, cuda or cpu, got {cfg.backend!r}")
    if cfg.cache not in ("auto", "on", "off"):
        raise ConfigError(f"{source}: cache must be auto, on or off, got {cfg.cache!r}")
    if not isinstance(cfg.ray, str):
        raise ConfigError(f"{source}: ray must be an address (a string), \"local\" or True, got {cfg.ray!r}")
    if cfg.workers < 0 or cfg.batch_size < 0 or cfg.ray_workers < 0:
        raise ConfigError(f"{source}: workers, batch_size and ray_workers must be 0 (auto) or more")
    if cfg.batch_size > MAX_BATCH:
        raise ConfigError(f"{source}: batch_size {cfg.batch_size} is more than a CUDA launch takes ({MAX_BATCH} items); "
                          f"lower it, or use 0 to size batches from the GPU memory budget")
    if not cfg.delimiter or "/" in cfg.delimiter or "." in cfg.delimiter:
        raise ConfigError(f"{source}: delimiter must be non-empty and contain no '/' or '.', got {cfg.delimiter!r}")
    if cfg.stacks and cfg.layers:
        raise ConfigError(f"{source}: use either [[layers]] or [[stacks]] (each stack lists its own layers), not both")
    if cfg.stacks and cfg.size != sum(cfg.stack_sizes) and not cfg.from_list:  # a list decides its stacks' sizes
        raise ConfigError(f"{source}: the collection size is the sum of the [[stacks]] sizes ({sum(cfg.stack_sizes)}), "
                          f"not {cfg.size}; change the stack sizes instead of the size")
    if cfg.from_list and cfg.shuffle:
        raise ConfigError(f"{source}: --from renders the listed items in the listed order; it cannot be combined with "
                          f"shuffle")
    if isinstance(cfg.one_of_ones_numbers, dict):  # Python callers: one_of_ones_numbers={"Robot": 5}
        cfg = replace(cfg, one_of_ones_numbers=tuple(cfg.one_of_ones_numbers.items()))
    if cfg.one_of_ones and not Path(cfg.one_of_ones).is_absolute():  # kept in the manifest: resume runs elsewhere
        cfg = replace(cfg, one_of_ones=str(Path(cfg.one_of_ones).resolve()))
    if cfg.one_of_ones and cfg.from_list:
        raise ConfigError(f"{source}: --from renders exactly the listed items; [one_of_ones] cannot be added to them")
    if cfg.one_of_ones_numbers and not cfg.one_of_ones:
        raise ConfigError(f"{source}: one_of_ones numbers are given but no one_of_ones folder")
    if cfg.size > MAX_SIZE:
        raise ConfigError(f"{source}: size {cfg.size} is more than gpucomp supports ({MAX_SIZE}); lower it")
    if cfg.seed < 0:  # numpy's generator takes only non-negative seeds
        raise ConfigError(f"{source}: seed must be 0 or more, got {cfg.seed}")
    for k, layers in enumerate([cfg.layers] + [st.layers for st in cfg.stacks]):
        where = f"{source}: stacks[{k - 1}]" if k else source
        if k and cfg.stacks[k - 1].size < 1:
            raise ConfigError(f"{where}: size must be at least 1")
        for i, lo in enumerate(layers):
            if not is_plain_name(lo.folder):  # the layer stays inside the layers folder
                raise ConfigError(f"{where}: layers[{i}].folder {lo.folder!r} must be the name of one sub-folder "
                                  f"of the layers folder, not a path (no '/', '\\', '..' or drive); e.g. \"01-Background\"")
        spelt: dict[str, str] = {}
        for lo in layers:  # NFC: `Café` typed and `Cafe\u0301` copied from a Mac name one folder
            key = unicodedata.normalize("NFC", lo.folder)
            if key in spelt:
                other = (f" (also as {spelt[key]!r}, the same name in another Unicode form)" if spelt[key] != lo.folder
                         else "")
                raise ConfigError(f"{where}: the layer folder {lo.folder!r} is listed twice{other}")
            spelt[key] = lo.folder
        for lo in layers:
            if lo.blend not in BLEND_MODES:
                raise ConfigError(f"{where}: layer {lo.folder!r}: unknown blend {lo.blend!r}; "
                                  f"choose one of {', '.join(BLEND_MODES)}")
            if not 0.0 <= lo.opacity <= 1.0:
                raise ConfigError(f"{where}: layer {lo.folder!r}: opacity must be between 0 and 1, got {lo.opacity}")
            for trait, to in lo.traits:
                if to.blend is not None and to.blend not in BLEND_MODES:
                    raise ConfigError(f"{where}: layer {lo.folder!r}, trait {trait!r}: unknown blend {to.blend!r}; "
                                      f"choose one of {', '.join(BLEND_MODES)}")
                if to.opacity is not None and not 0.0 <= to.opacity <= 1.0:
                    raise ConfigError(f"{where}: layer {lo.folder!r}, trait {trait!r}: opacity must be between 0 "
                                      f"and 1, got {to.opacity}")
                if to.z is not None and abs(to.z) > 1_000_000:
                    raise ConfigError(f"{where}: layer {lo.folder!r}, trait {trait!r}: z {to.z} is out of range "
                                      f"(-1000000 to 1000000)")
    parse_budget(cfg.vram_budget, source)
    cfg = _media(cfg, source)
    options_for_config(cfg, source)  # the [metadata] table, checked after CLI overrides
    return cfg


def with_overrides(cfg: Config, **overrides: Any) -> Config:
    """Apply CLI/API overrides; None means 'not given'."""
    known = {f.name for f in fields(Config)}
    bad = set(overrides) - known
    if bad:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(bad))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if "metadata" in given and "start" not in given and cfg.start == Config.start:
        start = default_start(given["metadata"])  # a solana table given here: numbered from 0 unless start is set
        if start is not None:
            given["start"] = start
    if isinstance(given.get("ray"), bool):  # Python API: ray=True means Ray on this machine
        given["ray"] = "local" if given["ray"] else ""
    return validate(replace(cfg, **given))


def layer_dict(lo: LayerOption) -> dict:
    d = {"folder": lo.folder, "name": lo.name, "blend": lo.blend, "opacity": lo.opacity, "dna": lo.dna,
         "metadata": lo.metadata, "none": lo.none, "exact": dict(lo.exact)}
    if lo.traits:  # only when given: manifests of collections without them stay as they were
        d["traits"] = {name: to.to_dict() for name, to in lo.traits}
    return d


def to_dict(cfg: Config) -> dict:
    d = {f.name: getattr(cfg, f.name) for f in fields(Config)}
    d["layers"] = [layer_dict(lo) for lo in cfg.layers]
    d["stacks"] = [{"size": st.size, "layers": [layer_dict(lo) for lo in st.layers]} for st in cfg.stacks]
    d["rules"] = [{r.kind: ["/".join(r.a), "/".join(r.b)]} for r in cfg.rules]
    d["links"] = [list(link.layers) for link in cfg.links]
    d["one_of_ones_numbers"] = dict(cfg.one_of_ones_numbers)
    if not cfg.one_of_ones:  # collections without them: the stored config reads as before
        del d["one_of_ones"], d["one_of_ones_numbers"]
    d["formats"] = [f.to_dict() for f in cfg.formats]
    d["sizes"] = [s.to_dict() for s in cfg.sizes]
    if d["formats"] == [{"name": "png"}] and not d["sizes"]:  # today's default: the config reads as before
        del d["formats"], d["sizes"]
    if cfg.animation is None:
        del d["animation"]
    else:
        d["animation"] = cfg.animation.to_dict()
    if not isinstance(cfg.metadata, dict):  # MetadataOptions given in Python: store its table form
        d["metadata"] = {k: v for k, v in cfg.metadata.to_dict().items() if k not in BASE_KEYS}
    return d


def from_dict(d: dict) -> Config:
    """Inverse of to_dict (for commands that work from a collection's manifest)."""
    def layers(items):
        return tuple(LayerOption(x["folder"], x.get("name"), x.get("blend", "normal"), float(x.get("opacity", 1.0)),
                                 x.get("dna", True), x.get("metadata", True), x.get("none"),
                                 tuple(x.get("exact", {}).items()),
                                 _trait_options(x.get("traits", {}), "manifest")) for x in items)

    known = {f.name for f in fields(Config)}
    values = {k: v for k, v in d.items() if k in known}
    values["layers"] = layers(d.get("layers", []))
    values["stacks"] = tuple(Stack(x["size"], layers(x["layers"])) for x in d.get("stacks", []))
    values["rules"] = tuple(RuleOption(k, tuple(v[0].split("/", 1)), tuple(v[1].split("/", 1)))
                            for r in d.get("rules", []) for k, v in r.items())
    values["links"] = tuple(LinkOption(tuple(x)) for x in d.get("links", []))
    values["one_of_ones_numbers"] = tuple(dict(d.get("one_of_ones_numbers", {})).items())
    formats = d.get("formats", [{"name": "png"}])  # earlier manifests: one PNG
    values["formats"] = parse_formats([f["name"] for f in formats],
                                      {f["name"]: {k: v for k, v in f.items() if k != "name"} for f in formats
                                       if f["name"] != "png"}, "manifest: output")
    values["sizes"] = tuple(Size.from_dict(s) for s in d.get("sizes", []))
    if d.get("animation"):
        a = dict(d["animation"])
        formats, webp = a.pop("formats"), a.pop("webp", {})
        values["animation"] = parse_animation(formats, a, webp, "manifest: output")
    return validate(Config(**values), "manifest")


def with_list_size(cfg, size_given: int | None):
    """The config with `from_list` made absolute (resume, extend and rerender read it from the
    manifest) and the size the list decides."""

    path = Path(cfg.from_list).resolve()
    n = len(read_list(path))
    if size_given is not None and size_given != n:
        raise ConfigError(f"--from {path}: lists {n} items, but a size of {size_given} was given; "
                          f"leave the size out (the list decides it)")
    return validate(replace(cfg, from_list=str(path), size=n), "--from")
