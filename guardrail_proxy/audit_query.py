"""Questions the `audit` command asks the store: filtered lists, one record, counts per period, pruning, and
flagged traffic as dataset rows. Building the SQL and shaping the answers is pure; `run_*` take a DB-API
connection (the SQLite one today; the SQL is the common subset PostgreSQL also speaks, bar placeholders).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .audit_rows import record_of

RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([mhdw])")
UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
BUCKETS = {"hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Filters:
    since: float | None = None
    until: float | None = None
    route: str | None = None
    policy: str | None = None
    label: str | None = None
    decision: str | None = None
    unchecked: bool | None = None
    flagged: bool | None = None
    request_id: str | None = None


def parse_when(text: str, now: float) -> float:
    """'30m', '24h', '7d', '2w' ago, or an ISO date/time (UTC unless it says otherwise) -> a Unix time.
    Raises ValueError with the reason."""
    value = text.strip()
    if match := RELATIVE.fullmatch(value):
        return now - float(match.group(1)) * UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected a time like 24h, 7d or 2026-11-29T10:00; got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def where(filters: Filters) -> tuple[str, list[Any]]:
    """The WHERE clause over `records r` (with EXISTS over `checks c` for policy and label) and its values."""
    parts: list[str] = []
    values: list[Any] = []
    simple = (("r.ts >= ?", filters.since), ("r.ts < ?", filters.until), ("r.route = ?", filters.route),
              ("r.decision = ?", filters.decision), ("r.request_id = ?", filters.request_id))
    for clause, value in simple:
        if value is not None:
            parts.append(clause)
            values.append(value)
    for column, flag in (("r.unchecked", filters.unchecked), ("r.flagged", filters.flagged)):
        if flag is not None:
            parts.append(f"{column} = ?")
            values.append(int(flag))
    if filters.policy is not None or filters.label is not None:
        inner = ["c.request_id = r.request_id"]
        for clause, value in (("c.policy = ?", filters.policy), ("c.label = ?", filters.label)):
            if value is not None:
                inner.append(clause)
                values.append(value)
        parts.append(f"EXISTS (SELECT 1 FROM checks c WHERE {' AND '.join(inner)})")
    return (" WHERE " + " AND ".join(parts)) if parts else "", values


def bucket_start(ts: float, bucket: str) -> str:
    size = BUCKETS[bucket]
    start = datetime.fromtimestamp(ts - ts % size, UTC)
    return start.strftime("%Y-%m-%d %H:00" if bucket == "hour" else "%Y-%m-%d")


def violations(record: dict[str, Any]) -> list[str]:
    """'phase: policy LABEL (action)' for each violation in a record, in order."""
    return [f"{p.get('phase')}: {c.get('policy')} {c.get('label')} ({c.get('action')})"
            for p in record.get("phases", ()) for c in p.get("checks", ()) if c.get("result") == "violation"]


def summary_row(record: dict[str, Any]) -> dict[str, Any]:
    return {"request_id": record["request_id"],
            "time": datetime.fromtimestamp(record["ts"], UTC).isoformat(timespec="seconds"),
            "route": record.get("route"), "model": record.get("model"), "client": record.get("client"),
            "status": record.get("status"), "decision": record.get("decision"), "unchecked": record.get("unchecked"),
            "violations": violations(record), "error": record.get("error")}


def dataset_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A record with stored content -> dataset rows for `eval`: the input as a user item, the reply (when kept)
    as an assistant item. The label is the proxy's own verdict on that text, to be reviewed: 1 when a check of
    that phase found a violation, else 0; the categories name the policies that found one."""
    content = record.get("content")
    if not content or not content.get("input"):
        return []
    found = {p.get("phase"): [c.get("policy") for c in p.get("checks", ()) if c.get("result") == "violation"]
             for p in record.get("phases", ())}
    rows = [{"id": record["request_id"], "text": content["input"], "label": int(bool(found.get("input"))),
             "role": "user", "context": content.get("context") or [], "categories": found.get("input") or [],
             "source": f"audit:{record.get('route')}"}]
    if content.get("output"):
        rows.append({"id": f"{record['request_id']}-reply", "text": content["output"],
                     "label": int(bool(found.get("output"))), "role": "assistant",
                     "context": [{"role": "user", "content": content["input"]}],
                     "categories": found.get("output") or [], "source": f"audit:{record.get('route')}"})
    return rows


def run_list(db: Any, filters: Filters, limit: int) -> list[dict[str, Any]]:
    clause, values = where(filters)
    rows = db.execute(f"SELECT r.record FROM records r{clause} ORDER BY r.ts DESC LIMIT ?", [*values, limit])
    return [record_of(row[0]) for row in rows.fetchall()]


def run_show(db: Any, request_id: str) -> dict[str, Any] | None:
    """The record, with the text of every policy version it was judged by (`policies`: digest -> text)."""
    row = db.execute("SELECT record FROM records WHERE request_id = ?", [request_id]).fetchone()
    if row is None:
        return None
    record = record_of(row[0])
    digests = sorted({c.get("policy_digest") for p in record.get("phases", ()) for c in p.get("checks", ())
                      if c.get("policy_digest")})
    texts = {}
    for digest in digests:
        found = db.execute("SELECT policy_id, text FROM policies WHERE digest = ?", [digest]).fetchone()
        texts[digest] = {"policy": found[0], "text": found[1]} if found else None
    return {**record, "policies": texts}


def run_stats(db: Any, filters: Filters, bucket: str) -> list[dict[str, Any]]:
    """Requests per period, decision, and policy and label of the violations found ("-" for none); a request
    counts once per policy and label, whether input, output or both found it."""
    clause, values = where(filters)
    rows = db.execute("SELECT r.request_id, r.ts, r.decision, c.policy, c.label FROM records r LEFT JOIN checks c "
                      f"ON c.request_id = r.request_id AND c.result = 'violation'{clause}", values).fetchall()
    seen = {(request_id, ts, decision, policy or "-", label or "-") for request_id, ts, decision, policy, label in rows}
    counts: dict[tuple[str, str, str, str], int] = {}
    for _request_id, ts, decision, policy, label in seen:
        key = (bucket_start(ts, bucket), policy, label, decision)
        counts[key] = counts.get(key, 0) + 1
    return [{"period": k[0], "policy": k[1], "label": k[2], "decision": k[3], "requests": n}
            for k, n in sorted(counts.items())]


PRUNE_CHUNK = 2000


def run_prune(db: Any, before: float, chunk: int = PRUNE_CHUNK) -> int:
    """Delete records (and their checks) older than `before`, `chunk` records per transaction, so the
    proxy's writer is never locked out for long; the count deleted."""
    deleted = 0
    while True:
        db.execute("BEGIN")
        ids = [row[0] for row in db.execute("SELECT request_id FROM records WHERE ts < ? LIMIT ?",
                                            [before, chunk]).fetchall()]
        if not ids:
            db.execute("DELETE FROM checks WHERE ts < ?", [before])  # any left without their record
            db.execute("COMMIT")
            return deleted
        marks = ", ".join("?" for _ in ids)
        db.execute(f"DELETE FROM checks WHERE request_id IN ({marks})", ids)
        deleted += int(db.execute(f"DELETE FROM records WHERE request_id IN ({marks})", ids).rowcount)
        db.execute("COMMIT")


def cutoff(retention_days: float, now: float) -> float:
    return (datetime.fromtimestamp(now, UTC) - timedelta(days=retention_days)).timestamp()
