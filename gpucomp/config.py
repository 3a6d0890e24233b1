"""The TOML config: schema, defaults, validation and CLI overrides.

Every key is optional; `gpucomp generate LAYERS -n N -o OUT` needs no file. Errors
name the file and the key. See README "Config" for an example.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class LayerOption:
    folder: str  # sub-folder of the layers folder
    name: str | None = None  # display name in metadata (default: folder without its order prefix)


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
    preset: str = "fast"
    opaque_rgb: bool = True  # write results that are opaque everywhere as RGB (smaller, faster)
    workers: int = 0  # encode/composite threads; 0 = one per CPU core
    backend: str = "auto"  # auto | cuda | cpu
    batch_size: int = 0  # items per GPU launch; 0 = chosen from the VRAM budget
    vram_budget: str = "0.8"  # fraction of free VRAM, or a size such as "8GiB"
    cache: str = "auto"  # GPU prefix cache: auto (when it saves traffic) | on | off
    force: bool = False


# TOML table -> {key: (field name, type)}
SCHEMA: dict[str, dict[str, tuple[str, type]]] = {
    "collection": {"size": ("size", int), "seed": ("seed", int), "start": ("start", int),
                   "name_prefix": ("name_prefix", str), "description": ("description", str),
                   "base_uri": ("base_uri", str)},
    "input": {"delimiter": ("delimiter", str)},
    "output": {"preset": ("preset", str), "opaque_rgb": ("opaque_rgb", bool)},
    "run": {"workers": ("workers", int), "backend": ("backend", str), "batch_size": ("batch_size", int),
            "vram_budget": ("vram_budget", str), "cache": ("cache", str)},
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
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err}); save the config as UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    values: dict[str, Any] = {}
    for table, body in data.items():
        if table == "layers":
            values["layers"] = _layers(body, path)
            continue
        if table not in SCHEMA:
            raise ConfigError(f"{path}: unknown table [{table}]; known: {', '.join(sorted([*SCHEMA, 'layers']))}")
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: [{table}] must be a table")
        for key, value in body.items():
            if key not in SCHEMA[table]:
                raise ConfigError(f"{path}: unknown key {table}.{key}; known: {', '.join(SCHEMA[table])}")
            name, typ = SCHEMA[table][key]
            values[name] = _check_type(value, typ, f"{path}: {table}.{key}")
    return validate(Config(**values), str(path))


def _layers(body: Any, path: Path) -> tuple[LayerOption, ...]:
    if not isinstance(body, list):
        raise ConfigError(f"{path}: layers must be an array of tables: [[layers]] folder = \"Background\"")
    out = []
    for i, item in enumerate(body):
        where = f"{path}: layers[{i}]"
        if not isinstance(item, dict) or "folder" not in item:
            raise ConfigError(f"{where}: each [[layers]] entry needs folder = \"<sub-folder name>\"")
        unknown = set(item) - {"folder", "name"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: folder, name")
        out.append(LayerOption(_check_type(item["folder"], str, f"{where}.folder"),
                               _check_type(item["name"], str, f"{where}.name") if "name" in item else None))
    return tuple(out)


def validate(cfg: Config, source: str = "options") -> Config:
    from .encode import PRESETS

    if cfg.size < 1:
        raise ConfigError(f"{source}: size must be at least 1, got {cfg.size}")
    if cfg.start < 0:
        raise ConfigError(f"{source}: start must be 0 or more, got {cfg.start}")
    if cfg.preset not in PRESETS:
        raise ConfigError(f"{source}: unknown preset {cfg.preset!r}; choose one of {', '.join(PRESETS)}")
    if cfg.backend not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"{source}: backend must be auto, cuda or cpu, got {cfg.backend!r}")
    if cfg.cache not in ("auto", "on", "off"):
        raise ConfigError(f"{source}: cache must be auto, on or off, got {cfg.cache!r}")
    if cfg.workers < 0 or cfg.batch_size < 0:
        raise ConfigError(f"{source}: workers and batch_size must be 0 (auto) or more")
    if not cfg.delimiter or "/" in cfg.delimiter or "." in cfg.delimiter:
        raise ConfigError(f"{source}: delimiter must be non-empty and contain no '/' or '.', got {cfg.delimiter!r}")
    folders = [lo.folder for lo in cfg.layers]
    if len(set(folders)) != len(folders):
        raise ConfigError(f"{source}: a layer folder is listed twice in [[layers]]")
    from .budget import parse_budget

    parse_budget(cfg.vram_budget, source)
    return cfg


def with_overrides(cfg: Config, **overrides: Any) -> Config:
    """Apply CLI/API overrides; None means 'not given'."""
    known = {f.name for f in fields(Config)}
    bad = set(overrides) - known
    if bad:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(bad))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return validate(replace(cfg, **given))


def to_dict(cfg: Config) -> dict:
    d = {f.name: getattr(cfg, f.name) for f in fields(Config)}
    d["layers"] = [{"folder": lo.folder, "name": lo.name} for lo in cfg.layers]
    return d
