"""Trait and layer file-name conventions: `Name#weight.png`, natural ordering."""
from __future__ import annotations

import math
import re
import unicodedata
from pathlib import PureWindowsPath

from .errors import LayerError

_NUM = re.compile(r"(\d+)")
_ORDER_PREFIX = re.compile(r"^\d+\s*[-_. ]\s*(?=\S)")


def natural_key(name: str) -> tuple:
    """Sort key that orders `2-x` before `10-x` and never depends on the file system."""
    parts = _NUM.split(name.casefold())
    # isdecimal, not isdigit: '²' is a digit to isdigit() but not to \d or int(), and crashed int()
    return tuple((0, int(p)) if p.isdecimal() else (1, p) for p in parts) + (name,)


def layer_display_name(folder: str) -> str:
    """`01_Background` -> `Background`: a leading order number is for stacking, not metadata."""
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


def parse_trait_name(stem: str, delimiter: str, source: str) -> tuple[str, float]:
    """Split `Name#weight` into (name, weight); no delimiter means weight 1.

    The weight is the text after the last delimiter. It must be a plain non-negative
    decimal number (`3`, `0.15`); anything else is an error naming `source`. The name is
    returned NFC-normalised.
    """
    if delimiter not in stem:
        name, weight = stem, 1.0
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
        raise LayerError(f"{source}: the trait has no name before {delimiter!r}")
    return name, weight
