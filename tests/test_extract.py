"""The one text extractor: every string is text unless structural at its place or media by its place."""

from __future__ import annotations

import pytest

from guardrail_proxy.extract import strings, text_of


@pytest.mark.parametrize(("value", "expected"), [
    ("plain", ["plain"]),
    ("   ", []),
    ("data: not media, just a prefix", ["data: not media, just a prefix"]),
    ({"data": "a field named data", "type": "a field named type", "id": "a field named id"},
     ["a field named data", "a field named type", "a field named id"]),
    ({"audio": {"id": "a1", "transcript": "spoken", "data": "QUJD"}}, ["a1", "spoken"]),
    ({"input_audio": {"data": "QUJD", "format": "wav"}}, ["wav"]),
    ({"image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}, ["low"]),
    ({"file": {"file_data": "AAAA", "filename": "notes.txt"}}, ["notes.txt"]),
    ({"b64_json": "AAAA"}, []),
    ({"nested": [{"deep": ["one", {"deeper": "two"}]}], "n": 3, "ok": True, "none": None}, ["one", "two"]),
])
def test_strings(value, expected):
    assert list(strings(value)) == expected


def test_skip_applies_to_the_top_level_only():
    value = {"role": "user", "inner": {"role": "hidden text"}}
    assert text_of(value, skip={"role"}) == "hidden text"


def test_media_is_recognised_by_place_not_by_prefix():
    assert text_of({"transcript": "data:image/png;base64,AAAA"}) == "data:image/png;base64,AAAA"
    assert text_of({"audio": {"data": "QUJD"}}) == ""
    # Prose in a media field is not a payload: it is read.
    assert text_of({"audio": {"data": "the words are here"}}) == "the words are here"
    assert text_of({"image_url": {"url": "https://img.test/a.png"}}) == ""
