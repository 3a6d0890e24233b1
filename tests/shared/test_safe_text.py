"""safe_text.py: input text shown in a terminal as visible escapes, never obeyed; CSV text cells that
a spreadsheet would run as formulas neutralised."""
import sys
import unicodedata

import pytest

from gpucomp._shared.safe_text import clip, csv_text_cell, csv_text_value, terminal_safe, unsafe


@pytest.mark.parametrize("text, shown", [
    ("Red\x1b[2JHat", "Red\\x1b[2JHat"),  # CSI: clear the screen
    ("\x1b]0;owned\x07Hat", "\\x1b]0;owned\\x07Hat"),  # OSC: retitle the window, ended by BEL
    ("Hat\rCap", "Hat\\rCap"),  # CR: overwrite what was printed
    ("Hat\x08\x08Cap", "Hat\\x08\\x08Cap"),  # backspace
    ("Hat\x7f", "Hat\\x7f"),  # DEL
    ("Hat\x9b31m", "Hat\\x9b31m"),  # C1 CSI, ESC [ on some terminals
    ("\x85\x9f", "\\x85\\x9f"),  # the C1 range's ends
    ("abc\u202egnp.exe", "abc\\u202egnp.exe"),  # right-to-left override
    ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
    ("\u2066x\u2067y\u2068z\u2069", "\\u2066x\\u2067y\\u2068z\\u2069"),  # isolates
    ("bad\udcffname", "bad\\udcffname"),  # a non-UTF-8 byte read with surrogateescape
    ("\x00", "\\x00"),
    ("Hat\u200eCap\u200f", "Hat\\u200eCap\\u200f"),  # left-to-right and right-to-left marks
    ("\u061cx", "\\u061cx"),  # the Arabic letter mark
    ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),  # line and paragraph separators: a new line in some viewers
    ("soft\xadhyphen\ufeff", "soft\\xadhyphen\\ufeff"),  # invisible: two names that look alike
    ("tag\U000e0041", "tag\\U000e0041"),  # a tag character, outside the BMP
    ("\ue000private", "\\ue000private"),  # private use: a font's icon, or nothing
])
def test_every_control_is_shown_as_a_visible_escape(text, shown):
    assert terminal_safe(text) == shown
    assert terminal_safe(text, multiline=True) == shown


@pytest.mark.parametrize("text", ["Red Hat", "Chapeau rouge é", "帽子", "emoji 🎩", "C:\\layers\\Hat", "Tab-less",
                                  "赤い\u3000帽子", "no\xa0break", "می\u200cخواهم", "family 👨\u200d👩\u200d👧"])
def test_ordinary_text_is_left_exactly_as_it_is(text):
    assert terminal_safe(text) == text == terminal_safe(text, multiline=True)


def test_newlines_and_tabs_are_escaped_unless_the_text_is_multi_line():
    text = "2 problems:\n\tA/x.png\n\tB/y\x1b[0m.png"
    assert terminal_safe(text) == "2 problems:\\n\\tA/x.png\\n\\tB/y\\x1b[0m.png"
    assert terminal_safe(text, multiline=True) == "2 problems:\n\tA/x.png\n\tB/y\\x1b[0m.png"
    assert terminal_safe("a\r\nb", multiline=True) == "a\\r\nb"  # a CR still cannot overwrite a line


def every_unsafe_character() -> str:
    return "".join(c for c in map(chr, range(sys.maxunicode + 1)) if unsafe(c))


def test_no_unsafe_character_survives_and_any_object_is_taken_as_its_text():
    everything = every_unsafe_character()
    assert len(everything) > 900_000  # surrogates, private use and unassigned: most of the code space
    for multiline, kept in ((False, set()), (True, {"\n", "\t"})):
        out = terminal_safe(everything, multiline)
        assert {c for c in out if unsafe(c)} == kept
        out.encode("utf-8")  # no lone surrogate is left to refuse
    assert terminal_safe(ValueError("x\x1by")) == "x\\x1by" and terminal_safe(42) == "42"


def test_what_is_unsafe_is_what_repr_escapes_but_spaces_and_joiners():
    for c in map(chr, range(sys.maxunicode + 1)):
        escaped_by_repr = repr(c)[1:-1] != c and c not in "'\\"
        assert unsafe(c) == (escaped_by_repr and c not in "\u200c\u200d" and unicodedata.category(c) != "Zs"), hex(ord(c))


def test_escaping_twice_changes_nothing():
    text = "a\x1b[2J\u202eb\nc\udcff\u2028"
    for multiline in (False, True):
        once = terminal_safe(text, multiline)
        assert terminal_safe(once, multiline) == once


def test_a_long_text_is_clipped_keeping_its_head_and_tail():
    text = "error: x = '" + "v" * 50_000_000 + "'; use a shorter value"
    shown = clip(text)
    assert len(shown) < 2100 and shown.startswith("error: x = 'vvv") and shown.endswith("'; use a shorter value")
    assert "[49,998,0" in shown and "characters left out" in shown
    assert clip("short") == "short"


@pytest.mark.parametrize("cell, written", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("'quoted", "''quoted"),  # one more quote: the cell still names one trait
])
def test_a_cell_that_starts_like_a_formula_gets_a_quote_in_front(cell, written):
    assert csv_text_cell(cell) == written


@pytest.mark.parametrize("cell", ["Red Hat", "", "1=1", "a-b", "x@y", " =1", "0.5", "é"])
def test_other_cells_are_written_as_they_are(cell):
    assert csv_text_cell(cell) == cell


def test_distinct_names_stay_distinct_cells():
    names = ["-x", "'-x", "''-x", "x", "'x", "=", "'="]
    assert len({csv_text_cell(n) for n in names}) == len(names)


def test_a_neutralised_cell_reads_back_as_its_name():
    """`--from out/rarity.csv` reads gpucomp's own CSV: each cell maps back to exactly its name."""
    names = ["-x", "'-x", "''", "'", "=SUM(A1)", "@me", "\tx", "plain", "it's", "'quoted"]
    assert [csv_text_value(csv_text_cell(n)) for n in names] == names
    assert csv_text_value("'plain") == "'plain"  # a quote csv_text_cell never adds is part of the name
