"""Request bodies (protocol.py): what is not JSON the proxy can walk is a 400 at the parse, before any check."""

from __future__ import annotations

import json

import pytest

from guardrail_proxy.errors import RequestError
from guardrail_proxy.protocol import parse_chat_request, parse_json_body
from guardrail_proxy.wire_json import MAX_DEPTH


def body_with_extra(levels: int) -> bytes:
    """A chat body whose message carries an extra field nested so that the whole body has `levels` levels."""
    arrays = levels - 3  # the body, `messages` and the message are three; written by hand (json.dumps recurses)
    extra = b"[" * arrays + b'"x"' + b"]" * arrays
    return b'{"model": "m", "messages": [{"role": "user", "content": "hi", "extra": ' + extra + b"}]}"


def test_a_body_at_the_depth_limit_parses_and_forwards():
    chat = parse_chat_request(parse_json_body(body_with_extra(MAX_DEPTH)))
    # forwarded dumps the model: pydantic gives up near 255 levels, so the limit must sit well below that.
    assert chat.forwarded("upstream-model")["messages"][0]["extra"] == json.loads(body_with_extra(MAX_DEPTH))[
        "messages"][0]["extra"]


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 300, 990, 5000])
def test_a_body_nested_deeper_is_a_400(levels):
    with pytest.raises(RequestError) as info:
        parse_json_body(body_with_extra(levels))
    assert info.value.status_code == 400
    assert info.value.message == f"the request body is nested too deeply (more than {MAX_DEPTH} levels of arrays " \
                                 "and objects)"


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "the request body is empty; send a JSON object"),
    (b"[1]", "the request body must be a JSON object"),
    (b'{"model": "caf\xe9"}', "the request body is not valid JSON: bytes that are not valid UTF-8"),
    (b'{"model": "\\ud800"}', "the request body is not valid JSON: an invalid unicode escape (a lone surrogate)"),
])
def test_bodies_that_are_refused(raw, message):
    with pytest.raises(RequestError) as info:
        parse_json_body(raw)
    assert info.value.message.startswith(message)


def test_a_leading_byte_order_mark_is_accepted():
    assert parse_json_body(b'\xef\xbb\xbf{"model": "m"}') == {"model": "m"}
