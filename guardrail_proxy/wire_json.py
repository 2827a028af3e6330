"""JSON on the hot path: orjson, and the proxy's answer to each place where it reads or writes differently from
the standard library's json module.

Reading (`loads`), where orjson is stricter, the strict reading is kept: a request body, an upstream reply
or a classifier reply that is not RFC 8259 JSON is refused, never repaired.
- NaN, Infinity and numbers beyond a double (1e400): refused. The stdlib read them as floats that no JSON
  encoder may send on, so a request carrying one used to reach the model as invalid JSON.
- Lone surrogate escapes (\\ud800) and bytes that are not UTF-8: refused, as before (the proxy used to find
  surrogates with a second encoding pass; orjson finds them while parsing). Each has its own reason.
- Nesting deeper than MAX_DEPTH (128) arrays and objects: refused. Everything the proxy does with a body
  afterwards walks it recursively (pydantic's dump gives up at about 255 levels, the text extractor would hit
  Python's recursion limit near 1,000), so the bound is set here, at the one place every body enters, rather
  than discovered as a 500 halfway through a request. Real chat bodies are far inside it: a conversation
  with image parts nests 6 levels, a tool whose parameters are a JSON Schema nested 10 objects deep 25
  (tests/test_wire_json.py measures both). orjson's own limit (1,024) stops deeper input before the walk.
- A leading UTF-8 byte order mark: skipped, as the stdlib's reading of bytes did. It is no text and some
  servers' frameworks write one; refusing it would turn a working upstream into a 502.
- Integers outside the 64-bit range (below -2**63 or above 2**64-1): orjson reads them as floats without a
  word, which would change a client's value on its way to the model (a seed of 2**70 forwarded as 1.18e21).
  `loads` refuses them instead. orjson cannot report them, so a body with a run of 19 or more digits anywhere
  is read once more with the stdlib to look; every other body pays only for that scan.

Writing (`dumps`) returns UTF-8 bytes with non-ASCII characters as they are (the stdlib's ensure_ascii=False).
orjson refuses lone surrogates, integers beyond 64 bits and non-string keys; none can come from a parsed body,
only from values the proxy built itself, and for those the stdlib writes the value instead (ASCII-escaped, so
a surrogate becomes a valid escape rather than invalid UTF-8). NaN and Infinity are written as null on both
paths (orjson does so itself; the stdlib path converts them first), so `dumps` never writes what is not JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from starlette.responses import JSONResponse

# A run of 19 digits, the shortest integer that can fall outside the 64-bit range, found by mapping every digit
# to "0" and everything else to " " and searching for 19 zeros: in C throughout, ~15 times faster than the
# regex \d{19} (25 us against 400 us on a 50 kB conversation).
DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
NINETEEN_DIGITS = b"0" * 19
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
MAX_DEPTH = 128
NESTED_TOO_DEEPLY = f"nested too deeply (more than {MAX_DEPTH} levels of arrays and objects)"
BOM = b"\xef\xbb\xbf"


class JSONReadError(ValueError):
    """Bytes that are not JSON the proxy accepts. `reason` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def loads(raw: bytes | str) -> Any:
    if isinstance(raw, bytes) and raw.startswith(BOM):
        raw = raw[len(BOM):]
    elif isinstance(raw, str) and raw.startswith("\ufeff"):
        raw = raw[1:]
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise JSONReadError(read_error(str(exc))) from None
    if too_deep(data, raw):
        raise JSONReadError(NESTED_TOO_DEEPLY)
    if NINETEEN_DIGITS in (raw.encode() if isinstance(raw, str) else raw).translate(DIGITS_AS_ZEROS):
        json.loads(raw, parse_int=in_range)  # depth at most MAX_DEPTH: the stdlib's recursion cannot run out
    return data


def read_error(message: str) -> str:
    """orjson's message, with the cases a client can act on named plainly."""
    if message.startswith("str is not valid UTF-8"):  # orjson's words for bytes that do not decode
        return f"bytes that are not valid UTF-8: {message}"
    if "surrogate" in message:
        return f"an invalid unicode escape (a lone surrogate): {message}"
    if "depth limit" in message or "recursion" in message:
        return NESTED_TOO_DEEPLY
    return message


def too_deep(data: Any, raw: bytes | str) -> bool:
    """Whether `data` (as orjson built it: plain dicts and lists) nests more than MAX_DEPTH arrays and objects.
    Each level opens with a bracket, so a body with no more brackets than that (a chunk, most requests) is not
    walked at all. The walk goes level by level, with no recursion to run out of: ~50 us for a 200-message
    conversation, ~1.4 ms for a reply with 1,000 tokens of logprobs (each a dozen values)."""
    brackets = raw.count("[") + raw.count("{") if isinstance(raw, str) else raw.count(b"[") + raw.count(b"{")
    if brackets <= MAX_DEPTH:
        return False
    level = [data] if type(data) is dict or type(data) is list else []
    for _ in range(MAX_DEPTH):
        if not level:
            return False
        level = [item for value in level for item in (value.values() if type(value) is dict else value)
                 if type(item) is dict or type(item) is list]
    return bool(level)


def in_range(text: str) -> int:
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise JSONReadError(f"the integer {text[:24]}{'...' if len(text) > 24 else ''} is outside the 64-bit range")
    return value


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(finite(value), separators=(",", ":"), allow_nan=False).encode()


def finite(value: Any) -> Any:
    """`value` with NaN and the infinities as null, as orjson writes them (a non-finite float key becomes the
    stdlib's "NaN" or "Infinity" string: a key is a string in JSON anyway). For the stdlib path only: values
    the proxy built itself, never deeper than a parsed body plus its own wrapping."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {(json.dumps(k) if isinstance(k, float) and not math.isfinite(k) else k): finite(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


class FastJSONResponse(JSONResponse):
    """Starlette's JSONResponse, written with `dumps`."""

    def render(self, content: Any) -> bytes:
        return dumps(content)
