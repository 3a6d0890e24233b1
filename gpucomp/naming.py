"""Trait and layer file-name conventions: `Name#weight.png`, natural ordering."""
from __future__ import annotations

import math
import re
import unicodedata
from pathlib import PureWindowsPath

from .errors import LayerError

_NUM = re.compile(r"(\d+)")
_ORDER_PREFIX = re.compile(r"^\d+\s*[-_. ]\s*(?=\S)")


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
    return _ORDER_PREFIX.sub("", folder) or folder


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
_HASHLIPS_WEIGHT = re.compile(r"(.*?)__w([-+]?[\d.,]+)")


def parse_trait_name(stem: str, delimiter: str, source: str) -> tuple[str, float]:
    """Split `Name#weight` (or `Name__w10`) into (name, weight); no weight means DEFAULT_WEIGHT.

    The weight is the text after the last delimiter. It must be a plain non-negative
    decimal number (`3`, `0.15`); anything else is an error naming `source`. The name is
    returned NFC-normalised.
    """
    newer = _HASHLIPS_WEIGHT.fullmatch(stem) if delimiter not in stem else None
    if newer:  # `Name__w10`: the naming of HashLips' newer engine
        name, text = newer.group(1), newer.group(2)
        if not re.fullmatch(r"\d+(\.\d+)?|\.\d+", text):
            raise LayerError(f"{source}: bad weight {text!r} after '__w'; write a plain number such as "
                             f"'Name__w3' or 'Name__w0.15' (decimal point, no comma or sign)")
        weight = float(text)
    elif delimiter not in stem:
        name, weight = stem, DEFAULT_WEIGHT
    else:
        name, _, text = stem.rpartition(delimiter)
        if not re.fullmatch(r"\d+(\.\d+)?|\.\d+", text):
            raise LayerError(
                f"{source}: bad weight {text!r} after {delimiter!r}; write a plain number "
                f"such as 'Name{delimiter}3' or 'Name{delimiter}0.15' (decimal point, no comma or sign)"
            )
        weight = float(text)
        if not math.isfinite(weight):
            raise LayerError(f"{source}: weight {text!r} is not a finite number")
    require_utf8(name, source)
    # NFC: macOS writes decomposed file names, so `Café` copied from a Mac must equal a typed `Café`.
    name = unicodedata.normalize("NFC", name.strip())
    if not name:
        raise LayerError(f"{source}: the trait has no name before {'__w' if newer else delimiter!r}")
    return name, weight
