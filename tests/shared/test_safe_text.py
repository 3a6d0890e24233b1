"""safe_text.py: input text shown in a terminal as visible escapes, never obeyed; CSV text cells that
a spreadsheet would run as formulas neutralised."""
import pytest

from gpucomp._shared.safe_text import UNSAFE_CODES, csv_text_cell, csv_text_value, terminal_safe


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
])
def test_every_control_is_shown_as_a_visible_escape(text, shown):
    assert terminal_safe(text) == shown
    assert terminal_safe(text, multiline=True) == shown


@pytest.mark.parametrize("text", ["Red Hat", "Chapeau rouge é", "帽子", "emoji 🎩", "C:\\layers\\Hat", "Tab-less"])
def test_ordinary_text_is_left_exactly_as_it_is(text):
    assert terminal_safe(text) == text == terminal_safe(text, multiline=True)


def test_newlines_and_tabs_are_escaped_unless_the_text_is_multi_line():
    text = "2 problems:\n\tA/x.png\n\tB/y\x1b[0m.png"
    assert terminal_safe(text) == "2 problems:\\n\\tA/x.png\\n\\tB/y\\x1b[0m.png"
    assert terminal_safe(text, multiline=True) == "2 problems:\n\tA/x.png\n\tB/y\\x1b[0m.png"
    assert terminal_safe("a\r\nb", multiline=True) == "a\\r\nb"  # a CR still cannot overwrite a line


def test_no_unsafe_character_survives_and_any_object_is_taken_as_its_text():
    everything = "".join(map(chr, sorted(UNSAFE_CODES)))
    for multiline, kept in ((False, set()), (True, {"\n", "\t"})):
        out = terminal_safe(everything, multiline)
        assert {c for c in out if ord(c) in UNSAFE_CODES} == kept
        out.encode("utf-8")  # no lone surrogate is left to refuse
    assert terminal_safe(ValueError("x\x1by")) == "x\\x1by" and terminal_safe(42) == "42"


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
