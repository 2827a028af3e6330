"""Write a run's files: results.jsonl (one row per item), summary.json, report.md and report.html."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

DEFAULT_ROOT = Path("eval-results")


def default_out_dir(started: datetime, root: Path = DEFAULT_ROOT) -> Path:
    return root / started.strftime("%Y%m%d-%H%M%S")


def write_outputs(out_dir: Path, rows: Iterable[dict[str, Any]], summary: dict[str, Any], report: str,
                  html: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "results.jsonl").open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    (out_dir / "report.md").write_text(report, encoding="utf-8")
    (out_dir / "report.html").write_text(html, encoding="utf-8")
