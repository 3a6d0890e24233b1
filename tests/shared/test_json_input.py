"""Strict JSON input (gpucomp/_shared/json_input.py): what Python's json module would read but no
JSON file or UTF-8 text can hold is refused with a reason, and nothing ends in a traceback."""
import pytest

from gpucomp._shared import json_input


def test_ordinary_json_reads_as_json():
    text = '{"name": "Gold \\ud83d\\ude00", "n": [1, 2.5, -3e2, true, null], "deep": [[[{"a": "b"}]]]}'
    assert json_input.loads(text) == {"name": "Gold \U0001F600", "n": [1, 2.5, -300.0, True, None],
                                      "deep": [[[{"a": "b"}]]]}
    assert json_input.loads(b'[1]') == [1]


@pytest.mark.parametrize("text, reason", [
    ('{"v": NaN}', "NaN is not a JSON number"),
    ('[Infinity]', "Infinity is not a JSON number"),
    ('[-Infinity]', "-Infinity is not a JSON number"),
    ('{"v": "\\ud800"}', "lone surrogate"),
    ('{"\\udfff": 1}', "the key .* lone surrogate"),
    ('["x\\uDE00y"]', "lone surrogate"),  # a low half alone, as JavaScript writes half an emoji
    ("[" * 65 + "]" * 65, "nested more than 64 levels"),
    ('{"a":' * 70 + "1" + "}" * 70, "nested more than 64 levels"),
    ("[" * 200000 + "]" * 200000, "nested more than 64 levels"),  # past the C parser's recursion
    ("[" + "9" * 4301 + "]", "more than 4300 digits"),
    (b"[\"\xff\"]", "not UTF-8"),
    ("[1,]", "Expecting value"),
])
def test_what_json_cannot_hold_is_a_value_error_saying_why(text, reason):
    with pytest.raises(ValueError, match=reason):
        json_input.loads(text)


def test_the_depth_limit_is_inclusive():
    assert json_input.loads("[" * 64 + "]" * 64) is not None
