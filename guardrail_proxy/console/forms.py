"""What a reviewer typed -> typed values, with an error per field. Pure.

The decisions filter (a query string, so a filtered list is a link to share), the overview's window, and a
posted mark (an urlencoded body, read here without a multipart parser). A number is read only when it is
ASCII digits (`str.isdigit` also accepts "²", which `int` refuses); a NUL character in any field is refused
before it reaches the store (PostgreSQL cannot hold one in text); a mark's label must be one of the policy's
codes when the loaded config defines them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from ..audit_query import Filters, parse_when
from .glance import DEFAULT_WINDOW, WINDOWS

FILTER_FIELDS = ("route", "policy", "label", "decision", "since", "until", "unchecked", "reviewed")
DECISIONS = ("allow", "log", "annotate", "rewrite", "block", "unavailable", "unchecked", "none")
REVIEWED = {"": None, "yes": True, "no": False}
PER_PAGE = 50
MAX_PAGE = 100_000
MAX_FORM_BYTES = 65_536


@dataclass(frozen=True)
class FilterForm:
    """The decisions filter as typed (`values`, to show it again) and as understood (`filters`)."""

    values: dict[str, str]
    filters: Filters
    reviewed: bool | None
    page: int
    errors: dict[str, str] = field(default_factory=dict)

    def query(self, **changes: str) -> str:
        """This filter as a query string, with `changes` applied; empty fields left out."""
        merged = {**self.values, **changes}
        return urlencode([(k, v) for k, v in merged.items() if v])


def text_field(params: Mapping[str, str], name: str, limit: int = 200) -> str:
    return (params.get(name) or "").strip()[:limit]


def filter_form(params: Mapping[str, str], now: float) -> FilterForm:
    values = {name: text_field(params, name) for name in FILTER_FIELDS}
    errors: dict[str, str] = {}
    moments: dict[str, float | None] = {}
    for name in ("since", "until"):
        try:
            moments[name] = parse_when(values[name], now) if values[name] else None
        except ValueError as exc:
            errors[name] = str(exc)
            moments[name] = None
    if values["decision"] and values["decision"] not in DECISIONS:
        errors["decision"] = f"expected one of {', '.join(DECISIONS)}"
    if values["reviewed"] not in REVIEWED:
        errors["reviewed"] = "expected yes, no or nothing"
    if values["unchecked"] not in ("", "1"):
        errors["unchecked"] = "expected 1 or nothing"
    page = number(text_field(params, "page"), 1, MAX_PAGE) or 1
    filters = Filters(since=moments["since"], until=moments["until"], route=values["route"] or None,
                      policy=values["policy"] or None, label=values["label"] or None,
                      decision=None if "decision" in errors else values["decision"] or None,
                      unchecked=True if values["unchecked"] == "1" else None)
    return FilterForm(values, filters, REVIEWED.get(values["reviewed"]), page, errors)


def number(text: str, low: int, high: int) -> int | None:
    """`text` as an int in [low, high), or None: ASCII digits only, at most 12 of them."""
    if not (text.isascii() and text.isdecimal()) or len(text) > 12:
        return None
    value = int(text)
    return value if low <= value < high else None


def window_of(params: Mapping[str, str]) -> str:
    choice = params.get("window") or DEFAULT_WINDOW
    return choice if choice in WINDOWS else DEFAULT_WINDOW


def nul_field(fields: Iterable[tuple[str, str]]) -> str | None:
    """The name of the first field whose name or value holds a NUL character, or None."""
    return next((name for name, value in fields if "\x00" in name or "\x00" in value), None)


def posted(body: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body -> its fields (the last of repeated names)."""
    return dict(parse_qsl(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), keep_blank_values=True))


@dataclass(frozen=True)
class MarkForm:
    """A reviewer's mark as posted, before validation by audit_reviews.make_review."""

    phase: str
    policy: str
    correct: bool
    label: str
    note: str
    reviewer: str


def label_error(form: MarkForm, codes: Sequence[str] | None) -> str | None:
    """Why a "should have been" label is not one of the policy's codes, or None. `codes` is None for a policy
    whose labels the loaded config does not define (free text, checked only as a label by make_review)."""
    if form.correct or not codes or not form.label or form.label in codes:
        return None
    return f"not a label of policy {form.policy}: expected one of {', '.join(codes)}"


def mark_form(fields: Mapping[str, str]) -> MarkForm:
    return MarkForm(phase=fields.get("phase", ""), policy=fields.get("policy", ""),
                    correct=fields.get("verdict") == "correct", label=fields.get("label", "").strip(),
                    note=fields.get("note", ""), reviewer=fields.get("reviewer", ""))
