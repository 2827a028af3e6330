"""The official teen-safety pack's dataset CSV -> `Example` values. Pure but for `read_official_csv`.

The layout: an optional free-text note line, then one of two headers (`example,classification,Responses,
Response Label` or `Example Prompt,Prompt label,Example Generation,Generation Label`); CRLF or LF. Each row
gives a prompt item (role user) and, when the response cells are filled, an assistant item with the prompt
as its context. A row with an empty or unknown label is left out with a warning, as the pack is published
with one; any other bad row is a problem like in every other layout.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .dataset_read import DatasetRead, gather, strict
from .dataset_rows import Example, RowError, known_label, make_example
from .dataset_text import csv_records, read_text, split_first_line
from .errors import ConfigError
from .policies import Policy

# Compared lower-cased: prompt, its label, a response, its label.
OFFICIAL_HEADERS = (
    ("example", "classification", "responses", "response label"),
    ("example prompt", "prompt label", "example generation", "generation label"),
)


def official_header_line(text: str) -> int | None:
    """1 or 2: the line holding an official header (line 1 may be a free-text note), or None."""
    rest = text
    for line in (1, 2):
        head, rest = split_first_line(rest)
        try:
            cells = next(csv.reader([head]), [])
        except csv.Error:  # a line the csv module cannot read is no official header
            cells = []
        if tuple(c.strip().lower() for c in cells[:4]) in OFFICIAL_HEADERS:
            return line
    return None


def is_official_layout(text: str) -> bool:
    return official_header_line(text) is not None


def row_items(line: int, cells: list[str]) -> list[dict[str, Any]]:
    example, prompt_label, response, response_label = [*cells, "", "", "", ""][:4]
    items: list[dict[str, Any]] = []
    if example.strip() or prompt_label.strip():
        items.append({"text": example, "label": prompt_label, "id": f"line-{line}"})
    if response.strip() or response_label.strip():
        items.append({"text": response, "label": response_label, "id": f"line-{line}-response",
                      "role": "assistant", "context": example.strip() or None})
    return items


def official_rows(text: str, policy: Policy | None,
                  warnings: list[str] | None = None) -> Iterator[Example | RowError]:
    """Pure: the official CSV text -> examples and bad rows ("line N: reason"); rows left out for an empty
    or unknown label are reported in `warnings` instead."""
    header_line = official_header_line(text) or 2
    body = text
    for _ in range(header_line - 1):
        _note, body = split_first_line(body)
    records = csv_records(body, first_line=header_line)
    next(records, None)  # the header, already recognised
    for line, cells in records:
        for item in row_items(line, cells):
            if not item["label"].strip() or not known_label(item["label"], policy):
                if warnings is not None:
                    warnings.append(f"line {line}: {item.get('role', 'prompt')} label {item['label'].strip()!r} "
                                    "is empty or not one of the policy's codes; the item is left out")
                continue
            try:
                yield make_example(item, line, policy)
            except RowError as exc:
                yield RowError(f"line {line}: {exc}")


def read_official_csv(path: str | Path, *, policy: Policy | None = None,
                      warnings: list[str] | None = None) -> list[Example]:
    """The official pack's datasets/<slug>.csv, whatever its file name; the first bad row raises ConfigError."""
    path = Path(path)
    text = read_text(path)
    if not is_official_layout(text):
        raise ConfigError(str(path), "line 2", "expected an official header: example,classification,Responses,"
                                               "Response Label or Example Prompt,Prompt label,Example Generation,"
                                               "Generation Label")
    read = official_dataset(text, str(path), policy)
    if warnings is not None:
        warnings += read.warnings
    return strict(read)


def official_dataset(text: str, source: str, policy: Policy | None) -> DatasetRead:
    found: list[str] = []
    try:
        rows = list(official_rows(text, policy, found))
    except csv.Error as exc:
        raise ConfigError(source, "", f"unreadable CSV: {exc}") from None
    return gather(rows, source, [f"{source}: {w}" for w in found])
