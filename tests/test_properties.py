"""Property tests for the file-name conventions: parse_trait_name and natural_key never fail in
an unexpected way, whatever an artist (or a broken zip) puts in a file name."""
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gpucomp.errors import LayerError
from gpucomp.layers.naming import natural_key, parse_trait_name

FAST = settings(max_examples=200, deadline=None)  # per test, not a global profile

DELIMITERS = st.sampled_from(["#", "_", "@", "~", "##", "é"])
# Any text, lone surrogates included: that is how Python spells a file name that is not UTF-8.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
# Names made of digit runs and a few letters find prefix and numeric cases that random text rarely hits.
NAMES = st.one_of(ANY_TEXT, st.text(st.sampled_from("0a9 .٣²"), max_size=12))
WEIGHTS = st.one_of(
    st.integers(0, 10**9).map(str),
    st.tuples(st.integers(0, 10**6), st.text("0123456789", min_size=1, max_size=6)).map(lambda t: f"{t[0]}.{t[1]}"),
    st.text("0123456789", min_size=1, max_size=6).map(lambda d: f".{d}"),
)


def valid_name(delimiter):
    """A trait name that keeps something after strip(); it may contain the delimiter itself."""
    return st.text(min_size=1, max_size=30).filter(lambda n: n.strip())


@FAST
@given(st.data(), DELIMITERS, WEIGHTS)
def test_name_and_weight_round_trip(data, delimiter, weight):
    name = data.draw(valid_name(delimiter))
    got_name, got_weight = parse_trait_name(f"{name}{delimiter}{weight}", delimiter, "src.png")
    assert got_name == unicodedata.normalize("NFC", name.strip())
    assert got_weight == float(weight) and got_weight >= 0


@FAST
@given(st.data(), DELIMITERS)
def test_no_delimiter_means_weight_one(data, delimiter):
    name = data.draw(valid_name(delimiter).filter(lambda n: delimiter not in n))
    assert parse_trait_name(name, delimiter, "src.png") == (unicodedata.normalize("NFC", name.strip()), 1.0)


def is_plain_number(text):
    head, dot, tail = text.partition(".")
    digits = lambda s: s != "" and all(c.isdecimal() for c in s)  # noqa: E731 - what \d matches
    return (digits(head) and (not dot or digits(tail))) or (head == "" and dot and digits(tail))


@FAST
@given(st.text(min_size=1, max_size=20).filter(lambda n: "#" not in n and n.strip()), ANY_TEXT, ANY_TEXT)
def test_malformed_weight_is_a_layer_error_naming_the_source(name, text, source):
    if "#" in text or is_plain_number(text):
        return  # not malformed (or the weight is after a later '#')
    with pytest.raises(LayerError) as err:
        parse_trait_name(f"{name}#{text}", "#", source)
    assert source in str(err.value)


@FAST
@given(ANY_TEXT, st.sampled_from(["#", "_", "."]), ANY_TEXT)
def test_any_stem_parses_or_raises_layer_error(stem, delimiter, source):
    try:
        name, weight = parse_trait_name(stem, delimiter, source)
    except LayerError as err:
        assert source in str(err)
    else:
        assert name and name == name.strip() and weight >= 0
        name.encode("utf-8")  # a parsed name can always be written to metadata


@FAST
@given(NAMES)
@example("9" * 5000)  # past int()'s 4300-digit limit
def test_natural_key_never_raises(text):
    key = natural_key(text)
    assert key[-1] == text


@FAST
@given(NAMES, NAMES)
@example("Hat", "Hat2")  # a name that is a prefix of another used to raise TypeError
@example("", "0")
def test_natural_key_orders_any_two_names(a, b):
    ka, kb = natural_key(a), natural_key(b)
    assert (ka < kb) + (ka == kb) + (ka > kb) == 1  # comparable, exactly one relation
    assert (ka == kb) == (a == b)  # only equal names tie, so a sort is the same on every machine


@FAST
@given(NAMES, NAMES, NAMES)
def test_natural_key_is_transitive(a, b, c):
    x, y, z = sorted([a, b, c], key=natural_key)
    assert natural_key(x) <= natural_key(y) <= natural_key(z) and natural_key(x) <= natural_key(z)


@FAST
@given(st.lists(NAMES, max_size=20))
def test_natural_sort_does_not_depend_on_input_order(names):
    assert sorted(names, key=natural_key) == sorted(reversed(names), key=natural_key)


@FAST
@given(st.lists(st.integers(0, 10**30), min_size=1, max_size=10), st.sampled_from(["", "0", "00"]))
def test_natural_key_orders_numbers_by_value(numbers, zeros):
    names = [f"Hat {zeros}{n}" for n in numbers]
    assert [int(n.split()[1]) for n in sorted(names, key=natural_key)] == sorted(numbers)


def test_natural_key_huge_numbers_compare_by_value():
    assert natural_key("x" + "9" * 5000) < natural_key("x1" + "0" * 5000)


def test_natural_key_ignores_leading_zeros_of_each_number():
    """`010` is ten, after `9` and before `0011`, whatever the zeros; equal values tie by name."""
    names = ["Hat 0011", "Hat 010", "Hat 9", "Hat 00009"]
    assert sorted(names, key=natural_key) == ["Hat 00009", "Hat 9", "Hat 010", "Hat 0011"]


@pytest.mark.parametrize("stem", ["Cafe\u0301#3", "Caf\u00e9#3", " Cafe\u0301 #3"])
def test_a_decomposed_name_is_the_same_trait_as_a_composed_one(stem):
    """macOS writes `é` as `e` + a combining accent: the name must come out composed (NFC), or
    metadata would hold two different `Café` traits. Random text rarely hits this."""
    assert parse_trait_name(stem, "#", "src.png") == ("Caf\u00e9", 3.0)
