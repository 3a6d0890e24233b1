"""Read the plain values of a HashLips / nftchef `config.js` without running JavaScript.

Those configs are a list of `const name = <value>;` declarations whose values the engines use as
data: object and array literals, strings, numbers, booleans, `MODE.multiply` blend constants and
names of earlier constants. This module reads exactly that subset. Anything else (a function, a
call such as `path.join(...)`, a ternary, a template with `${...}`) is kept as `Unreadable`: an
error naming its line is raised only if the converter needs that value.
"""
from __future__ import annotations

import math
import re
from array import array
from dataclasses import dataclass

from gpucomp.errors import ConfigError

# HashLips' and nftchef's `src/blendMode.js`; HashLips v1 maps `sourceAtop` to "source-out" (its bug, kept).
MODE = {"sourceOver": "source-over", "sourceIn": "source-in", "sourceOut": "source-out",
        "sourceAtop": "source-atop", "destinationOver": "destination-over", "destinationIn": "destination-in",
        "destinationOut": "destination-out", "destinationAtop": "destination-atop", "lighter": "lighter",
        "copy": "copy", "xor": "xor", "multiply": "multiply", "screen": "screen", "overlay": "overlay",
        "darken": "darken", "lighten": "lighten", "colorDodge": "color-dodge", "colorBurn": "color-burn",
        "hardLight": "hard-light", "softLight": "soft-light", "difference": "difference",
        "exclusion": "exclusion", "hue": "hue", "saturation": "saturation", "color": "color",
        "luminosity": "luminosity"}
NETWORK = {"eth": "eth", "sol": "sol"}
KNOWN_OBJECTS = {"MODE": MODE, "NETWORK": NETWORK}

# Strings are matched "unrolled" (a run of plain characters, then escape + run, ...): the plain
# alternation (?:[^"\\]|\\.)* keeps one backtracking entry per character, 3.6 GB for a 15 MB string.
_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n\ufeff]+) | (?P<line>//[^\n]*) | (?P<block>/\*.*?\*/)
  | (?P<str>"[^"\\\n]*(?:\\.[^"\\\n]*)*"|'[^'\\\n]*(?:\\.[^'\\\n]*)*') | (?P<tpl>`[^`\\]*(?:\\.[^`\\]*)*`)
  | (?P<num>0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)
  | (?P<id>[A-Za-z_$][\w$]*) | (?P<op>=>|\.\.\.|===|!==|==|!=|&&|\|\||\?\?|\?\.|[{}\[\]().,:;=+\-*/%?!<>&|^~])
""", re.X | re.S)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    line: int
    newline_before: bool


@dataclass(frozen=True)
class Unreadable:
    """A value that is not a plain literal: where it is and why."""

    line: int
    why: str


_KINDS = ("str", "tpl", "num", "id", "op")
_KIND_CODE = {k: i for i, k in enumerate(_KINDS)}


class Tokens:
    """A text's tokens in parallel arrays (kind, start, end, line, newline before: 14 bytes a token)
    instead of an object each: an 8 MiB array of numbers in config.js held 1 GB of Token objects.
    A Token is made when one is looked at."""

    def __init__(self, text: str):
        self.text = text
        self.kind, self.newline = bytearray(), bytearray()
        self.start, self.end, self.line = array("i"), array("i"), array("i")
        self._last: tuple[int, Token | None] = (-1, None)

    def __len__(self) -> int:
        return len(self.kind)

    def __getitem__(self, i: int) -> Token:
        if i != self._last[0]:  # the reader peeks at one token several times before it moves on
            tok = Token(_KINDS[self.kind[i]], self.text[self.start[i]:self.end[i]], self.line[i], bool(self.newline[i]))
            self._last = (i, tok)
        return self._last[1]


_CODE_OF_GROUP = {index: _KIND_CODE.get(name, -1) for name, index in _TOKEN.groupindex.items()}  # -1: skipped
_LINE_COMMENT, _TEMPLATE = _TOKEN.groupindex["line"], _TOKEN.groupindex["tpl"]


def tokenize(text: str, source: str) -> Tokens:
    """The tokens of `text`, in one pass of finditer (about 0.5 us a token): a match that does not
    start where the last one ended is a character no token begins with."""
    out, pos, line, newline = Tokens(text), 0, 1, True
    kind, start, end, lines, newlines = out.kind, out.start, out.end, out.line, out.newline
    for m in _TOKEN.finditer(text):
        if m.start() != pos:
            break
        first, pos = pos, m.end()
        code = _CODE_OF_GROUP[m.lastindex]
        if code < 0:  # white space or a comment: only its newlines matter
            if m.lastindex != _LINE_COMMENT and (n := text.count("\n", first, pos)):
                line, newline = line + n, True
            continue
        kind.append(code)
        start.append(first)
        end.append(pos)
        lines.append(line)
        newlines.append(newline)
        newline = False
        if m.lastindex == _TEMPLATE:  # the one token that may hold newlines
            line += text.count("\n", first, pos)
    if pos < len(text):
        raise ConfigError(f"{source}: line {line}: cannot read {text[pos:pos + 20]!r} (not JavaScript this "
                          f"reader knows); is this a HashLips or nftchef config.js?")
    return out


MAX_DEPTH = 64  # arrays and objects within each other: a config.js nests four or five deep


def _unquote(token: Token) -> str:
    """A string literal's value. JavaScript strings are UTF-16: `"\\uD83D\\uDE00"` is one emoji, made
    one character here; half of a pair alone has no UTF-8 form and is refused."""
    text = _unescape(token.text)
    try:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        raise _Stop(token, "a string holding half of a UTF-16 surrogate pair (\\uD800-\\uDFFF alone), which "
                           "is no character; write the character itself") from None


def _unescape(text: str) -> str:
    body = text[1:-1]

    def esc(m):
        c = m.group(1)
        if c[0] == "u":
            return chr(int(c[1:], 16))
        if c[0] == "x":
            return chr(int(c[1:], 16))
        return _ESCAPES.get(c, c)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)", esc, body, flags=re.S)


class _Stop(Exception):
    def __init__(self, token: Token | None, why: str):
        self.token, self.why = token, why


class Reader:
    """Reads the top-level `const`/`let`/`var` declarations of a config.js into `values`."""

    def __init__(self, text: str, source: str):
        self.source = source
        self.tokens = tokenize(text, source)
        self.count = len(self.tokens)
        self.pos = 0
        self.depth = 0  # arrays and objects open around the value being read
        self.values: dict[str, object] = {}
        self.exports: dict[str, object] | None = None  # `module.exports = {...}`: what the engine sees

    def peek(self, k: int = 0) -> Token | None:
        i = self.pos + k
        return self.tokens[i] if i < self.count else None

    def next(self) -> Token:
        t = self.peek()
        if t is None:
            raise _Stop(None, "the file ends in the middle of a value")
        self.pos += 1
        return t

    def expect(self, text: str) -> None:
        t = self.next()
        if t.text != text:
            raise _Stop(t, f"expected {text!r}, found {t.text!r}")

    def read(self) -> dict[str, object]:
        while self.peek() is not None:
            t = self.peek()
            if t.kind == "id" and t.text in ("const", "let", "var"):
                self.pos += 1
                self._declarations()
            elif t.text == "module" and [self.peek(k).text if self.peek(k) else "" for k in (1, 2, 3, 4)] == \
                    [".", "exports", "=", "{"]:
                self.pos += 5
                self._exports()
            else:
                self._skip_statement()
        return self.values

    def _declarations(self) -> None:
        while True:
            name = self.next()
            if name.kind != "id" or self.peek() is None or self.peek().text != "=":
                self._skip_statement()  # destructuring (`const { MODE } = require(...)`) or no value
                return
            self.pos += 1
            start = self.pos
            try:
                value = self.value()
                end = self.peek()
                if end is not None and end.text not in (",", ";") and not end.newline_before:
                    raise _Stop(end, f"{end.text!r} after the value (an expression, not a plain value)")
            except _Stop as stop:
                line = stop.token.line if stop.token else self.tokens[start].line
                value = Unreadable(line, stop.why)
                self.pos = start
                self._skip_value()
            self.values[name.text] = value
            if self.peek() is not None and self.peek().text == ",":
                self.pos += 1
                continue
            if self.peek() is not None and self.peek().text == ";":
                self.pos += 1
            return

    def _exports(self) -> None:
        """`module.exports = { format, baseUri, uri: baseUri, ... }`: the engine's main.js reads only
        these names; each value is read as any other (a name declared above, or a literal)."""
        try:
            self.exports = self._object()
        except _Stop as stop:
            raise _Stop(stop.token, f"module.exports: {stop.why}") from None

    def _skip_value(self) -> None:
        """Past one expression: to a `,` or `;` outside brackets, or the end of its statement."""
        depth = 0
        while (t := self.peek()) is not None:
            if depth == 0 and (t.text in (",", ";", ")", "]", "}") or
                               (t.newline_before and t.text in ("const", "let", "var", "module", "function"))):
                return
            depth += t.text in ("(", "[", "{")
            depth -= t.text in (")", "]", "}")
            self.pos += 1

    def _skip_statement(self) -> None:
        first = True
        depth = 0
        while (t := self.peek()) is not None:
            if not first and depth == 0 and t.newline_before and t.text in ("const", "let", "var"):
                return
            self.pos += 1
            first = False
            depth += t.text in ("(", "[", "{")
            depth -= t.text in (")", "]", "}")
            if depth <= 0 and t.text == ";":
                return

    def value(self):
        t = self.next()
        if t.text in ("[", "{"):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _Stop(t, f"arrays or objects nested more than {MAX_DEPTH} deep")
            try:
                return self._array() if t.text == "[" else self._object()
            finally:
                self.depth -= 1
        if t.kind == "str":
            return _unquote(t)
        if t.kind == "tpl":
            if "${" in t.text:
                raise _Stop(t, "a template string with ${...} (it needs JavaScript to fill in)")
            return _unquote(t)
        if t.kind == "num":
            return _number(t)
        if t.text == "-" and self.peek() is not None and self.peek().kind == "num":
            return -_number(self.next())
        if t.kind == "id":
            return self._name(t)
        raise _Stop(t, f"{t.text!r} where a value was expected")

    def _name(self, t: Token):
        words = {"true": True, "false": False, "null": None, "undefined": None}
        if t.text in words:
            return words[t.text]
        if self.peek() is not None and self.peek().text in ("(", "=>"):
            raise _Stop(t, f"a function or call ({t.text}{self.peek().text}...)")
        if t.text in self.values:
            value = self.values[t.text]
        elif t.text in KNOWN_OBJECTS:
            value = KNOWN_OBJECTS[t.text]
        else:
            raise _Stop(t, f"{t.text!r} names nothing declared above it")
        while self.peek() is not None and self.peek().text in (".", "?."):
            self.pos += 1
            key = self.next()
            if not isinstance(value, dict) or key.text not in value:
                raise _Stop(key, f"{t.text}.{key.text} is not a known value")
            value = value[key.text]
        return value

    def _array(self) -> list:
        out = []
        while True:
            if self.peek() is not None and self.peek().text == "]":
                self.pos += 1
                return out
            if self.peek() is not None and self.peek().text == "...":
                raise _Stop(self.peek(), "a spread (...) in an array")
            out.append(self.value())
            t = self.next()
            if t.text == "]":
                return out
            if t.text != ",":
                raise _Stop(t, f"{t.text!r} in an array (an expression, not a plain value)")

    def _object(self) -> dict:
        out: dict[str, object] = {}
        while True:
            key = self.next()
            if key.text == "}":
                return out
            if key.kind == "str":
                name = _unquote(key)
            elif key.kind in ("id", "num"):
                name = key.text
            else:
                raise _Stop(key, f"{key.text!r} as an object key")
            sep = self.next()
            if sep.text in (",", "}") and key.kind == "id":  # shorthand `{ baseUri, ... }`
                out[name] = self._name(key)
                if sep.text == "}":
                    return out
                continue
            if sep.text != ":":
                raise _Stop(sep, f"{sep.text!r} after the key {name!r} (a method?)")
            start = self.pos
            try:
                out[name] = self.value()
                end = self.peek()
                if end is not None and end.text not in (",", "}"):
                    raise _Stop(end, f"{end.text!r} after the value of {name!r} (an expression)")
            except _Stop as stop:
                out[name] = Unreadable(stop.token.line if stop.token else key.line, stop.why)
                self.pos = start
                self._skip_value()
            t = self.next()
            if t.text == "}":
                return out
            if t.text != ",":
                raise _Stop(t, f"{t.text!r} in an object")


def _number(token: Token) -> int | float:
    """A number literal's value; one no double holds (JavaScript makes it Infinity, or loses its
    digits: 2^53 + 1) is refused, not carried into the config."""
    text = token.text
    if len(text) > 40:  # 0x + 38 hex digits, or 40 decimal ones: far past any count or weight
        raise _Stop(token, f"a number of {len(text)} characters ({text[:12]}...), larger than any a config holds")
    value = float(int(text, 16)) if text.lower().startswith("0x") else float(text)
    if not math.isfinite(value):
        raise _Stop(token, f"the number {text} is too large for JavaScript (it reads as Infinity)")
    return int(value) if value.is_integer() and re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]+", text) else value


def read_js_config(text: str, source: str) -> dict[str, object]:
    """Top-level constants of a config.js: plain values, or Unreadable where they are not."""
    return read_js_module(text, source)[0]


def read_js_module(text: str, source: str) -> tuple[dict[str, object], dict[str, object] | None]:
    """(top-level constants, what `module.exports = {...}` exports, or None without one)."""
    try:
        reader = Reader(text, source)
        return reader.read(), reader.exports
    except _Stop as stop:
        line = stop.token.line if stop.token else "end"
        raise ConfigError(f"{source}: line {line}: {stop.why}; gpucomp reads config.js without running it") from None
