"""The one reader of free text inside JSON the proxy forwards or relays. Pure.

Every string is text to classify, with two exceptions, both decided by where the string sits and never by
what it starts with:
- structural fields (`STRUCTURAL`): ids, enums and names the callers list for the position they read
  (a message's `role`, a chunk's `finish_reason`); callers pass them, nothing here skips a key by name alone;
- inline media (`MEDIA_PATHS`): base64 audio, images and files at the places the OpenAI wire format puts
  them, and only when the value has the shape of a payload (`MEDIA_VALUE`). Those bytes are not text; the
  README's security model says they are not judged.

The readers work on plain JSON values (what `model_dump(mode="json")` gives), not on an SDK's typed objects,
so a field an SDK release starts to declare (as openai did with `delta.audio`) is still read.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator

# (parent key, key) pairs whose string value is media, wherever they appear.
MEDIA_PATHS = frozenset({
    ("audio", "data"),          # assistant audio output
    ("input_audio", "data"),    # an input audio part
    ("image_url", "url"),       # an image part (an https or data: URL)
    ("file", "file_data"),      # an input file part
})
# Keys whose string value is media under any parent.
MEDIA_KEYS = frozenset({"b64_json", "file_data"})


# What a media payload looks like: base64 (either alphabet), a data: URL, or a link. Prose in a media field
# does not match (it has spaces) and is read as text.
MEDIA_VALUE = re.compile(r"[A-Za-z0-9+/=_-]+|data:[^,\s]*,[A-Za-z0-9+/=_%-]*|https?://\S+")


def is_media(parent: str | None, key: str, value: object) -> bool:
    at_media_place = key in MEDIA_KEYS or (parent, key) in MEDIA_PATHS
    return at_media_place and isinstance(value, str) and MEDIA_VALUE.fullmatch(value) is not None


def strings(value: object, parent: str | None = None, skip: Collection[str] = ()) -> Iterator[str]:
    """Every non-blank string inside `value`, depth first, in document order. `skip` names the structural
    keys of this top-level object only; nested objects get no such allowance, only the media paths."""
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in skip or is_media(parent, key, item):
                continue
            yield from strings(item, key)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item, parent)


def text_of(value: object, skip: Collection[str] = ()) -> str:
    return "\n".join(strings(value, skip=skip))
