"""VRAM budget parsing: a fraction of free memory (`0.8`) or a size (`8GiB`, `512MB`)."""
from __future__ import annotations

import math
import re

from gpucomp.errors import ConfigError

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_budget(text: str, source: str = "options") -> tuple[str, float]:
    """-> ("fraction", f) with 0 < f <= 1, or ("bytes", n)."""
    s = str(text).strip().lower()
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)", s)
    if not m or m.group(2) not in _UNITS:
        raise ConfigError(f"{source}: vram_budget {text!r} is neither a fraction (0.8) nor a size (8GiB, 512MB)")
    value, unit = float(m.group(1)), m.group(2)
    if not math.isfinite(value * _UNITS[unit]):  # 400 digits are float inf, which no int() takes
        raise ConfigError(f"{source}: vram_budget {str(text)[:20]!r}... is larger than any memory; "
                          f"write a size such as 8GiB")
    if not unit and value <= 1:
        if value <= 0:
            raise ConfigError(f"{source}: vram_budget fraction must be above 0, got {text!r}")
        return "fraction", value
    return "bytes", value * _UNITS[unit]


def resolve_budget(text: str, free_bytes: int) -> int:
    kind, value = parse_budget(text)
    return int(free_bytes * value) if kind == "fraction" else int(min(value, free_bytes))


MAX_BATCH = 65535  # items per CUDA launch: one item per grid row, and a grid has at most 65535 rows
