"""Token metadata: ERC-721/OpenSea (default), Solana Metaplex, ERC-1155 or Tezos TZIP-21, from one
set of options (the [metadata] table plus name_prefix/description/base_uri from [collection]), the
chains' limits checked before anything renders (rewriting a finished output's metadata for new
options: outdir/update.py).

Field names follow each standard: Metaplex's Token Metadata JSON (what Sugar uploads: `image` and
`properties.files[].uri` are file names when no base URI is set, on-chain name <= 32 bytes, symbol
<= 10 bytes, URI <= 200 bytes, <= 5 creators whose shares add up to 100, fee 0..10000 basis points);
the ERC-1155 metadata JSON schema (`name`, `description`, `image`, `decimals`; clients fetch
`{id}` as 64 lower-case hex digits, see export.py); TZIP-21 (`artifactUri`, `displayUri`,
`thumbnailUri`, `formats[{uri, mimeType}]`, `creators` as addresses, `decimals: 0`,
`isBooleanAmount`, `royalties {decimals, shares}`, attributes as `{name, value}`).
Trait values are written as their names ("07" stays "07"); only a display type makes them numbers.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from gpucomp._shared.files import json_bytes
from gpucomp.encode.media import media_entries, output_files
from gpucomp.errors import ConfigError

FORMATS = ("erc721", "solana", "erc1155", "tezos")
OMITTABLE = ("dna", "edition", "compiler")  # fields gpucomp adds beyond the standards; `omit` leaves them out
DISPLAY_TYPES = ("number", "boost_number", "boost_percentage", "date")
# Top-level keys that one of the formats writes itself: `extra` may not replace them.
RESERVED = ("name", "symbol", "description", "seller_fee_basis_points", "image", "external_url", "dna",
            "edition", "attributes", "properties", "compiler", "decimals", "artifactUri", "displayUri",
            "thumbnailUri", "formats", "creators", "isBooleanAmount", "royalties", "externalUri")
TABLE_KEYS = ("format", "external_url", "symbol", "seller_fee_basis_points", "creators", "extra", "display_types",
              "omit", "collection_name", "engine_dna")
ENGINE_DNA = ("hashlips",)  # `dna` as that engine writes it (interop/engine_dna.py); default: gpucomp's own
BASE_KEYS = ("name_prefix", "description", "base_uri")  # these live in [collection]
# Metaplex Token Metadata on-chain limits, in UTF-8 bytes (Sugar's validate checks the same)
SYMBOL_MAX = 10
MAX_ITEM_BYTES = 16 << 20  # one item's metadata JSON as written (and read back to build _metadata.json)
MAX_SAFE_NUMBER = 2**53 - 1  # the largest integer a double (JavaScript's Number) holds exactly
NAME_MAX = 32
URI_MAX = 200
CREATORS_MAX = 5
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}")
_TEZOS = re.compile(r"(tz[1-4]|KT1)[1-9A-HJ-NP-Za-km-z]{33}")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class MetadataOptions:
    format: str = "erc721"  # erc721 | solana
    name_prefix: str = "Item"
    description: str = ""
    base_uri: str = "ipfs://REPLACE-WITH-CID"
    external_url: str = ""
    symbol: str = ""
    seller_fee_basis_points: int = 0  # 0..10000
    creators: tuple[tuple[str, int], ...] = ()  # (address, share %)
    extra: dict = field(default_factory=dict)  # extra top-level fields for every item
    display_types: dict = field(default_factory=dict)  # trait_type -> one of DISPLAY_TYPES
    omit: tuple[str, ...] = ()  # of OMITTABLE: fields left out of every item
    collection_name: str = ""  # the collection's own name (Sugar's collection.json); "" = name_prefix
    # Each item's image files (media.media_entries): (path under images/ with {n}, MIME type, size name or
    # ""), primary first; empty = one PNG, `{n}.png`. From [output], not from [metadata].
    media: tuple[tuple[str, str, str], ...] = ()
    engine_dna: str = ""  # "hashlips": each item's `dna` is HashLips v1's, so items match what it wrote

    def to_dict(self) -> dict:
        """JSON form for the manifest; same shape as the TOML table (plus the three [collection] keys).
        `omit` and `collection_name` only when set, so manifests of earlier collections read the same."""
        d = {
            "format": self.format, "name_prefix": self.name_prefix, "description": self.description,
            "base_uri": self.base_uri, "external_url": self.external_url, "symbol": self.symbol,
            "seller_fee_basis_points": self.seller_fee_basis_points,
            "creators": [{"address": a, "share": s} for a, s in self.creators],
            "extra": copy.deepcopy(self.extra), "display_types": dict(self.display_types),
        }
        if self.omit:
            d["omit"] = list(self.omit)
        if self.collection_name:
            d["collection_name"] = self.collection_name
        if self.engine_dna:
            d["engine_dna"] = self.engine_dna
        if self.media:
            d["media"] = [list(m) for m in self.media]
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "manifest") -> "MetadataOptions":
        """Inverse of to_dict; missing keys take their defaults (older manifests hold only three),
        other keys are ignored."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: metadata: expected a table, got {type(d).__name__} {d!r}")
        return build_options(d, source, lambda k: f"metadata.{k}")


def options_from_table(table: Any, base: dict, source: str) -> MetadataOptions:
    """Parse and check a TOML [metadata] table. `base` supplies name_prefix, description and
    base_uri (from [collection] after overrides); its other keys are ignored."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [metadata] must be a table")
    _reject_unknown(table, TABLE_KEYS, source, "metadata.")
    values = {k: base[k] for k in BASE_KEYS if k in base}
    values.update(table)
    return build_options(values, source, lambda k: f"collection.{k}" if k in BASE_KEYS else f"metadata.{k}")


def _media(value: Any, where: str) -> tuple[tuple[str, str, str], ...]:
    if not (isinstance(value, (list, tuple)) and all(isinstance(m, (list, tuple)) and len(m) == 3 and
                                                      all(isinstance(x, str) for x in m) for m in value)):
        raise ConfigError(f"{where}: expected a list of [path, MIME type, size name], got {value!r}")
    return tuple(tuple(m) for m in value)


def options_for_config(cfg, source: str = "config") -> MetadataOptions:
    """The options a run uses: cfg.metadata (a [metadata] table or MetadataOptions; absent means
    the defaults) with name_prefix, description and base_uri from cfg, so CLI overrides apply."""
    base = {k: getattr(cfg, k) for k in BASE_KEYS}
    table = getattr(cfg, "metadata", None)
    if isinstance(table, MetadataOptions):
        opts = replace(table, **base)
    else:
        opts = options_from_table(table or {}, base, source)
    if hasattr(cfg, "formats"):  # a Config (plain holders of the metadata keys have no [output])
        opts = replace(opts, media=media_entries(output_files(cfg.formats, cfg.sizes, getattr(cfg, "animation", None))))
    start, size = getattr(cfg, "start", 1), getattr(cfg, "size", 1)  # Config has both; plain holders may not
    check_numbers(opts, start, start + max(size, 1) - 1, source)
    return opts


def default_start(table: Any) -> int | None:
    """The first item number a [metadata] table implies when [collection] sets none: 0 for solana
    (Sugar's assets are numbered from 0), None (the usual 1) otherwise."""
    fmt = table.format if isinstance(table, MetadataOptions) else table.get("format") if isinstance(table, dict) else None
    return 0 if fmt == "solana" else None


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def check_numbers(opts: MetadataOptions, first: int, last: int, source: str = "options") -> None:
    """The limits that depend on the item numbers first..last (Metaplex's on-chain name and URI
    lengths), checked before anything renders. Raises ConfigError naming the key and the limit."""
    if last > MAX_SAFE_NUMBER:
        raise ConfigError(f"{source}: item numbers would reach {last}, past 2^53 - 1 ({MAX_SAFE_NUMBER}): JavaScript "
                          f"and most marketplaces read JSON numbers as doubles, where such editions collide "
                          f"({MAX_SAFE_NUMBER + 2} reads as {float(MAX_SAFE_NUMBER + 2):.0f}); lower collection.start")
    if opts.format != "solana":
        return
    name = f"{opts.name_prefix} #{last}"  # the longest number gives the longest name
    if _utf8(name) > NAME_MAX:
        room = NAME_MAX - _utf8(f" #{last}")
        raise ConfigError(f"{source}: collection.name_prefix: solana names are at most {NAME_MAX} bytes on chain, "
                          f"and item {last} would be {name!r} ({_utf8(name)} bytes); shorten the prefix to at most "
                          f"{max(room, 0)} bytes")
    if opts.base_uri:
        for uri in (f"{opts.base_uri.rstrip('/')}/{last}.json", _image_uri(last, opts, True)):
            if _utf8(uri) > URI_MAX:
                raise ConfigError(f"{source}: collection.base_uri: solana URIs are at most {URI_MAX} bytes on chain, "
                                  f"and {uri!r} is {_utf8(uri)}; use a shorter base URI (or none: Sugar fills in "
                                  f"the links it uploads)")


def check_size(opts: MetadataOptions, layers: list[tuple[str, list[str]]], last: int, source: str = "options") -> None:
    """The largest item metadata the collection can write, checked before anything renders (a 9 MB
    description rendered every item, then failed writing them): the last number, each layer's
    longest trait name, a full-length dna."""
    longest = [(name, max(traits, key=lambda t: len(t.encode("utf-8")))) for name, traits in layers if traits]
    size = len(json_bytes(item_metadata(last, longest, "f" * 64, opts)))
    if size > MAX_ITEM_BYTES:
        raise ConfigError(f"{source}: one item's metadata would be {size} bytes, more than the {MAX_ITEM_BYTES} "
                          f"gpucomp writes (the description is {_utf8(opts.description)} bytes); shorten the "
                          f"description or the [metadata] extra table")


def _reject_unknown(d: dict, known, source: str, prefix: str) -> None:
    for key in d:
        if key not in known:
            raise ConfigError(f"{source}: unknown key {prefix}{key}; known: {', '.join(known)}")


def _typed(value: Any, typ: type, where: str) -> Any:
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


def build_options(values: dict, source: str, label: Callable[[str], str]) -> MetadataOptions:
    def where(key: str) -> str:
        return f"{source}: {label(key)}"

    v: dict[str, Any] = {}
    for key in ("format", *BASE_KEYS, "external_url", "symbol"):
        if key in values:
            v[key] = _typed(values[key], str, where(key))
    if "seller_fee_basis_points" in values:
        v["seller_fee_basis_points"] = _typed(values["seller_fee_basis_points"], int, where("seller_fee_basis_points"))
    if "creators" in values:
        v["creators"] = _creators(values["creators"], where("creators"))
    if "extra" in values:
        v["extra"] = _extra(values["extra"], where("extra"))
    if "display_types" in values:
        v["display_types"] = _display_types(values["display_types"], where("display_types"))
    if "omit" in values:
        v["omit"] = _omit(values["omit"], where("omit"))
    if "collection_name" in values:
        v["collection_name"] = _typed(values["collection_name"], str, where("collection_name"))
    if "engine_dna" in values:
        v["engine_dna"] = _typed(values["engine_dna"], str, where("engine_dna"))
        if v["engine_dna"] not in ENGINE_DNA:
            raise ConfigError(f"{where('engine_dna')}: must be one of {', '.join(ENGINE_DNA)} (or left out for "
                              f"gpucomp's own dna), got {v['engine_dna']!r}")
    if "media" in values:
        v["media"] = _media(values["media"], where("media"))
    opts = MetadataOptions(**v)

    if opts.format not in FORMATS:
        raise ConfigError(f"{where('format')}: must be one of {', '.join(FORMATS)}, got {opts.format!r}")
    if not 0 <= opts.seller_fee_basis_points <= 10000:
        raise ConfigError(f"{where('seller_fee_basis_points')}: must be 0 to 10000 (100%), "
                          f"got {opts.seller_fee_basis_points}")
    if opts.format == "solana":
        _check_solana(opts, where)
    if opts.format == "tezos":
        for i, (address, _) in enumerate(opts.creators):
            if not _TEZOS.fullmatch(address):
                raise ConfigError(f"{where('creators')}[{i}].address: not a Tezos address (tz1, tz2, tz3, tz4 or KT1 "
                                  f"and 33 base58 characters): {address!r}")
        _check_shares(opts, where, "tezos royalties")
    return opts


def _check_solana(opts: MetadataOptions, where: Callable[[str], str]) -> None:
    if _utf8(opts.symbol) > SYMBOL_MAX:
        raise ConfigError(f"{where('symbol')}: at most {SYMBOL_MAX} bytes for solana (an on-chain limit), "
                          f"got {opts.symbol!r} ({_utf8(opts.symbol)} bytes)")
    if _utf8(opts.collection_name or opts.name_prefix) > NAME_MAX:
        key = "collection_name" if opts.collection_name else "name_prefix"
        raise ConfigError(f"{where(key)}: the collection's name is at most {NAME_MAX} bytes for solana (an on-chain "
                          f"limit), got {opts.collection_name or opts.name_prefix!r}; set a shorter "
                          f"metadata.collection_name")
    if len(opts.creators) > CREATORS_MAX:
        raise ConfigError(f"{where('creators')}: at most {CREATORS_MAX} creators for solana (an on-chain limit), "
                          f"got {len(opts.creators)}")
    for i, (address, _) in enumerate(opts.creators):
        if not _BASE58.fullmatch(address):
            raise ConfigError(f"{where('creators')}[{i}].address: not a Solana address "
                              f"(base58, 32 to 44 characters): {address!r}")
    _check_shares(opts, where, "solana")


def _check_shares(opts: MetadataOptions, where: Callable[[str], str], what: str) -> None:
    total = sum(s for _, s in opts.creators)
    if opts.creators and total != 100:
        raise ConfigError(f"{where('creators')}: shares must add up to 100 for {what}, got {total} "
                          f"({' + '.join(str(s) for _, s in opts.creators)})")


def _omit(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
        raise ConfigError(f"{where}: expected an array of field names like [\"dna\", \"compiler\"], got {value!r}")
    for x in value:
        if x not in OMITTABLE:
            raise ConfigError(f"{where}: {x!r} cannot be left out; these can: {', '.join(OMITTABLE)}")
    return tuple(dict.fromkeys(value))


def _creators(value: Any, where: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected an array like [{{address = \"...\", share = 100}}], "
                          f"got {type(value).__name__} {value!r}")
    out = []
    for i, item in enumerate(value):
        w = f"{where}[{i}]"
        if isinstance(item, dict):
            for key in item:
                if key not in ("address", "share"):
                    raise ConfigError(f"{w}: unknown key {key}; known: address, share")
            if "address" not in item or "share" not in item:
                raise ConfigError(f"{w}: needs both address and share")
            address, share = item["address"], item["share"]
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            address, share = item
        else:
            raise ConfigError(f"{w}: expected {{address = \"...\", share = N}}, got {type(item).__name__} {item!r}")
        address = _typed(address, str, f"{w}.address")
        share = _typed(share, int, f"{w}.share")
        if not address.strip():
            raise ConfigError(f"{w}.address: must not be empty")
        if not 0 <= share <= 100:
            raise ConfigError(f"{w}.share: must be 0 to 100 (percent), got {share}")
        if any(a == address for a, _ in out):
            raise ConfigError(f"{w}.address: {address!r} is listed twice")
        out.append((address, share))
    return tuple(out)


def _extra(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, got {type(value).__name__} {value!r}")
    for key, item in value.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: keys must be strings, got {key!r}")
        if key in RESERVED:
            raise ConfigError(f"{where}.{key}: {key!r} is written by gpucomp and cannot be set in extra "
                              f"(reserved: {', '.join(RESERVED)})")
        _json_value(item, f"{where}.{key}")
    return copy.deepcopy(value)


def _json_value(value: Any, where: str) -> None:
    """Only what JSON can hold (TOML also has dates, and floats nan/inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} cannot be written to JSON; use a finite number or a string")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _json_value(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: keys must be strings, got {key!r}")
            _json_value(item, f"{where}.{key}")
    else:
        raise ConfigError(f"{where}: a {type(value).__name__} cannot be written to JSON ({value!r}); "
                          f"use a string, number, boolean, array or table")


def _display_types(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table like {{ Level = \"number\" }}, got {type(value).__name__} {value!r}")
    for key, kind in value.items():
        if kind not in DISPLAY_TYPES:
            raise ConfigError(f"{where}.{key}: must be one of {', '.join(DISPLAY_TYPES)}, got {kind!r}")
    return dict(value)


def parse_number(text: str) -> int | float | None:
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        x = float(text)
        return x if math.isfinite(x) else None
    return None


def trait_number(trait_type: str, value: Any, kind: str) -> int | float:
    """A trait value shown with a display_type: '7' -> 7, '2.5' -> 2.5; anything else is an error."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    x = parse_number(value) if isinstance(value, str) else None
    if x is None:
        raise ConfigError(f"metadata.display_types.{trait_type}: display_type {kind!r} needs numeric values, but "
                          f"trait {trait_type!r} has the value {value!r}; rename that trait to a number "
                          f"(e.g. '7' or '2.5') or remove the display type")
    return x


def check_traits(opts: MetadataOptions, layers: list[tuple[str, list[str]]], source: str = "options") -> None:
    """Check display_types against the layers (display name, trait names) before anything renders."""
    names = [name for name, _ in layers]
    for trait_type, kind in opts.display_types.items():
        if trait_type not in names:
            raise ConfigError(f"{source}: metadata.display_types.{trait_type}: no layer is named {trait_type!r}; "
                              f"layers: {', '.join(names)}")
        seen: dict = {}
        for trait in dict.fromkeys(t for name, traits in layers if name == trait_type for t in traits):
            x = trait_number(trait_type, trait, kind)
            if x in seen:  # '7' and '07' would print the same value and could not be told apart later
                raise ConfigError(f"{source}: metadata.display_types.{trait_type}: traits {seen[x]!r} and {trait!r} "
                                  f"are the same number")
            seen[x] = trait


def _image_uri(number: int, opts: MetadataOptions, solana: bool, path: str | None = None) -> str:
    """The URI of an item's primary image, or of the file at `path` (a media path with {n})."""
    name = (path or _files(opts)[0][0]).replace("{n}", str(number))
    if solana and not opts.base_uri:
        return name  # Metaplex's uploader (Sugar) takes file names and fills in the links
    return f"{opts.base_uri.rstrip('/')}/{name}"


def _files(opts: MetadataOptions) -> tuple[tuple[str, str, str], ...]:
    return opts.media or (("{n}.png", "image/png", ""),)


def _animation(opts: MetadataOptions) -> tuple[str, str] | None:
    """(path, MIME type) of the item's first animated file (media.py: size name "animation"), if any."""
    return next(((path, mime) for path, mime, size in _files(opts) if size == "animation"), None)


def _sized(opts: MetadataOptions, names: tuple[str, ...]) -> str | None:
    """The path of the first file of the first size named in `names` (Tezos display/thumbnail)."""
    for name in names:
        for path, _, size in _files(opts):
            if size == name:
                return path
    return None


def _attributes(attributes: list[tuple[str, str]], opts: MetadataOptions, key: str) -> list[dict]:
    attrs = []
    for trait_type, value in attributes:
        kind = opts.display_types.get(trait_type)
        if kind:
            attrs.append({"display_type": kind, key: trait_type, "value": trait_number(trait_type, value, kind)})
        else:
            attrs.append({key: trait_type, "value": value})
    return attrs


def item_metadata(number: int, attributes: list[tuple[str, str]], dna: str, opts: MetadataOptions) -> dict:
    """One item's metadata. Key order is fixed, so the same inputs give the same bytes."""
    name = f"{opts.name_prefix} #{number}"
    if opts.format == "solana":
        attrs = _attributes(attributes, opts, "trait_type")
        image = _image_uri(number, opts, True)
        meta = {"name": name, "symbol": opts.symbol, "description": opts.description,
                "seller_fee_basis_points": opts.seller_fee_basis_points, "image": image}
        anim = _animation(opts)
        if anim:
            meta["animation_url"] = _image_uri(number, opts, True, anim[0])
        if opts.external_url:
            meta["external_url"] = opts.external_url
        meta["edition"] = number
        meta["attributes"] = attrs
        files = [{"uri": _image_uri(number, opts, True, path), "type": mime} for path, mime, _ in _files(opts)]
        meta["properties"] = {"files": files, "category": "video" if anim and anim[1].startswith("video/") else "image",
                              "creators": [{"address": a, "share": s} for a, s in opts.creators]}
    elif opts.format == "tezos":
        meta = _tezos(number, name, _attributes(attributes, opts, "name"), dna, opts)
    else:
        # Same fields and order as before formats existed (output.item_metadata): old outputs stay byte-identical.
        meta = {"name": name, "description": opts.description, "image": _image_uri(number, opts, False)}
        anim = _animation(opts)
        if anim:  # OpenSea and ERC-1155 clients: the animation, with `image` as its still
            meta["animation_url"] = _image_uri(number, opts, False, anim[0])
        if opts.format == "erc1155":
            meta["decimals"] = 0  # one indivisible token per id
        meta.update({"dna": dna, "edition": number, "attributes": _attributes(attributes, opts, "trait_type"),
                     "compiler": "gpucomp"})
        if opts.external_url:
            meta["external_url"] = opts.external_url
    for key in opts.omit:
        meta.pop(key, None)
    meta.update(copy.deepcopy(opts.extra))
    return meta


def _tezos(number: int, name: str, attrs: list[dict], dna: str, opts: MetadataOptions) -> dict:
    """TZIP-21: the primary image is the artifact (the animation, in an animated collection); the display
    and thumbnail are the sizes named "display" and "thumbnail" (or "thumb") when [[output.sizes]] has them,
    else the primary image too."""
    image = _image_uri(number, opts, False)
    display, thumb = _sized(opts, ("display",)), _sized(opts, ("thumbnail", "thumb"))
    anim = _animation(opts)
    artifact = _image_uri(number, opts, False, anim[0]) if anim else image
    meta: dict = {"name": name}
    if opts.symbol:
        meta["symbol"] = opts.symbol
    meta.update({"description": opts.description, "decimals": 0, "isBooleanAmount": True,
                 "artifactUri": artifact, "displayUri": _image_uri(number, opts, False, display),
                 "thumbnailUri": _image_uri(number, opts, False, thumb),
                 "formats": [{"uri": _image_uri(number, opts, False, path), "mimeType": mime}
                             for path, mime, _ in _files(opts)],
                 "creators": [a for a, _ in opts.creators]})
    if opts.creators and opts.seller_fee_basis_points:
        # shares of the sale price with 6 decimals: basis points (1e-4) x percent (1e-2)
        meta["royalties"] = {"decimals": 6, "shares": {a: opts.seller_fee_basis_points * s for a, s in opts.creators}}
    if opts.external_url:
        meta["externalUri"] = opts.external_url
    meta.update({"dna": dna, "edition": number, "attributes": attrs, "compiler": "gpucomp"})
    return meta


