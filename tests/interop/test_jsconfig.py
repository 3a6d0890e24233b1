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


def test_a_long_string_reads_in_memory_near_its_size():
    """A 15 MiB string in config.js (under the 16 MiB file limit) once took 3.6 GB: the string
    pattern kept a backtracking entry per character. Read here under a 600 MiB address-space limit."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (600 << 20, 600 << 20))\n"
            "from gpucomp.interop.jsconfig import read_js_config\n"
            "v = read_js_config('const d = \"' + 'a' * (15 << 20) + '\";\\nconst e = `' + 'b' * (15 << 20) + '`;', 'c.js')\n"
            "print(len(v['d']), len(v['e']))")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(15 << 20)] * 2


def test_numbers_read_as_javascript_reads_them():
    assert read_js_config("const a = 0x1F; const b = 12; const c = 1.5; const d = -3;", "c.js") == \
        {"a": 31, "b": 12, "c": 1.5, "d": -3}
    assert read_js_config("const a = 9007199254740993;", "c.js") == {"a": 9007199254740992}  # a double, as in node


@pytest.mark.parametrize("literal, why", [("9" * 5000, "a number of 5000 characters"),
                                          ("0x" + "f" * 5000, "a number of 5002 characters"),
                                          ("1e400", "too large for JavaScript")])
def test_a_number_no_double_holds_is_unreadable_not_a_traceback(literal, why):
    value = read_js_config(f"const growEditionSizeTo = {literal};\n", "c.js")["growEditionSizeTo"]
    assert isinstance(value, Unreadable) and why in value.why


def test_many_tokens_are_held_compactly():
    """Half a million numbers in an array (1 MiB of config.js): the tokens are 14 bytes each in
    arrays, not an object each (an 8 MiB array took 1.05 GB that way, now 0.18 GB)."""
    from memory import peak_growth

    setup = "from gpucomp.interop.jsconfig import read_js_config\ntext = 'const a = [' + '1,' * (512 << 10) + '];'"
    n, grown = peak_growth(setup, "len(read_js_config(text, 'c.js')['a'])")
    assert n == str(512 << 10) and grown < 30 << 20, grown
