"""What a reviewer typed -> filters and marks, with an error per field: numbers in ASCII digits only, NUL
characters found, a label checked against the policy's codes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from guardrail_proxy.audit_query import Filters
from guardrail_proxy.console.forms import (
    MarkForm,
    filter_form,
    label_error,
    mark_form,
    nul_field,
    number,
    posted,
    window_of,
)
from guardrail_proxy.console.glance import WINDOWS

NOW = 1_800_000_000.0


def test_an_empty_filter_is_no_filter() -> None:
    form = filter_form({}, NOW)
    assert (form.filters, form.reviewed, form.page, form.errors) == (Filters(), None, 1, {})


def test_every_field_is_read() -> None:
    form = filter_form({"route": " teen ", "policy": "violence", "label": "TV2", "decision": "block", "since": "24h",
                        "until": "2027-01-15T08:00", "unchecked": "1", "reviewed": "no", "page": "3"}, NOW)
    assert form.errors == {}
    until = datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()
    assert form.filters == Filters(since=NOW - 86400, until=until, route="teen", policy="violence", label="TV2",
                                   decision="block", unchecked=True)
    assert (form.reviewed, form.page) == (False, 3)


@pytest.mark.parametrize(("params", "field"), [
    ({"since": "yesterday"}, "since"),
    ({"until": "7 parsecs"}, "until"),
    ({"decision": "maybe"}, "decision"),
    ({"reviewed": "perhaps"}, "reviewed"),
    ({"unchecked": "yes please"}, "unchecked"),
])
def test_a_bad_field_is_named(params: dict[str, str], field: str) -> None:
    form = filter_form(params, NOW)
    assert list(form.errors) == [field]


@pytest.mark.parametrize(("text", "page"), [("0", 1), ("-2", 1), ("abc", 1), ("2", 2), ("99999999", 1),
                                          ("²", 1), ("1²", 1), ("١٢", 1), ("+3", 1), (" 4 ", 4), ("9" * 400, 1)])
def test_the_page_number_is_clamped(text: str, page: int) -> None:
    """"²" passes str.isdigit() and makes int() raise: it must be refused like any other non-number."""
    assert filter_form({"page": text}, NOW).page == page


@pytest.mark.parametrize(("text", "value"), [("7", 7), ("0", None), ("10", None), ("²", None), ("٣", None),
                                             ("", None), ("0x5", None), ("5_0", None)])
def test_number(text: str, value: int | None) -> None:
    assert number(text, 1, 10) == value


def test_the_query_keeps_the_filter_and_drops_empty_fields() -> None:
    form = filter_form({"policy": "violence", "label": "", "since": "7d"}, NOW)
    assert form.query(page="2") == "policy=violence&since=7d&page=2"
    assert form.query() == "policy=violence&since=7d"


@pytest.mark.parametrize(("params", "window"), [({}, "24h"), ({"window": "7d"}, "7d"), ({"window": "30d"}, "30d"),
                                                ({"window": "1y"}, "24h")])
def test_window(params: dict[str, str], window: str) -> None:
    assert window_of(params) == window and window in WINDOWS


@pytest.mark.parametrize(("fields", "found"), [
    ([("policy", "violence"), ("page", "2")], None),
    ([("policy", "vio\x00lence")], "policy"),
    ([("note", "fine"), ("x\x00", "")], "x\x00"),
    ([], None),
])
def test_nul_field(fields, found) -> None:
    assert nul_field(fields) == found


CODES = ["TV0", "TV1", "TV2", "TV3"]


@pytest.mark.parametrize(("correct", "label", "codes", "error"), [
    (False, "TV1", CODES, False),
    (False, "ZZ9", CODES, True),  # not one of the policy's codes: refused, so it never reaches an export
    (False, "tv1", CODES, True),
    (False, "ZZ9", None, False),  # a policy without label codes in the config: free text
    (False, "", CODES, False),  # no label at all: make_review says a wrong verdict needs one
    (True, "ZZ9", CODES, False),  # "correct" ignores the label field
])
def test_label_error(correct: bool, label: str, codes, error: bool) -> None:
    problem = label_error(MarkForm("input", "violence", correct, label, "", "Ana"), codes)
    assert (problem is not None) is error
    if problem:
        assert "TV0, TV1, TV2, TV3" in problem and "violence" in problem


def test_a_posted_mark() -> None:
    fields = posted(b"phase=input&policy=violence&verdict=wrong&label=TV0&note=fiction%2C+not+a+threat&reviewer=Ana")
    mark = mark_form(fields)
    assert (mark.phase, mark.policy, mark.correct, mark.label, mark.note, mark.reviewer) == (
        "input", "violence", False, "TV0", "fiction, not a threat", "Ana")
    assert mark_form(posted(b"verdict=correct")).correct


def test_a_posted_body_is_bounded_and_survives_bad_bytes() -> None:
    assert posted(b"note=\xff\xfe") == {"note": "\ufffd\ufffd"}
    assert len(posted(b"note=" + b"x" * 200_000)["note"]) < 70_000
