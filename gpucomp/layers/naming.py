"""Trait and layer file-name conventions: `Name#weight.png`, natural ordering."""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import PureWindowsPath

from gpucomp.errors import LayerError

_NUM = re.compile(r"(\d+)")
_ORDER_PREFIX = re.compile(r"^[0-9]+\s*[-_. ]\s*(?=\S)")


def _number(digits: str) -> tuple[int, int, str]:
    """A digit run as (0, length, digits) without leading zeros: numeric order without int(), which
    refuses runs over 4300 digits. Any Unicode decimal digit counts, as it does for \\d."""
    plain = "".join(str(unicodedata.decimal(c, 0)) for c in digits).lstrip("0")
    return (0, len(plain), plain)


def natural_key(name: str) -> tuple:
    """Sort key that orders `2-x` before `10-x` and never depends on the file system.

    The parts sit in their own tuple: with the name appended to them directly, `a` against `a1`
    compared the name with a number part and raised TypeError (layer folders `Hat` and `Hat2`)."""
    parts = _NUM.split(name.casefold())  # text, digits, text, ...: odd positions are digit runs
    return (tuple(_number(p) if i % 2 else (1, p) for i, p in enumerate(parts)), name)


def layer_display_name(folder: str) -> str:
    """`01_Background` -> `Background`: a leading order number is for stacking, not metadata. NFC, as
    trait names are: a folder copied from a Mac (`Cafe\u0301`) shows as the `Café` anyone types."""
    folder = unicodedata.normalize("NFC", folder)
    folder = re.sub(r"__z-?[0-9]+(?=__|$)", "", folder) or folder  # Art Engine 2's `Eyes__z10`: a position, not a name
    return _ORDER_PREFIX.sub("", folder) or folder


def has_order(folder: str) -> bool:
    """Whether a layer folder's name says where it stacks: a number in front (`01-Background`) or
    Art Engine 2's `__z<N>`."""
    return bool(_ORDER_PREFIX.match(folder)) or layer_z(folder) is not None


def is_plain_name(name: str) -> bool:
    """True for one path component: a layer folder named in a config must stay inside the layers folder."""
    return (bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")
            and not PureWindowsPath(name).drive)  # `C:x` is relative to a drive on Windows


def require_utf8(text: str, source: str) -> None:
    """Names go into UTF-8 metadata; a file name that is not UTF-8 reaches Python as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise LayerError(f"{source}: the name is not valid UTF-8 text ({text!r}); rename it") from None


DEFAULT_WEIGHT = 1.0  # a trait without a weight, also among traits that have one (as HashLips does)
_HASHLIPS_WEIGHT = re.compile(r"(.*?)__w([-+]?[\d.,]+)")  # \d: `__w٣` is a bad weight, said so


def _finite(text: str, source: str) -> float:
    """A weight's value: ASCII digits only (the patterns above use [0-9], not \\d, which also takes
    `٣` or `５`, digits no other engine reads as numbers), and finite (400 nines are float inf)."""
    weight = float(text)
    if not math.isfinite(weight):
        raise LayerError(f"{source}: weight {text[:20]!r}... is larger than any weight; write a plain number such as 3")
    return weight


MAX_PARAM_DIGITS = 9  # z, x and y: far beyond any canvas or stacking order, and int() of 4301 digits raises


def _param(text: str, what: str, source: str) -> int:
    if len(text.lstrip("-")) > MAX_PARAM_DIGITS:
        raise LayerError(f"{source}: {what} {text[:20]}... has more than {MAX_PARAM_DIGITS} digits; "
                         f"write a position such as {what}10")
    return int(text)


def parse_trait_name(stem: str, delimiter: str, source: str) -> tuple[str, float]:
    """Split `Name#weight` (or `Name__w10`) into (name, weight); no weight means DEFAULT_WEIGHT.

    The weight is the text after the last delimiter. It must be a plain non-negative
    decimal number (`3`, `0.15`); anything else is an error naming `source`. The name is
    returned NFC-normalised.
    """
    newer = _HASHLIPS_WEIGHT.fullmatch(stem) if delimiter not in stem else None
    if newer:  # `Name__w10`: the naming of HashLips' newer engine
        name, text = newer.group(1), newer.group(2)
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?|\.[0-9]+", text):
            raise LayerError(f"{source}: bad weight {text!r} after '__w'; write a plain number such as "
                             f"'Name__w3' or 'Name__w0.15' (decimal point, no comma or sign)")
        weight = _finite(text, source)
    elif delimiter not in stem:
        name, weight = stem, DEFAULT_WEIGHT
    else:
        name, _, text = stem.rpartition(delimiter)
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?|\.[0-9]+", text):
            raise LayerError(
                f"{source}: bad weight {text!r} after {delimiter!r}; write a plain number "
                f"such as 'Name{delimiter}3' or 'Name{delimiter}0.15' (decimal point, no comma or sign)"
            )
        weight = _finite(text, source)
    require_utf8(name, source)
    # NFC: macOS writes decomposed file names, so `Café` copied from a Mac must equal a typed `Café`.
    name = unicodedata.normalize("NFC", name.strip())
    if not name:
        raise LayerError(f"{source}: the trait has no name before {'__w' if newer else delimiter!r}")
    return name, weight


_Z_PREFIX = re.compile(r"z(-?[0-9]+),")  # nftchef's stacking prefix, `z-1,Back piece#10.png`
_ENGINE2_PARAM = re.compile(r"__([zxy])(-?[0-9]+)(?=__|$)")  # `Name__w10__z5__x10__y20` (`__w`: parse_trait_name)
BLEND_ALIASES = {"source-over": "normal", "normal": "normal"}  # canvas operation names nftchef and HashLips write


@dataclass(frozen=True)
class EntryName:
    """One file or folder name of a layers folder, taken apart (nftchef conventions included).

    `weight` is None when the name has no delimiter (nftchef: a *required* entry); `z` is None
    without a `z<N>,` prefix; `blend`/`opacity` come from a `?blend=…&opacity=<percent>` suffix."""

    name: str
    weight: float | None
    z: int | None = None
    blend: str | None = None
    opacity: float | None = None
    offset: tuple[int, int] | None = None  # (x, y) from `__x`/`__y` (HashLips Art Engine 2): where the image goes
    engine2: bool = False  # the name carries Art Engine 2 parameters (`__w`, `__z`, `__x`, `__y`)


def parse_entry(stem: str, delimiter: str, source: str, blend_modes: tuple[str, ...] = ()) -> EntryName:
    """Split `z-1,Name#10?blend=multiply&opacity=50` (a file's stem or a folder's name) into its
    parts. The `z<N>,` prefix counts at the start of the name only (nftchef matches it anywhere,
    so `Jazz,Blue` crashed there; here it is a name). The query must follow the weight, as in
    nftchef; a query holding the delimiter is an error saying so."""
    z = None
    m = _Z_PREFIX.match(stem)
    if m:
        z, stem = _param(m.group(1), "z", source), stem[m.end():]
    blend = opacity = None
    if "?" in stem:
        stem, _, query = stem.partition("?")
        blend, opacity = _parse_query(query, delimiter, source, blend_modes)
    params = {k: _param(v, f"__{k}", source) for k, v in _ENGINE2_PARAM.findall(stem)}
    stem = _ENGINE2_PARAM.sub("", stem) if params else stem
    if "z" in params:
        z = params["z"]
    offset = (params.get("x", 0), params.get("y", 0)) if "x" in params or "y" in params else None
    if offset and min(offset) < 0:
        raise LayerError(f"{source}: offset __x{offset[0]}__y{offset[1]} places the image outside the canvas; "
                         f"use offsets of 0 or more")
    weighted = delimiter in stem or _HASHLIPS_WEIGHT.fullmatch(stem) is not None
    name, weight = parse_trait_name(stem, delimiter, source)
    return EntryName(name, weight if weighted else None, z, blend, opacity, offset,
                     bool(params) or _HASHLIPS_WEIGHT.fullmatch(stem) is not None)


_EDGE_PARAM = re.compile(r"__([tv])(.+?)(?=__|\?|$)")  # `Cap__tBody__vRobot` (Art Engine 2 `edge-cases`)
EDGE_CASES_FOLDER = "edge-cases"


def parse_edge_case(stem: str, source: str) -> tuple[str, str, str]:
    """`Cap__tBody__vRobot__z5` (a file of an Art Engine 2 `edge-cases` folder) -> (`Cap__z5`, `Body`,
    `Robot`): the rest of the name (option and its own parameters), the other layer and its value."""
    found = _EDGE_PARAM.findall(stem)
    keys = [k for k, _ in found]
    if sorted(keys) != ["t", "v"]:
        raise LayerError(f"{source}: an edge case is named `<Option>__t<Layer>__v<Value>` (each once), as in "
                         f"Art Engine 2; rename the file")
    given = {k: unicodedata.normalize("NFC", v) for k, v in found}
    return _EDGE_PARAM.sub("", stem), given["t"], given["v"]


def offset_of(stem: str) -> tuple[int, int] | None:
    """(x, y) from a file name's `__x<N>`/`__y<N>` (HashLips Art Engine 2), None without them."""
    params = {k: _param(v, f"__{k}", stem) for k, v in _ENGINE2_PARAM.findall(stem.partition("?")[0])}
    return (params.get("x", 0), params.get("y", 0)) if "x" in params or "y" in params else None


def layer_z(folder: str) -> int | None:
    """A layer folder's `__z<N>` (HashLips Art Engine 2): the stacking position of all its images."""
    found = _ENGINE2_PARAM.findall(folder)
    return next((_param(v, "__z", folder) for k, v in found if k == "z"), None)


def _parse_query(query: str, delimiter: str, source: str,
                 blend_modes: tuple[str, ...]) -> tuple[str | None, float | None]:
    if delimiter in query:
        raise LayerError(f"{source}: the weight must come before the '?' options (nftchef reads "
                         f"'Name{delimiter}10?blend=multiply.png', not 'Name?blend=multiply{delimiter}10.png'); rename it")
    blend = opacity = None
    for setting in query.split("&"):
        key, _, value = setting.partition("=")
        if key == "blend":
            blend = BLEND_ALIASES.get(value, value)
            if blend_modes and blend not in blend_modes:
                raise LayerError(f"{source}: blend {value!r} is not one gpucomp draws; use one of "
                                 f"{', '.join(('source-over',) + tuple(blend_modes))}")
        elif key == "opacity":
            if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value) or float(value) > 100:
                raise LayerError(f"{source}: opacity {value!r} must be a percentage from 0 to 100 (opacity=50)")
            opacity = float(value) / 100
        else:
            raise LayerError(f"{source}: unknown option {key!r} after '?'; write ?blend=<mode>&opacity=<percent>")
    return blend, opacity
