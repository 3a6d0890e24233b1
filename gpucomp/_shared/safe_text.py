"""Text that came from an input (trait, layer, file and folder names, config.js keys and values,
JSON values), made safe for where people open it: a terminal, or a spreadsheet.

A name is whatever a file system or a config file holds, so it may carry characters a terminal
obeys instead of showing: ESC sequences (`ESC [ 2J` clears the screen, `ESC ] 0;title BEL` retitles
the window, some terminals answer queries into their input), CR and backspace (which overwrite what
was printed), DEL, the C1 controls U+0080-U+009F (CSI U+009B is ESC [ on some terminals), the bidi
overrides, isolates and marks (U+202A-U+202E, U+2066-U+2069, U+200E/F, U+061C: they reorder the
line, so a name can show as something it is not: "Trojan Source"), and invisible format characters
and separators (U+2028 ends a line in some viewers). `terminal_safe` shows each of them as a visible
escape (`\\x1b`, `\\r`, `\\u202e`), exactly the characters Python's repr escapes (`unsafe`), but
spaces and the joiners ZWNJ/ZWJ; so are lone surrogates (a non-UTF-8 file name read with
surrogateescape), which no UTF-8 terminal can be sent. `\\n` and `\\t` stay where the caller says
the text is multi-line (an error listing its problems one per line, each already made one line);
everywhere else they are escaped too, so a name is always one line. A backslash itself is left as it
is (Windows paths), so `\\x1b` in a name and an ESC look alike: what matters is that neither reaches
the terminal as a control. Escaping twice changes nothing (the escapes are printable), so a message
made safe where it was built can be made safe again where it is printed.

`csv_text_cell` neutralises a CSV text cell a spreadsheet would take for a formula (OWASP "CSV
injection"): a cell beginning with `=`, `+`, `-`, `@`, TAB or CR gets a single quote in front. A
cell that already begins with a quote gets one more, so every written cell stands for exactly one
name (two traits `-x` and `'-x` stay two cells). Only for text that came from an input: numbers
gpucomp writes itself (`-0.5`) are never passed here.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Callable

_SHORT = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}  # repr's names for the common ones
# ZWNJ and ZWJ: invisible, but they join letters (Persian, Indic scripts) and emoji sequences; they neither
# reorder a line nor control the terminal
KEPT_INVISIBLE = frozenset("\u200c\u200d")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as the start of a formula
_CACHED = 4096  # a translate table remembers this many characters; past it, they are looked at each time


def unsafe(char: str) -> bool:
    """Whether a terminal may obey `char`, or show it as other than it is: every character Python's
    repr escapes (str.isprintable: controls Cc, format characters Cf such as the bidi overrides,
    isolates and marks, U+061C, U+200E/F, the soft hyphen, BOM and tags; surrogates, private use,
    unassigned; line and paragraph separators U+2028/9), except spaces (Zs: U+3000 in Japanese names)
    and ZWNJ/ZWJ."""
    return not char.isprintable() and char not in KEPT_INVISIBLE and unicodedata.category(char) != "Zs"


class EscapeTable(dict):
    """A str.translate table filled as it is used (the unsafe characters are scattered over all of
    Unicode): each unsafe code point maps to `escape(code)`, a safe one to itself; `fixed` first."""

    def __init__(self, escape: Callable[[int], str], fixed: dict[int, str]):
        super().__init__(fixed)
        self._escape = escape

    def __missing__(self, code: int) -> str:
        char = chr(code)
        value = self._escape(code) if unsafe(char) else char
        if len(self) < _CACHED:
            self[code] = value
        return value


def _escape(code: int) -> str:
    if code in _SHORT:
        return _SHORT[code]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


_ONE_LINE = EscapeTable(_escape, {})
_MULTI_LINE = EscapeTable(_escape, {0x09: "\t", 0x0A: "\n"})
_STREAM = EscapeTable(_escape, {0x09: "\t", 0x0A: "\n", 0x0D: "\r"})


def terminal_safe(text: object, multiline: bool = False) -> str:
    """`text` (anything: str() is taken) with every control, format or bidi character, separator
    or lone surrogate shown as a visible escape; with `multiline`, newlines and tabs are kept."""
    text = str(text)
    if text.isprintable():  # the usual case, at C speed
        return text
    return text.translate(_MULTI_LINE if multiline else _ONE_LINE)


def stream_safe(text: str) -> str:
    """The last guard before a terminal, for what a command prints as a whole (the CLI's stdout and
    stderr): terminal_safe(multiline=True), but a CR is kept too (a progress bar redraws its line
    with it). Names are made one line where they are printed; this catches whatever was not."""
    return text if text.isprintable() else text.translate(_STREAM)


def clip(text: str, limit: int = 2000) -> str:
    """`text` cut to about `limit` characters, its head and its tail kept (an error that echoes a
    50 MB value still says what to do at its end), with how much was left out in between."""
    if len(text) <= limit:
        return text
    head, tail = limit * 3 // 4, limit // 4
    return f"{text[:head]}... [{len(text) - head - tail:,} characters left out] ...{text[-tail:]}"


def csv_text_cell(text: str) -> str:
    """A CSV text cell from an input, as no spreadsheet runs it: a quote in front of a cell that
    begins like a formula (or with a quote already, so that the mapping stays one to one)."""
    return "'" + text if text.startswith((*FORMULA_STARTS, "'")) else text


def csv_text_value(cell: str) -> str:
    """The name a cell written by csv_text_cell stands for (`--from rarity.csv` reads gpucomp's own
    CSV back): the quote in front goes only where csv_text_cell put one."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith((*FORMULA_STARTS, "'")) else cell
