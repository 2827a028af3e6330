"""Splitting a text longer than the classifier's budget into overlapping segments. Pure.

Every character lands in at least one segment, and consecutive segments share `overlap` characters, so a
phrase cut by a segment boundary is still seen whole by one of them (as long as it is shorter than the
overlap). Context turns shown with a long text are cut to their ends so that context never crowds out the
text being judged.
"""

from __future__ import annotations

from dataclasses import replace

from .subjects import Subject, Turn
from .windows import tail

FRAMING_CHARS = 300  # the excerpt header and the role markers render() adds


def segments(text: str, size: int, overlap: int) -> list[str]:
    """Pieces of at most `size` characters covering `text`, each starting `size - overlap` after the last."""
    if size <= 0:
        raise ValueError("size must be positive")
    if len(text) <= size:
        return [text]
    step = max(1, size - min(overlap, size // 2))
    pieces = []
    start = 0
    while True:
        pieces.append(text[start:start + size])
        if start + size >= len(text):
            return pieces
        start += step


def split_subject(subject: Subject, max_chars: int) -> list[Subject]:
    """The subject as one or more subjects whose rendered text fits in `max_chars`: the context gets at
    most a quarter of the budget, the target the rest, split with an overlap of a tenth of its share."""
    context_budget = max_chars // 4 if subject.context else 0
    per_turn = context_budget // max(1, len(subject.context))
    context = tuple(Turn(t.role, tail(t.text, per_turn)) for t in subject.context)
    size = max_chars - FRAMING_CHARS - sum(len(t.text) + len(t.role) for t in context)
    pieces = segments(subject.target.text, size, overlap=size // 10)
    return [replace(subject, target=Turn(subject.target.role, piece), context=context) for piece in pieces]
