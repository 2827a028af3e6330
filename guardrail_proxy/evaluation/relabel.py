"""An eval's results.jsonl -> the items worth a second look, in the dataset format, ready to relabel. Pure.

`mistakes`: the items the classifier and the label disagree on (false positives and negatives), and the
classifier errors with `--errors`. `flips`: a compare's items whose scored outcome changed between old and new.
Each exported row is a dataset row (`id`, `text`, `label`, `role`, `context`, `categories`, `source`) that
`eval` reads back as it is, followed by review columns (`predicted`, `outcome` or `effect`, `rationale`)
that it ignores. The label is the set's own: fix it where the classifier was right, then run eval again.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

What = Literal["mistakes", "flips"]
DATASET_FIELDS = ("id", "text", "label", "role", "context", "categories", "source")
REVIEW_FIELDS = ("predicted", "outcome", "effect", "old_predicted", "rationale", "old_rationale")


def dataset_row(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in DATASET_FIELDS}


def mistakes(rows: Iterable[dict[str, Any]], errors: bool = False) -> list[dict[str, Any]]:
    wanted = {"fp", "fn", "error"} if errors else {"fp", "fn"}
    scoped = [r for r in rows if r.get("scope") in (None, "route") and r.get("version") in (None, "new")]
    return [{**dataset_row(r), "predicted": r.get("predicted"), "outcome": r.get("outcome"),
             "rationale": r.get("rationale") or r.get("error")} for r in scoped if r.get("outcome") in wanted]


def flips(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairs the old and new rows of each item by id; raises ValueError for results that are not a compare."""
    scoped = [r for r in rows if r.get("scope") in (None, "route")]
    old = {r["id"]: r for r in scoped if r.get("version") == "old"}
    new = [r for r in scoped if r.get("version") == "new"]
    if not old or not new:
        raise ValueError("these results are not from a compare (no old and new rows): export mistakes instead")
    found = []
    for after in new:
        before = old.get(after["id"])
        if before is None or before.get("outcome") == after.get("outcome"):
            continue
        effect = ("fixed" if after.get("outcome") in ("tp", "tn") and before.get("outcome") in ("fp", "fn") else
                  "broke" if before.get("outcome") in ("tp", "tn") and after.get("outcome") in ("fp", "fn") else
                  "changed")
        found.append({**dataset_row(after), "predicted": after.get("predicted"), "effect": effect,
                      "old_predicted": before.get("predicted"), "rationale": after.get("rationale"),
                      "old_rationale": before.get("rationale")})
    return found


def csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "context":
        turns: Sequence[dict[str, str]] = value
        return json.dumps(list(turns), ensure_ascii=False) if turns else ""
    if name == "categories":  # as JSON: a category may itself hold a comma
        return json.dumps(list(value), ensure_ascii=False) if value else ""
    return str(value)


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    fields = [*DATASET_FIELDS, *(f for f in REVIEW_FIELDS if any(f in r for r in rows))]
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([csv_cell(name, row.get(name)) for name in fields])
    return out.getvalue()


def to_jsonl(rows: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
