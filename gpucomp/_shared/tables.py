"""Checks of one TOML table's keys and value types (config.py's tables, resize.py's sizes): an
unknown key or a value of the wrong type is a ConfigError naming the key."""
from __future__ import annotations

from typing import Any

from gpucomp.errors import ConfigError


def check_table(table: dict, keys: dict[str, Any], where: str) -> None:
    """`keys`: key -> a type or a tuple of types. bool is never taken for a number (TOML's true
    is not 1) unless bool itself is allowed."""
    unknown = set(table) - set(keys)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(keys)}")
    for key, typ in keys.items():
        if key not in table:
            continue
        types = typ if isinstance(typ, tuple) else (typ,)
        value = table[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError(f"{where}.{key}: expected {type_words(types)}, got {type(value).__name__} {value!r}")


def type_words(types: tuple) -> str:
    if set(types) == {int, float}:
        return "number"
    return " or ".join(t.__name__ for t in types)
