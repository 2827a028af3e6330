"""An audit record's JSON -> the rows a database stores, and back. Pure.

The JSON is the one representation of a record (what the jsonl and log stores write, what `audit show --json`
prints); the database keeps it whole, plus the columns that filters and counts need: one row per request and
one per check (policy, label, result, action), so "what did we block last week under which policy" is an
indexed query, not a scan of reasoning text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

RECORD_COLUMNS = ("request_id", "ts", "route", "model", "client", "stream", "decision", "status", "error",
                  "upstream_called", "upstream_cancelled", "duration_ms", "unchecked", "flagged", "record")
CHECK_COLUMNS = ("request_id", "ts", "phase", "policy", "policy_digest", "result", "label", "severity", "action",
                 "error_kind", "latency_ms")
# A shadow row (shadow.py) is an entry of its own kind: a dict with "kind": "shadow_check" and these fields, its
# `detail` a mapping stored as JSON text. Request records carry no "kind".
SHADOW_COLUMNS = ("request_id", "ts", "route", "phase", "policy", "subject", "enforced_digest", "candidate_digest",
                  "enforced_result", "enforced_label", "result", "label", "severity", "agree", "error_kind",
                  "latency_ms", "detail")
SHADOW_KIND = "shadow_check"


@dataclass(frozen=True)
class Rows:
    record: tuple[Any, ...]
    checks: tuple[tuple[Any, ...], ...]


def clean_text(text: str) -> str:
    """Text every store can hold: no NUL (PostgreSQL refuses it, SQLite cuts a column at it), no lone
    surrogate (not encodable as UTF-8); each becomes U+FFFD, so the place stays visible."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def storable(value: Any) -> Any:
    """The record with every string (keys included) cleaned by clean_text. Pure."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def reduced(record: dict[str, Any], error: Exception) -> dict[str, Any]:
    """What is kept of a record the store refused whole: who, when, the outcome, and why the rest is missing."""
    kept = {k: record.get(k) for k in ("request_id", "ts", "route", "model", "client", "stream", "decision",
                                       "status", "upstream_called", "upstream_cancelled", "duration_ms", "unchecked")}
    reason = clean_text(f"{type(error).__name__}: {error}")[:500]
    return {**kept, "error": f"the full record could not be stored ({reason})", "phases": [], "content": None}


def is_shadow(entry: dict[str, Any]) -> bool:
    return entry.get("kind") == SHADOW_KIND


def shadow_values(row: dict[str, Any]) -> tuple[Any, ...]:
    """A shadow row's column values, in SHADOW_COLUMNS order."""
    return tuple(json.dumps(row.get("detail") or {}, ensure_ascii=False) if column == "detail" else row.get(column)
                 for column in SHADOW_COLUMNS)


def is_flagged(record: dict[str, Any]) -> bool:
    """Not plainly allowed: a refused or failed request, a violation of any action, a failed check."""
    return int(record.get("status") or 0) >= 400 or any(
        check.get("result") in ("violation", "error") for phase in record.get("phases", ()) for check in
        phase.get("checks", ()))


def rows_of(record: dict[str, Any]) -> Rows:
    flagged = is_flagged(record)
    top = (record["request_id"], record["ts"], record.get("route") or "", record.get("model") or "",
           record.get("client"), int(bool(record.get("stream"))), record.get("decision") or "none",
           int(record.get("status") or 0), record.get("error"), int(bool(record.get("upstream_called"))),
           int(bool(record.get("upstream_cancelled"))), record.get("duration_ms"),
           int(bool(record.get("unchecked"))), int(flagged), json.dumps(record, ensure_ascii=False))
    checks = tuple(
        (record["request_id"], record["ts"], phase.get("phase"), check.get("policy"), check.get("policy_digest"),
         check.get("result"), check.get("label"), check.get("severity"), check.get("action"),
         check.get("error_kind"), check.get("latency_ms"))
        for phase in record.get("phases", ()) for check in phase.get("checks", ()))
    return Rows(top, checks)


def record_of(stored: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(stored)
    return data
