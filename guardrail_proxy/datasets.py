"""Labelled example sets -> `Example` values, for `eval` and `policy lint`.

The layouts, picked by the file name (a trailing `.gz` is decompressed first):
  *.jsonl   one object per line (split on \n only); fields named by `Columns` (default `text`, `label`, and
            optional `id`, `role`, `context` (a string or a list of chat turns), `categories`, `source`);
            other fields ignored. Our pack's examples.jsonl files.
  *.json    one array of such objects; an item's "line" is its position, from 1.
  *.csv     a header row; columns named by `Columns` like the JSON fields.
  official  the official teen-safety pack's CSV (official_csv.py), recognised by its header when no column
            mapping is given.

Rows become examples in dataset_rows.py; a whole set becomes kept examples and bad rows in dataset_read.py.
A problem with the file itself (unreadable, not a JSON array, a named column missing) is a ConfigError at
once: there are no rows to keep.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .dataset_read import DatasetRead, gather, strict
from .dataset_rows import Columns, Example, LabelRule, RowError, make_example
from .dataset_text import csv_records, jsonl_rows, layout_suffix, read_text
from .errors import ConfigError
from .official_csv import is_official_layout, official_dataset
from .policies import Policy


@dataclass(frozen=True)
class ReadOptions:
    """How to read a set that is not in our own shape: which fields, and what its labels mean."""

    columns: Columns = field(default_factory=Columns)
    labels: LabelRule = field(default_factory=LabelRule)


def named_columns(columns: Columns) -> list[str]:
    """The optional columns given another name than the default: those the user asked for by name."""
    default = Columns()
    return [getattr(columns, f) for f in ("id", "role", "context", "categories", "source")
            if getattr(columns, f) != getattr(default, f)]


def unseen_fields(rows: list[dict[str, object]], columns: Columns) -> list[str]:
    """Named optional fields that no JSON row has: a warning, since any one row may leave a field out."""
    return [name for name in named_columns(columns) if not any(name in row for row in rows)]


def row_example(row: dict[str, object], line: int, policy: Policy | None,
                options: ReadOptions) -> Example | RowError:
    try:
        return make_example(options.labels.applied(row, options.columns.label), line, policy, options.columns)
    except RowError as exc:
        return RowError(f"line {line}: {exc}")


def csv_examples(text: str, source: str, policy: Policy | None, options: ReadOptions) -> Iterator[Example | RowError]:
    records = csv_records(text, first_line=1)
    first = next(records, None)
    if first is None:
        return
    header = [c.strip() for c in first[1]]
    columns = options.columns
    needed = (columns.text,) if options.labels.constant is not None else (columns.text, columns.label)
    # A column the user named must exist: a misspelt --role-col would otherwise judge every reply as input.
    for column in (*needed, *named_columns(columns)):
        if column not in header:
            raise ConfigError(source, f"line {first[0]}", f"no column '{column}'; columns are {', '.join(header)}")
    for line, cells in records:
        if len(cells) != len(header):
            yield RowError(f"line {line}: {len(cells)} cells but the header has {len(header)}")
            continue
        yield row_example(dict(zip(header, cells, strict=True)), line, policy, options)


def jsonl_examples(text: str, policy: Policy | None, options: ReadOptions,
                   seen: list[dict[str, object]]) -> Iterator[Example | RowError]:
    for line, row in jsonl_rows(text):
        if isinstance(row, RowError):
            yield RowError(f"line {line}: {row}")
            continue
        seen.append(row)
        yield row_example(row, line, policy, options)


def json_array_examples(text: str, source: str, policy: Policy | None, options: ReadOptions,
                        seen: list[dict[str, object]]) -> Iterator[Example | RowError]:
    try:
        rows = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(source, "line 1", f"not valid JSON ({exc})") from None
    if not isinstance(rows, list):
        raise ConfigError(source, "line 1", "expected a JSON array of objects")
    for number, row in enumerate(rows, start=1):
        if isinstance(row, dict):
            seen.append(row)
            yield row_example(row, number, policy, options)
        else:
            yield RowError(f"line {number}: item {number} is not a JSON object")


def parse_dataset(text: str, source: str, *, policy: Policy | None = None,
                  options: ReadOptions = ReadOptions()) -> DatasetRead:
    """Pure: a dataset's text -> examples and bad rows; the layout comes from `source`'s suffix and, for a
    CSV, its header. Rows the official layout leaves out are in the result's warnings."""
    suffix = layout_suffix(source)
    if suffix == ".csv" and options.columns == Columns() and is_official_layout(text):
        if options.labels != LabelRule():
            raise ConfigError(source, "", "the official layout's labels are the policy's own codes: --label-map "
                                          "and --label do not apply to it")
        return official_dataset(text, source, policy)
    seen: list[dict[str, object]] = []
    if suffix == ".csv":
        rows: Iterator[Example | RowError] = csv_examples(text, source, policy, options)
    elif suffix in (".jsonl", ".ndjson"):
        rows = jsonl_examples(text, policy, options, seen)
    elif suffix == ".json":
        rows = json_array_examples(text, source, policy, options, seen)
    else:
        raise ConfigError(source, "", "unknown dataset format: use .jsonl, .json (an array) or .csv, optionally .gz")
    try:
        found = list(rows)
    except csv.Error as exc:  # e.g. a cell longer than the csv module's limit
        raise ConfigError(source, "", f"unreadable CSV: {exc}") from None
    warnings = [f"{source}: no row has the field '{name}'" for name in unseen_fields(seen, options.columns)]
    return gather(found, source, warnings)


def read_dataset(path: str | Path, *, policy: Policy | None = None,
                 options: ReadOptions = ReadOptions()) -> DatasetRead:
    path = Path(path)
    return parse_dataset(read_text(path), str(path), policy=policy, options=options)


def load_dataset(path: str | Path, *, policy: Policy | None = None, options: ReadOptions = ReadOptions(),
                 warnings: list[str] | None = None) -> list[Example]:
    """Every row good: the examples; otherwise a ConfigError naming the file and the first bad line."""
    read = read_dataset(path, policy=policy, options=options)
    if warnings is not None:
        warnings += read.warnings
    return strict(read)
