"""JSON that came from outside gpucomp's own writing (one-of-ones' metadata, `--from` lists, the
manifest and metadata found in an output folder), parsed strictly: whatever a file holds ends in a
ValueError that says what is wrong, never in a traceback later, and nothing read here can make a
file gpucomp writes stop being JSON (or UTF-8).

Refused, on top of JSON syntax: `NaN`, `Infinity` and `-Infinity` (Python's json module reads them;
JSON has no such values), nesting deeper than MAX_DEPTH (the C parser's recursion would otherwise
end in RecursionError), strings and keys holding lone surrogates (`"\\ud800"`: valid JSON text, but
no UTF-8 file can hold it), and integers past Python's 4300-digit conversion limit.
"""
from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # lists and objects within each other: real metadata nests three or four deep


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity); write a number or a string")


def _bad_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check(value: Any) -> None:
    """Walk the parsed value without recursion: depth and lone surrogates."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > MAX_DEPTH:
                raise ValueError(f"nested more than {MAX_DEPTH} levels deep; metadata nests a few levels")
            items = v.items() if isinstance(v, dict) else ((None, x) for x in v)
            for k, x in items:
                if k is not None and _bad_text(k):
                    raise ValueError(f"the key {k!r} holds a lone surrogate (\\ud800-\\udfff), which no UTF-8 text can")
                stack.append((x, depth + 1))
        elif isinstance(v, str) and _bad_text(v):
            shown = v if len(v) <= 40 else v[:40] + "..."
            raise ValueError(f"the string {shown!r} holds a lone surrogate (\\ud800-\\udfff), which no UTF-8 text can")


def loads(data: str | bytes) -> Any:
    """The value of a JSON text, or ValueError saying why it is not one gpucomp takes."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep; metadata nests a few levels") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError:
        raise
    except ValueError as err:  # int()'s limit, whose own message asks for sys.set_int_max_str_digits
        if "digits" not in str(err):
            raise
        raise ValueError("holds an integer of more than 4300 digits; no number in metadata is that long") from None
    _check(value)
    return value
