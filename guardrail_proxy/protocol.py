"""Thin request models for /v1/chat/completions.

Only the fields the proxy reads are declared; everything else is kept (`extra="allow"`) and forwarded to
the upstream unchanged. Fields follow the order of the OpenAI spec.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from .errors import RequestError
from .wire_json import NESTED_TOO_DEEPLY, JSONReadError, loads

TYPE_TAGS = {"str", "int", "bool", "float", "none", "dict", "list"}
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


READABLE_PARTS = {"text", "input_text", "output_text", "refusal"}


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    text: str | None = None
    refusal: str | None = None

    @property
    def readable(self) -> bool:
        """Text the classifier can read; any other part type (image, audio, file) is media."""
        return self.type in READABLE_PARTS


class ToolCallFunction(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str | None = None
    arguments: str | None = None


class CustomToolCall(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str | None = None
    input: str | None = None


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    id: str | None = None
    type: str | None = None
    function: ToolCallFunction | None = None
    custom: CustomToolCall | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    role: Role
    content: str | list[ContentPart] | None = None
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: ToolCallFunction | None = None  # the legacy `functions` API


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    messages: list[Message] = Field(min_length=1)
    model: str = Field(min_length=1)
    n: StrictInt | None = Field(None, ge=1, le=16)
    stream: StrictBool | None = None

    def forwarded(self, model: str) -> dict[str, Any]:
        """The body to send upstream: everything the client sent, with the upstream's model name."""
        body = self.model_dump(mode="json", exclude_unset=True)
        body["model"] = model
        return body


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object. What is not strict JSON is a 400 (wire_json.py says what that excludes: NaN,
    lone surrogates, integers beyond 64 bits, nesting deeper than wire_json.MAX_DEPTH, ...), so nothing the
    model or the classifier cannot be sent, and nothing the proxy's own readers cannot walk, gets past here."""
    if not raw.strip():
        raise RequestError("the request body is empty; send a JSON object")
    try:
        data = loads(raw)
    except JSONReadError as exc:
        if exc.reason == NESTED_TOO_DEEPLY:
            raise RequestError(f"the request body is {NESTED_TOO_DEEPLY}") from None
        raise RequestError(f"the request body is not valid JSON: {exc.reason}") from None
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    return data


def parse_chat_request(data: dict[str, Any]) -> ChatRequest:
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        # Union members appear in the location as type tags ('str', 'list[ContentPart]'); drop them.
        param = ".".join(str(p) for p in err["loc"] if str(p) not in TYPE_TAGS and "[" not in str(p))
        raise RequestError(f"invalid request: '{param}': {err['msg']}", param=param or None) from None
