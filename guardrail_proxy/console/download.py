"""The export's download: the reviewed items of a filter as a JSONL dataset, built and encoded in the store's
thread (a question for ConsoleStore.run), so the event loop only sends bytes.

A browser download carries at most EXPORT_LIMIT rows, the newest records first; one more row is read to know
whether the filter holds more, and then the file's name says it was cut (`-first-20000`). The CLI, `guardrail-
proxy audit export --reviewed`, has no such cap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..audit_query import Filters
from ..review_export import run_reviewed

EXPORT_LIMIT = 20_000


@dataclass(frozen=True)
class Download:
    body: bytes
    rows: int
    truncated: bool  # the filter holds more rows than the download carries


def jsonl(rows: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def file_name(policy: str | None, now: float, truncated: bool = False, limit: int = EXPORT_LIMIT) -> str:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d-%H%M")
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "-"
                   for ch in (policy or "all-policies"))[:60]
    return f"reviewed-{safe}-{stamp}" + (f"-first-{limit}" if truncated else "") + ".jsonl"


def run_download(db: Any, filters: Filters, policy: str | None, limit: int = EXPORT_LIMIT) -> Download:
    rows = run_reviewed(db, filters, policy, limit + 1)
    return Download(jsonl(rows[:limit]), min(len(rows), limit), len(rows) > limit)
