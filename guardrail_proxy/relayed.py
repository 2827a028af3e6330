"""Replies this proxy judged and relayed, remembered so they are not judged again when they come back.

Chat clients resend the whole conversation each turn, so the assistant's previous reply arrives again as
history, and a route that checks every role (`input.scope: all`) would judge it once more under every policy,
this time as one long text: as many calls as the reply's own output check, for an answer already given.
A reply is remembered by the SHA-256 of its exact text together with who found nothing in it: each policy
version (answer key: digest and format) with the classifier and its settings (pipeline.Checker.judge_key).
An assistant turn whose text is byte-identical is skipped for those judges only; an edited or forged turn, a
reply some policy flagged, a reply judged under an older policy version or by another classifier (another
route's, or this one before a settings change), or one this process never relayed, is judged as usual.

The trade-off: a streamed reply was judged in windows (each with the tail of the text before it), not as one
text in the context of the next turn; judging it again as history was a second look at it whole. Routes that
want that second look set `input.trust_relayed: false`. Bounded, oldest first out; per
process (a miss costs a classifier call, never a skipped check).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable

MAX_REPLIES = 20_000  # about 100 bytes each: a couple of MB at most


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()


class RelayedReplies:
    def __init__(self, max_entries: int = MAX_REPLIES) -> None:
        self.max_entries = max_entries
        self.entries: OrderedDict[str, frozenset[str]] = OrderedDict()
        self.skipped = 0  # checks not made because the text was already judged

    def remember(self, text: str, answer_keys: Iterable[str]) -> None:
        if not text.strip():
            return
        key = digest(text)
        self.entries[key] = self.entries.get(key, frozenset()) | frozenset(answer_keys)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def judged(self, text: str, answer_key: str) -> bool:
        found = self.entries.get(digest(text))
        return found is not None and answer_key in found
