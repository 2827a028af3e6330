"""The hot path's JSON (wire_json.py): each place where orjson and the stdlib differ, decided and pinned."""

from __future__ import annotations

import json

import pytest

from guardrail_proxy.wire_json import MAX_DEPTH, JSONReadError, dumps, loads


@pytest.mark.parametrize(("raw", "value"), [
    (b'{"a": 1, "b": [true, null, 2.5], "c": "\\u00e9\\ud83d\\ude00"}', {"a": 1, "b": [True, None, 2.5], "c": "é😀"}),
    (b'{"seed": 18446744073709551615}', {"seed": 2**64 - 1}),      # the largest integer orjson keeps exact
    (b'{"seed": -9223372036854775808}', {"seed": -(2**63)}),
    (b'{"seed": 1234567890123456789}', {"seed": 1234567890123456789}),  # 19 digits, in range: the slow check passes
    (b'{"text": "call 123456789012345678901234567890"}', {"text": "call 123456789012345678901234567890"}),
    (b'{"x": 1.5e300}', {"x": 1.5e300}),
    ('{"a": "é"}', {"a": "é"}),
    (b'{"a": 1, "a": 2}', {"a": 2}),  # a repeated key: the last one wins, as in the stdlib
])
def test_loads_reads_json(raw, value):
    assert loads(raw) == value


@pytest.mark.parametrize(("raw", "reason"), [
    # The stdlib read these as floats (nan, inf) that no JSON encoder may send on.
    (b'{"temperature": NaN}', "unexpected character"),
    (b'{"temperature": -Infinity}', "line 1"),
    (b'{"temperature": 1e400}', "infinity"),
    # orjson would read these as floats without a word; the stdlib kept them exact. Refused.
    (b'{"seed": %d}' % 2**70, "outside the 64-bit range"),
    (b'{"seed": %d}' % 2**64, "outside the 64-bit range"),
    (b'{"seed": %d}' % -(2**63 + 1), "outside the 64-bit range"),
    (b'{"x": [%d]}' % 10**40, "outside the 64-bit range"),
    (b'{"a": "hi \\ud800"}', "lone surrogate"),
    (b'{"a": "hi \\udc00 there"}', "lone surrogate"),
    (b'{"a": "\xff"}', "bytes that are not valid UTF-8"),
    (b'{"a": "\xed\xa0\x80"}', "bytes that are not valid UTF-8"),  # a surrogate encoded as bytes: not UTF-8
    (b'{"a": "\\udc00"}', "an invalid unicode escape (a lone surrogate)"),
    (b"\xef\xbb\xbf\xef\xbb\xbf{}", "byte order mark"),  # one leading BOM is skipped, not two
    (b"[" * 2000 + b"]" * 2000, "nested too deeply"),
    (b"[" * 1020 + b"%d" % 2**70 + b"]" * 1020, "nested too deeply"),  # the stdlib's second look runs out of stack
    (b"[" * 129 + b"]" * 129, "nested too deeply (more than 128 levels"),
    (b'{"m": [' + b'{"a": ' * 128 + b"1" + b"}" * 128 + b"]}", "nested too deeply"),
    (b"{not json", "expected a string key"),
])
def test_loads_refuses_what_is_not_strict_json(raw, reason):
    with pytest.raises(JSONReadError) as info:
        loads(raw)
    assert reason in info.value.reason


def test_non_utf8_bytes_are_not_called_a_surrogate():
    with pytest.raises(JSONReadError) as info:
        loads(b'{"a": "caf\xe9"}')  # Latin-1
    assert info.value.reason.startswith("bytes that are not valid UTF-8") and "unicode escape" not in info.value.reason


def nested(levels: int) -> object:
    value: object = "x"
    for level in range(levels):
        value = {"k": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize("levels", [MAX_DEPTH, MAX_DEPTH + 1])
def test_the_depth_limit_is_exact(levels):
    raw = json.dumps(nested(levels)).encode()
    if levels <= MAX_DEPTH:
        assert loads(raw) == nested(levels)
    else:
        with pytest.raises(JSONReadError, match="nested too deeply"):
            loads(raw)


def test_brackets_inside_strings_do_not_count_as_depth():
    body = {"messages": [{"role": "user", "content": "[" * 500 + "{" * 500}]}
    assert loads(json.dumps(body)) == body


def depth(value: object) -> int:
    if isinstance(value, dict | list):
        return 1 + max((depth(v) for v in (value.values() if isinstance(value, dict) else value)), default=0)
    return 0


def test_real_chat_bodies_are_far_inside_the_depth_limit():
    """The figures the module docstring quotes."""
    with_image = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "https://i.test/a.png"}}]}]}
    schema: dict = {"type": "string"}
    for level in range(10):
        schema = {"type": "object", "properties": {f"f{level}": schema}}
    with_tool = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                 "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]}
    assert (depth(with_image), depth(with_tool)) == (6, 25)
    assert loads(dumps(with_image)) == with_image and loads(dumps(with_tool)) == with_tool


@pytest.mark.parametrize("raw", [b'\xef\xbb\xbf{"a": 1}', '\ufeff{"a": 1}'])
def test_a_leading_byte_order_mark_is_skipped(raw):
    assert loads(raw) == {"a": 1}


@pytest.mark.parametrize(("value", "text"), [
    ({"a": "é 😀", "b": [1, 2.5, None, True]}, '{"a":"é 😀","b":[1,2.5,null,true]}'),  # UTF-8, not \\u escapes
    ({"x": float("nan"), "y": float("inf")}, '{"x":null,"y":null}'),  # non-finite numbers become null
    ({"seed": 2**64 - 1}, '{"seed":18446744073709551615}'),
    # Values orjson refuses, which only the proxy's own code could build: the stdlib writes them, ASCII-escaped.
    ({"a": "lone \ud800"}, '{"a":"lone \\ud800"}'),
    ({"seed": 2**70}, f'{{"seed":{2**70}}}'),
    ({1: "a"}, '{"1":"a"}'),
    # The stdlib path writes non-finite numbers as orjson does (null), never as NaN, which is not JSON.
    ({"a": "lone \ud800", "x": float("nan"), "y": [float("-inf"), (1.5, float("inf"))]},
     '{"a":"lone \\ud800","x":null,"y":[null,[1.5,null]]}'),
    ({1: float("nan"), float("nan"): 1}, '{"1":null,"NaN":1}'),
])
def test_dumps(value, text):
    assert dumps(value) == text.encode()


def test_dumps_then_loads_is_the_identity_on_parsed_bodies():
    body = {"model": "m", "messages": [{"role": "user", "content": "naïve 😀 \u2028 \"quoted\" \\ back"}],
            "logit_bias": {"50256": -100}, "seed": -(2**63), "temperature": 0.1}
    raw = dumps(body)
    assert loads(raw) == body == json.loads(raw)


@pytest.mark.parametrize("value", [{"a": "lone \ud800", "x": float("nan")}, {2**70: float("inf")}, {1: [float("nan")]}])
def test_dumps_always_writes_strict_json(value):
    json.loads(dumps(value), parse_constant=lambda name: pytest.fail(f"dumps wrote {name}"))
