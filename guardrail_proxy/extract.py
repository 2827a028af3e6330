"""The one reader of free text inside JSON the proxy forwards or relays. Pure.

Every string is text to classify, with three exceptions, each decided by where the string sits and what shape
it has, never by what it starts with:
- fields another reader handles (`skip`): the caller reads them itself (a message's `content`, a choice's
  `message`), so they are not read twice;
- structural fields (`structure`): ids, enums, names and counters at the positions the callers list (a
  completion's `id` and `model`, a choice's `finish_reason`, a message's `role`). Such a field is skipped only
  while its value has the shape the wire format puts there (`structural`): one of the field's known names
  (`NAMES`), a number for a counter (`NUMBERS`), or else a short token (`TOKEN`). Any other value (a
  sentence, an unknown role, an object) is read like every other string, so an upstream cannot carry text past
  the check in a field the reader would otherwise pass over;
- inline media (`MEDIA_PATHS`): base64 audio, images and files at the places the OpenAI wire format puts
  them, and only when the value has the shape of a payload (base64, a base64 data: URL, an image link).
  Those bytes are not text; the README's security model says they are not judged.

Keys are text too (a tool parameter's name reaches the model's prompt), except the wire format's and JSON
Schema's own vocabulary (`VOCABULARY`). Two rules, by side (`reply`):
- a request: an identifier key whose value holds no text (a sampling parameter such as vLLM's `top_k: 40`) is
  also skipped, so that numeric extras do not cost a classifier call;
- a reply (what an upstream sends back, relayed to a client): every key is read unless it is vocabulary
  (`REPLY_VOCABULARY`) or a known usage counter at its place (`COUNTERS`), whatever its value holds. A key
  name is free text the upstream chose, and `{"Step_one_is_this": 0}` reaches the client like a string does.

The readers work on plain JSON values (what `model_dump(mode="json")` gives), not on an SDK's typed objects,
so a field an SDK release starts to declare (as openai did with `delta.audio`) is still read.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator

# (parent key, key) pairs whose string value can be media: the payload fields of the wire format's media.
MEDIA_PATHS = frozenset({
    ("audio", "data"),          # assistant audio output
    ("input_audio", "data"),    # an input audio part
    ("image_url", "url"),       # an image part (an https or data: URL)
    ("file", "file_data"),      # an input file part
})
# A payload: standard base64 (at least 16 characters, a multiple of 4), a base64 data: URL, or, for an
# image, a link. Prose in a media field does not have that shape and is read as text.
B64_BODY = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
BASE64 = re.compile(r"(?=.{16})" + B64_BODY)
DATA_URL = re.compile(r"data:[\w.+-]+/[\w.+-]+(?:;[\w.+-]+=[\w.+-]+)*;base64," + B64_BODY)
LINK = re.compile(r"https?://[^\s]+")

# Key names that are the wire format's or JSON Schema's own vocabulary, not text: every other key of an
# object is read along with its value (a tool parameter's name is prompt text too).
VOCABULARY = frozenset({
    "type", "text", "content", "role", "name", "id", "index", "refusal", "function", "arguments", "custom",
    "input", "tool_calls", "function_call", "description", "parameters", "properties", "items", "required",
    "enum", "title", "default", "format", "schema", "json_schema", "strict", "additionalProperties", "anyOf",
    "oneOf", "allOf", "$ref", "$defs", "definitions", "const", "examples", "pattern", "minimum", "maximum",
    "minLength", "maxLength", "minItems", "maxItems", "nullable", "audio", "transcript", "data", "url",
    "detail", "image_url", "input_audio", "file", "file_data", "filename", "file_id", "reasoning",
    "reasoning_content", "annotations", "url_citation", "logprobs", "token", "top_logprobs", "bytes", "logprob",
    "expires_at", "prediction", "documents", "metadata", "tools", "functions", "response_format",
})
# A reply's own field names (OpenAI's and vLLM's), read as vocabulary whatever their value: their values are
# read, or skipped as structural, by the callers' rules, never because of this list.
REPLY_VOCABULARY = VOCABULARY | frozenset({
    "object", "created", "model", "system_fingerprint", "service_tier", "choices", "message", "delta",
    "finish_reason", "usage", "obfuscation", "tool_call_id",
    # vLLM's: a choice's stop reason and token ids; a completion's prompt echo and transfer parameters.
    "stop_reason", "token_ids", "prompt_logprobs", "prompt_token_ids", "kv_transfer_params",
})
# The usage counters, by the key they sit under: skipped only there; a key the list does not know is read.
COUNTERS: dict[str, frozenset[str]] = {
    "usage": frozenset({"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
                        "completion_tokens_details"}),
    "prompt_tokens_details": frozenset({"cached_tokens", "audio_tokens"}),
    "completion_tokens_details": frozenset({"reasoning_tokens", "audio_tokens", "accepted_prediction_tokens",
                                            "rejected_prediction_tokens"}),
}

# A key that names a field rather than says something: ASCII only (a Unicode \w would let 64 characters of
# Chinese, a whole sentence, pass as a name) and at most 64 characters, the same bound as TOKEN below.
IDENTIFIER = re.compile(r"[A-Za-z_$][\w.$-]{0,63}", re.ASCII)

# The known values of the structural fields that hold one of a few names. A value outside its field's list (an
# unknown role, a finish reason nobody defined) is read as text.
NAMES: dict[str, frozenset[str]] = {
    "role": frozenset({"system", "developer", "user", "assistant", "tool", "function"}),
    "finish_reason": frozenset({"stop", "length", "tool_calls", "content_filter", "function_call",
                                "abort"}),  # abort: vLLM's, for a request it stopped itself
    "object": frozenset({"chat.completion", "chat.completion.chunk"}),
    "service_tier": frozenset({"auto", "default", "flex", "scale", "priority"}),
}
# Structural fields that hold a number (a Unix time, a position): a string there is read.
NUMBERS = frozenset({"created", "index"})
# Any other structural value (an id, a model name, a system fingerprint, a tool call id, a content part's type)
# is skipped only as a token: ASCII letters, digits and the punctuation ids, model names and paths use
# ("chatcmpl-9f2c", "meta-llama/Llama-3.1-8B-Instruct", "gpt-oss-safeguard:20b", "claude@20240620"), no
# spaces, at most 64 characters. The bound is what makes skipping safe: an unread value can name a thing, but
# it cannot hold a sentence with spaces, and the most it can hide is one hyphen- or underscore-joined run of
# 64 characters per field. Typical values are well inside it: completion ids of OpenAI and vLLM 38-41
# characters, vLLM's tool call ids 46, fingerprints ~13, model names and paths mostly under 60. A longer
# value (an AWS model ARN, a deep local path) is read as text: one more classifier call, never a value let
# through unread.
TOKEN = re.compile(r"[A-Za-z0-9_/][\w.:/@+=-]{0,63}", re.ASCII)


def structural(key: str, value: object) -> bool:
    """Whether `value` has the shape the wire format gives the structural field `key`, so that skipping it
    hides no text. A number, a boolean and null carry no text in any field; an object or a list always may."""
    if value is None or isinstance(value, bool | int | float):
        return True
    if not isinstance(value, str):
        return False
    names = NAMES.get(key)
    if names is not None:
        return value in names
    return key not in NUMBERS and TOKEN.fullmatch(value) is not None


def key_is_text(key: object, value: object, parent: str | None = None, reply: bool = False) -> bool:
    """A key is read unless it is an identifier that is vocabulary, or (in a request) an identifier naming a
    value with no text in it, or (in a reply) a usage counter under its `parent` (COUNTERS). A key with spaces
    or punctuation is always read."""
    if not isinstance(key, str) or not key.strip():
        return False
    if not IDENTIFIER.fullmatch(key):
        return True
    if reply:
        return key not in REPLY_VOCABULARY and key not in COUNTERS.get(parent or "", ())
    return key not in VOCABULARY and holds_text(value)


def holds_text(value: object) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, dict):
        return any((isinstance(k, str) and not IDENTIFIER.fullmatch(k)) or holds_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_text(item) for item in value)
    return False


def is_media(parent: str | None, key: str, value: object) -> bool:
    if (parent, key) not in MEDIA_PATHS or not isinstance(value, str):
        return False
    if BASE64.fullmatch(value) or DATA_URL.fullmatch(value):
        return True
    return (parent, key) == ("image_url", "url") and LINK.fullmatch(value) is not None


def leaves(value: object, path: str = "", parent: str | None = None, skip: Collection[str] = (),
           structure: Collection[str] = (), *, reply: bool = False) -> Iterator[tuple[str, str]]:
    """(JSON path, text) for every non-blank string inside `value` and every key that is text, depth first
    in document order. A list item's path uses its `index` field when it has one, as clients key choices and
    tool calls when they join streamed pieces. `skip` names the keys of the top-level object that another
    reader handles, `structure` its structural keys, skipped only while `structural`; nested objects get no
    such allowance, only the media paths. `reply` picks the reply's rule for keys (key_is_text). Recursive:
    wire_json.loads bounds the depth of what it parses."""
    if isinstance(value, str):
        if value.strip():
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in skip or (key in structure and structural(key, item)) or is_media(parent, key, item):
                continue
            if key_is_text(key, item, parent, reply):
                yield f"{path}{{}}{key}", key
            yield from leaves(item, f"{path}.{key}", key, reply=reply)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            slot = item.get("index") if isinstance(item, dict) and isinstance(item.get("index"), int) else position
            yield from leaves(item, f"{path}[{slot}]", parent, reply=reply)


def strings(value: object, parent: str | None = None, skip: Collection[str] = (),
            structure: Collection[str] = (), *, reply: bool = False) -> Iterator[str]:
    """Every text of `value` (see `leaves`), without its path."""
    for _, text in leaves(value, "", parent, skip, structure, reply=reply):
        yield text


def text_of(value: object, skip: Collection[str] = (), structure: Collection[str] = (), *,
            reply: bool = False) -> str:
    return "\n".join(strings(value, skip=skip, structure=structure, reply=reply))
