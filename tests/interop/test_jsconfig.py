"""Reading config.js without running it (gpucomp/interop/jsconfig.py): numbers are JavaScript's."""
import pytest

from gpucomp.errors import ConfigError
from gpucomp.interop.jsconfig import Unreadable, read_js_config


def test_plain_numbers_and_strings_are_read():
    assert read_js_config('const a = 3;\nconst b = 0.5;\nconst c = "x";\n', "c.js") == {"a": 3, "b": 0.5, "c": "x"}


@pytest.mark.parametrize("digits", ["٣", "５", "१०"])
def test_digits_javascript_does_not_read_are_not_numbers(digits):
    """Python's \\d and float() take Arabic-Indic, full-width and Devanagari digits; JavaScript's
    grammar does not (node throws a SyntaxError), so neither does this reader."""
    with pytest.raises(ConfigError, match="line 1: cannot read"):
        read_js_config(f"const growEditionSizeTo = {digits};\n", "c.js")


def test_a_surrogate_pair_is_one_character_as_in_javascript():
    assert read_js_config('const s = "Gold \\uD83D\\uDE00";\n', "c.js") == {"s": "Gold \U0001F600"}


@pytest.mark.parametrize("literal", ['"\\uD800"', '"x\\uDE00y"', "'\\uDBFF'", '"\\uDE00\\uD83D"'])
def test_half_a_surrogate_pair_is_unreadable_naming_the_line(literal):
    """As any value this reader cannot take: the constant is Unreadable, and import-config says why."""
    value = read_js_config(f"const a = 1;\nconst s = {literal};\n", "c.js")["s"]
    assert isinstance(value, Unreadable) and value.line == 2 and "half of a UTF-16 surrogate pair" in value.why


@pytest.mark.parametrize("text", ["const a = " + "[" * 65 + "]" * 65 + ";\n",
                                  "const a = " + "{x: " * 65 + "1" + "}" * 65 + ";\n",
                                  "const a = " + "[" * 100000 + "]" * 100000 + ";\n"])
def test_nesting_past_the_limit_is_unreadable_not_a_recursion_error(text):
    value = read_js_config(text, "c.js")["a"]
    while isinstance(value, dict):  # an object keeps its readable keys: the unreadable one is inside
        value = value["x"]
    assert isinstance(value, Unreadable) and "nested more than 64 deep" in value.why


def test_nesting_up_to_the_limit_reads():
    assert read_js_config("const a = " + "[" * 64 + "]" * 64 + ";\n", "c.js")["a"] is not None
