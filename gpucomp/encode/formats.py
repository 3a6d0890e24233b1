"""Output formats: which files an item's composite becomes (PNG, WebP, JPEG, AVIF).

`[output] format` names one format or a list of them; every format is encoded from the same
composite. The first one listed is the *primary* image: metadata `image` names it, the journal and
provenance.json hash it. PNG goes through gpucomp's own encoder (encode/png.py, the preset); the others
through Pillow's encoders, which are optional in Pillow builds: `check_available` says which one is
missing before anything renders.

What each file decodes to (tested in tests/encode/test_formats.py):
- png, and webp with `lossless = true`: exactly the composite (RGB when opaque and opaque_rgb).
- webp, avif (lossy): the composite within the PSNR bound stated in the tests; alpha is kept.
- jpeg: no alpha channel; the composite is flattened onto `background` first (exact integer
  rounding: (c * a + bg * (255 - a) + 127) // 255), then encoded lossily.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, features
from PIL import __version__ as pillow_version

from gpucomp.encode.png import encode_png
from gpucomp.errors import ConfigError

EXTENSIONS = {"png": "png", "webp": "webp", "jpeg": "jpg", "avif": "avif"}
MIME_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg", "avif": "image/avif"}
MAX_SIDE = {"png": 65535, "webp": 16383, "jpeg": 65500, "avif": 65535}  # pixels a side each format holds
MAX_PIXELS = 1 << 28  # one sized copy: 1 GiB of RGBA in memory
_PILLOW_FEATURE = {"webp": "webp", "jpeg": "jpg", "avif": "avif"}  # PIL.features.check names
# Per-format settings ([output.webp] quality = 90 ...): key -> (type, lowest, highest, default).
SETTINGS: dict[str, dict[str, tuple[type, Any, Any, Any]]] = {
    "png": {},  # the PNG encoder is chosen by [output] preset
    "webp": {"quality": (int, 0, 100, 90), "method": (int, 0, 6, 4), "lossless": (bool, None, None, False)},
    "jpeg": {"quality": (int, 1, 95, 90), "background": (str, None, None, "#ffffff")},
    "avif": {"quality": (int, 0, 100, 80), "speed": (int, 0, 10, 6)},
}


@dataclass(frozen=True)
class OutputFormat:
    """One format and its encoder settings (defaults filled in)."""

    name: str  # png | webp | jpeg | avif
    settings: dict = field(default_factory=dict, hash=False, compare=True)

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.name]

    @property
    def mime(self) -> str:
        return MIME_TYPES[self.name]

    @property
    def lossless(self) -> bool:
        return self.name == "png" or (self.name == "webp" and bool(self.settings["lossless"]))

    def to_dict(self) -> dict:
        return {"name": self.name, **self.settings}


def name_list(value: Any, allowed, key: str, what: str, expected: str, hints: dict | None = None) -> list[str]:
    """`value` (a name or a non-empty list of names, each in `allowed`, none twice) as a list; the
    ConfigError names `key`. `what`: "format"; `expected`: "a format name"; `hints`: name -> advice."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
        raise ConfigError(f"{key}: expected {expected} or a non-empty list of them ({', '.join(allowed)}), "
                          f"got {value!r}")
    for name in names:
        if name not in allowed:
            hint = (hints or {}).get(name, "")
            raise ConfigError(f"{key}: unknown {what} {name!r}{hint}; choose from {', '.join(allowed)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{key}: {names!r} lists a format twice")
    return names


def parse_formats(value: Any, tables: dict, where: str) -> tuple[OutputFormat, ...]:
    """`format` ("png" or ["png", "webp"]) and the per-format tables ({"webp": {...}}) as
    OutputFormats, in the order given. Raises ConfigError naming the key."""
    names = name_list(value, EXTENSIONS, f"{where}.format", "format", "a format name",
                      {"jpg": " (write \"jpeg\")"})
    for name in tables:
        if name not in SETTINGS or name == "png":
            raise ConfigError(f"{where}: unknown table [output.{name}]; settings tables: webp, jpeg, avif "
                              f"(PNG is set by [output] preset)")
        format_settings(name, tables[name], f"{where}.{name}")  # checked even while its format is not listed
    return tuple(OutputFormat(n, format_settings(n, tables.get(n, {}), f"{where}.{n}")) for n in names)


def format_settings(name: str, table: Any, where: str) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table, e.g. [output.{name}] quality = 90")
    known = SETTINGS[name]
    unknown = set(table) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(known) or 'none'}")
    out = {}
    for key, (typ, lo, hi, default) in known.items():
        value = table.get(key, default)
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ConfigError(f"{where}.{key}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
        if lo is not None and not lo <= value <= hi:
            raise ConfigError(f"{where}.{key}: must be between {lo} and {hi}, got {value}")
        out[key] = value
    if name == "jpeg":
        hex_colour(out["background"], f"{where}.background")
    return out


def hex_colour(text: str, where: str) -> tuple[int, int, int]:
    digits = text[1:] if text.startswith("#") else ""
    try:
        if len(digits) != 6:
            raise ValueError
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
    except ValueError:
        raise ConfigError(f"{where}: expected a colour as \"#rrggbb\", got {text!r}") from None


def availability() -> dict[str, bool]:
    """Format name -> whether this Pillow can write it (PNG always: gpucomp's own encoder)."""
    return {name: name not in _PILLOW_FEATURE or bool(features.check(_PILLOW_FEATURE[name])) for name in EXTENSIONS}


def check_available(formats: tuple[OutputFormat, ...], where: str = "config") -> None:
    """Refuse, before anything renders, a format this Pillow build cannot write."""
    for fmt in formats:
        feature = _PILLOW_FEATURE.get(fmt.name)
        if feature and not features.check(feature):
            raise ConfigError(
                f"{where}: format {fmt.name!r} needs Pillow's {feature} support, which this Pillow "
                f"({pillow_version}) was built without; install a Pillow wheel with it (`pip install -U pillow`: "
                f"the wheels on PyPI include WebP, JPEG and, from Pillow 11.2, AVIF) or drop {fmt.name!r}")


def encode(pixels: np.ndarray, fmt: OutputFormat, preset="fast", opaque_rgb: bool = True) -> bytes:
    """The bytes of one file of format `fmt` from (H, W, 3|4) uint8 composite pixels; `preset` (a name
    or encode.Preset) is the PNG encoder's."""
    if fmt.name == "png":
        return encode_png(pixels, preset, opaque_rgb)
    s = fmt.settings
    if fmt.name == "jpeg":
        im = Image.fromarray(flatten(pixels, hex_colour(s["background"], "jpeg.background")), "RGB")
        return _save(im, "JPEG", quality=s["quality"], optimize=False)
    if opaque_rgb and pixels.shape[2] == 4 and bool((pixels[..., 3] == 255).all()):
        pixels = pixels[..., :3]
    im = Image.fromarray(np.ascontiguousarray(pixels), "RGBA" if pixels.shape[2] == 4 else "RGB")
    if fmt.name == "webp":
        if s["lossless"]:  # exact: keep the colour under transparent pixels as it is
            return _save(im, "WEBP", lossless=True, quality=s["quality"], method=s["method"], exact=True)
        return _save(im, "WEBP", quality=s["quality"], method=s["method"])
    return _save(im, "AVIF", quality=s["quality"], speed=s["speed"])


def _save(im, kind: str, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, kind, **options)
    return buf.getvalue()


def flatten(pixels: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """(H, W, 3) uint8: the composite over an opaque background colour, rounded to nearest."""
    if pixels.shape[2] == 3:
        return pixels
    a = pixels[..., 3:4].astype(np.uint32)
    bg = np.asarray(background, np.uint32)
    return ((pixels[..., :3] * a + bg * (255 - a) + 127) // 255).astype(np.uint8)
