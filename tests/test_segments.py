"""Long texts are split into overlapping segments that cover every character (segments.py)."""

from __future__ import annotations

import pytest

from guardrail_proxy.segments import segments, split_subject
from guardrail_proxy.subjects import Subject, Turn, render


@pytest.mark.parametrize(("length", "size", "overlap"), [
    (0, 10, 2), (10, 10, 2), (11, 10, 2), (100, 10, 3), (1000, 64, 0), (999, 100, 99), (37, 5, 1),
])
def test_segments_cover_every_character_and_overlap(length, size, overlap):
    text = "".join(chr(65 + i % 26) for i in range(length))
    pieces = segments(text, size, overlap)
    step = size - min(overlap, size // 2)
    covered = [False] * length
    for k, piece in enumerate(pieces):
        start = k * step
        assert len(piece) <= size and piece == text[start:start + size]
        for i in range(start, start + len(piece)):
            covered[i] = True
        if k:  # no gap; with an overlap, each piece repeats the end of the one before it
            previous_end = (k - 1) * step + size
            assert start < previous_end if overlap else start == previous_end
    assert all(covered)


def test_a_phrase_across_a_boundary_is_whole_in_one_segment():
    text = "a" * 95 + "blood bath" + "b" * 95
    assert any("blood bath" in piece for piece in segments(text, 100, 20))


def test_split_subject_fits_the_budget_with_context():
    subject = Subject(Turn("user", "x" * 50_000), (Turn("assistant", "y" * 30_000), Turn("user", "z" * 10)))
    pieces = split_subject(subject, 8_000)
    assert len(pieces) > 6
    assert all(len(render(p)) <= 8_000 for p in pieces)
    assert all(p.context[0].text == "y" * len(p.context[0].text) for p in pieces)


def test_short_subjects_are_untouched():
    subject = Subject(Turn("user", "hello"), (Turn("assistant", "hi"),), index=3)
    assert split_subject(subject, 8_000) == [subject]
