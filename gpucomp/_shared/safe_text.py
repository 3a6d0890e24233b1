"""Text that came from an input (trait, layer, file and folder names, config.js keys and values,
JSON values), made safe for where people open it: a terminal, or a spreadsheet.

A name is whatever a file system or a config file holds, so it may carry characters a terminal
obeys instead of showing: ESC sequences (`ESC [ 2J` clears the screen, `ESC ] 0;title BEL` retitles
the window, some terminals answer queries into their input), CR and backspace (which overwrite what
was printed), DEL, the C1 controls U+0080-U+009F (CSI U+009B is ESC [ on some terminals), and the
bidi overrides and isolates U+202A-U+202E, U+2066-U+2069 (they reorder the rest of the line, so a
name can show as something it is not: "Trojan Source"). `terminal_safe` shows each of them as a
visible escape (`\\x1b`, `\\r`, `\\u202e`), the way Python's repr does; so are lone surrogates
(U+D800-U+DFFF: a non-UTF-8 file name read with surrogateescape), which no UTF-8 terminal can be
sent. `\\n` and `\\t` stay where the caller says the text is multi-line (an error listing its
problems one per line); everywhere else they are escaped too, so a name is always one line.
A backslash itself is left as it is (Windows paths), so `\\x1b` in a name and an ESC look alike:
what matters is that neither reaches the terminal as a control.

`csv_text_cell` neutralises a CSV text cell a spreadsheet would take for a formula (OWASP "CSV
injection"): a cell beginning with `=`, `+`, `-`, `@`, TAB or CR gets a single quote in front. A
cell that already begins with a quote gets one more, so every written cell stands for exactly one
name (two traits `-x` and `'-x` stay two cells). Only for text that came from an input: numbers
gpucomp writes itself (`-0.5`) are never passed here.
"""
from __future__ import annotations

_SHORT = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}  # repr's names for the common ones


def _escape(code: int) -> str:
    if code in _SHORT:
        return _SHORT[code]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# every code point a terminal may obey rather than show, or cannot be sent as UTF-8
UNSAFE_CODES = frozenset([*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F),
                          *range(0x2066, 0x206A), *range(0xD800, 0xE000)])
_ONE_LINE = {code: _escape(code) for code in UNSAFE_CODES}
_MULTI_LINE = {code: e for code, e in _ONE_LINE.items() if code not in (0x09, 0x0A)}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as the start of a formula


def terminal_safe(text: object, multiline: bool = False) -> str:
    """`text` (anything: str() is taken) with every control character, bidi override or lone
    surrogate shown as a visible escape; with `multiline`, newlines and tabs are kept."""
    return str(text).translate(_MULTI_LINE if multiline else _ONE_LINE)


def csv_text_cell(text: str) -> str:
    """A CSV text cell from an input, as no spreadsheet runs it: a quote in front of a cell that
    begins like a formula (or with a quote already, so that the mapping stays one to one)."""
    return "'" + text if text.startswith((*FORMULA_STARTS, "'")) else text


def csv_text_value(cell: str) -> str:
    """The name a cell written by csv_text_cell stands for (`--from rarity.csv` reads gpucomp's own
    CSV back): the quote in front goes only where csv_text_cell put one."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith((*FORMULA_STARTS, "'")) else cell
