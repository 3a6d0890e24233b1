"""Reading config.js without running it (gpucomp/interop/jsconfig.py): numbers are JavaScript's."""
import pytest

from gpucomp.errors import ConfigError
from gpucomp.interop.jsconfig import read_js_config


def test_plain_numbers_and_strings_are_read():
    assert read_js_config('const a = 3;\nconst b = 0.5;\nconst c = "x";\n', "c.js") == {"a": 3, "b": 0.5, "c": "x"}


@pytest.mark.parametrize("digits", ["٣", "５", "१०"])
def test_digits_javascript_does_not_read_are_not_numbers(digits):
    """Python's \\d and float() take Arabic-Indic, full-width and Devanagari digits; JavaScript's
    grammar does not (node throws a SyntaxError), so neither does this reader."""
    with pytest.raises(ConfigError, match="line 1: cannot read"):
        read_js_config(f"const growEditionSizeTo = {digits};\n", "c.js")
