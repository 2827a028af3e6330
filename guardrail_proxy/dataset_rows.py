"""One dataset row -> an `Example`: labels, roles, context, categories. Pure; datasets.py reads the layouts.

A label is 0/1 (also "0", "1", true, false) or a code `<PREFIX><N>` (a violation when N > 0). A bad row
raises `RowError` with the reason; the file reader adds the file and the line.

Context is kept as chat turns, so an eval can rebuild the conversation the proxy would see: a string is one
user turn (the message before the judged one), a list of `{"role", "content"}` objects is the turns as
given, and a CSV cell holding such a list as JSON is read as that list.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from .policies import Policy
from .subjects import Turn

ROLES = ("user", "assistant")
CONTEXT_ROLES = ("system", "developer", "user", "assistant", "tool")
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}  # common in chat sets
LABEL_CODE = re.compile(r"([A-Z]{1,6})([0-9]+)")
TRUE_WORDS = ("1", "true")
FALSE_WORDS = ("0", "false")


@dataclass(frozen=True)
class Label:
    code: str  # as written in the dataset, normalised: "0", "1" or e.g. "DR2"
    violation: bool
    level: int | None  # the code's level; None for 0/1 labels


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    label: str
    violation: bool
    level: int | None
    role: str
    context: tuple[Turn, ...]
    source_line: int
    categories: tuple[str, ...] = ()
    source: str | None = None  # the row's own `source` field: which public set an aggregated row came from


@dataclass(frozen=True)
class Columns:
    """Which field (JSON) or column (CSV) holds each part of a row."""

    text: str = "text"
    label: str = "label"
    id: str = "id"
    role: str = "role"
    context: str = "context"
    categories: str = "categories"
    source: str = "source"


class RowError(ValueError):
    """A reason a row is bad; `load_dataset` adds the file and line."""


def parse_label(raw: Any, policy: Policy | None = None) -> Label:
    """Pure: one dataset label cell -> `Label`. Raises RowError with the reason."""
    if isinstance(raw, bool):
        return Label("1" if raw else "0", raw, None)
    if isinstance(raw, int) and raw in (0, 1):
        return Label(str(raw), bool(raw), None)
    if not isinstance(raw, str) or not raw.strip():
        raise RowError(f"label must be 0, 1, true, false or a label code such as DR2; got {raw!r}")
    text = raw.strip()
    if text.lower() in TRUE_WORDS + FALSE_WORDS:
        violation = text.lower() in TRUE_WORDS
        return Label(str(int(violation)), violation, None)
    match = LABEL_CODE.fullmatch(text)
    if not match:
        raise RowError(f"label must be 0, 1, true, false or a label code such as DR2; got {raw!r}")
    prefix, level = match.group(1), int(match.group(2))
    if policy is not None and policy.format == "label":
        if prefix != policy.label_prefix:
            raise RowError(f"label {text} does not belong to policy '{policy.id}' (its codes are "
                           f"{', '.join(policy.labels)})")
        if text not in policy.labels:
            raise RowError(f"label {text} is not one of policy '{policy.id}' codes {', '.join(policy.labels)}")
    return Label(text, level > 0, level)


def context_turns(value: Any, name: str) -> tuple[Turn, ...]:
    """A context cell -> turns: empty, a string (one user turn), or a list of chat turns (also as JSON text)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str) and value.lstrip().startswith("[{"):
        with contextlib.suppress(ValueError):  # text that merely starts like JSON stays one turn, as written
            value = json.loads(value)
    if isinstance(value, str):
        return (Turn("user", value),)
    if not isinstance(value, list):
        raise RowError(f"'{name}' must be a string or a list of chat turns; got {value!r}")
    turns = []
    for turn in value:
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            raise RowError(f"'{name}' as a list must hold chat turns: objects with a string 'content'")
        role = turn.get("role") or "user"
        role = ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
        if role not in CONTEXT_ROLES:
            raise RowError(f"'{name}': a turn's role must be one of {', '.join(CONTEXT_ROLES)}; got {role!r}")
        turns.append(Turn(role, turn["content"]))
    return tuple(turns)


def category_list(value: Any, name: str) -> tuple[str, ...]:
    """A list of strings (also as JSON text, as `export` writes it to CSV), or one string split on `,`, `;`
    or `|`."""
    if value is None or value == "":
        return ()
    if isinstance(value, str) and value.lstrip().startswith("["):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, str):
        return tuple(dict.fromkeys(p.strip() for p in re.split(r"[,;|]", value) if p.strip()))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(dict.fromkeys(v.strip() for v in value if v.strip()))
    raise RowError(f"'{name}' must be a string or a list of strings; got {value!r}")


def optional_text(row: dict[str, Any], name: str) -> str | None:
    value = row.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RowError(f"'{name}' must be a string; got {value!r}")
    return value


def make_example(row: dict[str, Any], line: int, policy: Policy | None, columns: Columns = Columns()) -> Example:
    """Pure: one parsed row (a JSON object or a CSV record) -> Example. Raises RowError."""
    text = row.get(columns.text)
    if not isinstance(text, str) or not text.strip():
        raise RowError(f"'{columns.text}' must be a non-empty string")
    if columns.label not in row or row[columns.label] is None:
        raise RowError(f"missing '{columns.label}'")
    label = parse_label(row[columns.label], policy)
    raw_id = row.get(columns.id)
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int | None):
        raise RowError(f"'{columns.id}' must be a string or a number; got {raw_id!r}")
    role = (optional_text(row, columns.role) or "user").strip().lower()
    if role not in ROLES:
        raise RowError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    item_id = str(raw_id) if raw_id not in (None, "") else f"line-{line}"
    return Example(item_id, text, label.code, label.violation, label.level, role,
                   context_turns(row.get(columns.context), columns.context), line,
                   category_list(row.get(columns.categories), columns.categories),
                   optional_text(row, columns.source))


def context_lines(turns: tuple[Turn, ...]) -> str:
    """Context shown to a person: one `role: text` line a turn."""
    return "\n".join(f"{t.role}: {t.text}" for t in turns)


def known_label(raw: str, policy: Policy | None) -> bool:
    try:
        parse_label(raw, policy)
    except RowError:
        return False
    return True


@dataclass(frozen=True)
class LabelRule:
    """How a set's own labels become ours: a map of its words (`safe=0,unsafe=1`, matched case-insensitively)
    or one label for every item (an all-harmful set). Neither: the labels are read as they are."""

    mapping: tuple[tuple[str, str], ...] = ()
    constant: str | None = None

    def applied(self, row: dict[str, Any], label_col: str = "label") -> dict[str, Any]:
        if self.constant is not None:
            return {**row, label_col: self.constant}
        if not self.mapping or label_col not in row:
            return row
        raw = row[label_col]
        key = str(raw).strip().lower()
        table = dict(self.mapping)
        if key not in table:
            raise RowError(f"label {raw!r} is not in the label map ({', '.join(k for k, _ in self.mapping)})")
        return {**row, label_col: table[key]}


def parse_label_map(text: str) -> tuple[tuple[str, str], ...]:
    """'safe=0,unsafe=1' -> (("safe", "0"), ("unsafe", "1")). Raises ValueError with the reason."""
    pairs = []
    for item in text.split(","):
        word, sep, label = item.partition("=")
        if not sep or not word.strip() or not label.strip():
            raise ValueError(f"expected word=label pairs separated by commas, such as safe=0,unsafe=1; got {item!r}")
        pairs.append((word.strip().lower(), label.strip()))
    return tuple(pairs)
