"""Labelled example sets -> `Example` values, for `eval` and `policy lint`.

The layouts, picked by the file name (a trailing `.gz` is decompressed first):
  *.jsonl   one object per line (split on \n only): `text`, `label`, optional `id`, `role`, `context` (a
            string or a list of chat turns); other fields ignored. Our pack's examples.jsonl files.
  *.json    one array of such objects.
  *.csv     a header row; columns named by `text_col` / `label_col` / `id_col` (default text, label, id),
            optional `role` and `context` columns.
  official  the official teen-safety pack's CSV: an optional free-text note line, then one of its two headers
            (`example,classification,Responses,Response Label` or `Example Prompt,Prompt label,Example
            Generation,Generation Label`); CRLF or LF. Each row gives a prompt item (role user) and, when the
            response cells are filled, an assistant item with the prompt as its context. A row with an empty
            or unknown label is left out with a warning (the pack is published with one).

Rows become examples in dataset_rows.py (labels, roles, context). Every bad row raises
`ConfigError(file, "line N", reason)` (the official layout's unlabelled rows excepted, each reported as a
warning): a row is never dropped silently, because a quietly smaller example set makes metrics look better
than they are.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .dataset_rows import Example, LabelRule, RowError, known_label, make_example
from .errors import ConfigError
from .policies import Policy

NO_RULE = LabelRule()
# The official pack's two header variants (compared lower-cased): prompt, its label, a response, its label.
OFFICIAL_HEADERS = (
    ("example", "classification", "responses", "response label"),
    ("example prompt", "prompt label", "example generation", "generation label"),
)


def jsonl_rows(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    # Split on \n alone: str.splitlines would also split inside a record at U+0085, U+2028 and the like.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise RowError(f"line {number}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise RowError(f"line {number}: expected a JSON object")
        yield number, row


def csv_records(text: str, first_line: int) -> Iterator[tuple[int, list[str]]]:
    """(physical line where the record starts, cells); quoted cells may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = first_line
    for cells in reader:
        if any(cell.strip() for cell in cells):
            yield start, cells
        start = first_line + reader.line_num


def split_first_line(text: str) -> tuple[str, str]:
    head, _sep, rest = text.partition("\n")
    return head.rstrip("\r"), rest


def official_header_line(text: str) -> int | None:
    """1 or 2: the line holding an official header (line 1 may be a free-text note), or None."""
    rest = text
    for line in (1, 2):
        head, rest = split_first_line(rest)
        cells = next(csv.reader([head]), [])
        if tuple(c.strip().lower() for c in cells[:4]) in OFFICIAL_HEADERS:
            return line
    return None


def is_official_layout(text: str) -> bool:
    return official_header_line(text) is not None


def official_examples(text: str, policy: Policy | None, warnings: list[str] | None = None) -> Iterator[Example]:
    """Pure: the official pack's CSV text -> examples. A row whose label is empty or not one of the policy's
    codes is left out with a warning ("line N: reason") in `warnings`, as the pack is published with such rows;
    any other bad row raises RowError prefixed with the line."""
    header_line = official_header_line(text) or 2
    body = text
    for _ in range(header_line - 1):
        _note, body = split_first_line(body)
    records = csv_records(body, first_line=header_line)
    next(records, None)  # the header, already recognised
    for line, cells in records:
        example, prompt_label, response, response_label = [*cells, "", "", "", ""][:4]
        items: list[dict[str, Any]] = []
        if example.strip() or prompt_label.strip():
            items.append({"text": example, "label": prompt_label, "id": f"line-{line}"})
        if response.strip() or response_label.strip():
            items.append({"text": response, "label": response_label, "id": f"line-{line}-response",
                          "role": "assistant", "context": example.strip() or None})
        for item in items:
            try:
                if not item["label"].strip() or not known_label(item["label"], policy):
                    if warnings is not None:
                        warnings.append(f"line {line}: {item.get('role', 'prompt')} label "
                                        f"{item['label'].strip()!r} is empty or not one of the policy's codes; "
                                        "the item is left out")
                    continue
                yield make_example(item, line, policy)
            except RowError as exc:
                raise RowError(f"line {line}: {exc}") from None


def mapped_examples(text: str, policy: Policy | None, text_col: str, label_col: str,
                    id_col: str, labels: LabelRule = NO_RULE) -> Iterator[Example]:
    """Pure: a CSV with a header row -> examples, columns picked by name."""
    records = csv_records(text, first_line=1)
    first = next(records, None)
    if first is None:
        return
    header = [c.strip() for c in first[1]]
    for column in (text_col, label_col) if labels.constant is None else (text_col,):
        if column not in header:
            raise RowError(f"line {first[0]}: no column '{column}'; columns are {', '.join(header)}")
    for line, cells in records:
        if len(cells) != len(header):
            raise RowError(f"line {line}: {len(cells)} cells but the header has {len(header)}")
        try:
            row = labels.applied(dict(zip(header, cells, strict=True)), label_col)
            yield make_example(row, line, policy, text_col=text_col, label_col=label_col, id_col=id_col)
        except RowError as exc:
            raise RowError(f"line {line}: {exc}") from None


def jsonl_examples(text: str, policy: Policy | None, labels: LabelRule = NO_RULE) -> Iterator[Example]:
    for line, row in jsonl_rows(text):
        try:
            yield make_example(labels.applied(row, "label"), line, policy)
        except RowError as exc:
            raise RowError(f"line {line}: {exc}") from None


def check_consistent(examples: list[Example]) -> None:
    """Unique ids, and one label prefix per file (mixing two policies' codes is a mistake)."""
    seen: dict[str, int] = {}
    prefix_at: tuple[str, int] | None = None
    for example in examples:
        if example.id in seen:
            raise RowError(f"line {example.source_line}: id '{example.id}' is also on line {seen[example.id]}")
        seen[example.id] = example.source_line
        if example.level is None:
            continue
        prefix = example.label.rstrip("0123456789")
        if prefix_at is None:
            prefix_at = (prefix, example.source_line)
        elif prefix != prefix_at[0]:
            raise RowError(f"line {example.source_line}: label {example.label} mixes prefix {prefix} with "
                           f"{prefix_at[0]} (line {prefix_at[1]})")


def split_location(message: str) -> tuple[str, str]:
    """'line 4: reason' -> ('line 4', 'reason'), so ConfigError shows file, line and reason."""
    match = re.match(r"(line \d+): (.*)", message, re.DOTALL)
    return (match.group(1), match.group(2)) if match else ("", message)


def read_text(path: Path) -> str:
    """The file's text; a `.gz` file is decompressed first (its layout comes from the name inside)."""
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".gz":
            raw = gzip.decompress(raw)
        # Universal newlines, as a file opened in text mode reads them: the same text whoever wrote the file.
        return raw.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    except (OSError, UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise ConfigError(str(path), "", f"cannot read dataset: {exc}") from None


def layout_suffix(source: str) -> str:
    """`.jsonl` for `a.jsonl` and for `a.jsonl.gz`."""
    path = Path(source)
    if path.suffix.lower() == ".gz":
        path = path.with_suffix("")
    return path.suffix.lower()


def json_array_examples(text: str, policy: Policy | None, labels: LabelRule = NO_RULE) -> Iterator[Example]:
    """A .json file holding one array of objects; an item's "line" is its position, from 1."""
    try:
        rows = json.loads(text)
    except ValueError as exc:
        raise RowError(f"line 1: not valid JSON ({exc})") from None
    if not isinstance(rows, list):
        raise RowError("line 1: expected a JSON array of objects")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise RowError(f"line {number}: item {number} is not a JSON object")
        try:
            yield make_example(labels.applied(row, "label"), number, policy)
        except RowError as exc:
            raise RowError(f"line {number}: {exc}") from None


def collect(examples: Iterator[Example], source: str) -> list[Example]:
    """Run the row parser to the end and check the whole set; RowError -> ConfigError naming file and line."""
    try:
        found = list(examples)
        check_consistent(found)
    except RowError as exc:
        raise ConfigError(source, *split_location(str(exc))) from None
    if not found:
        raise ConfigError(source, "", "the dataset has no examples")
    return found


def parse_dataset(text: str, source: str, *, text_col: str | None = None, label_col: str | None = None,
                  id_col: str | None = None, policy: Policy | None = None,
                  warnings: list[str] | None = None, labels: LabelRule = NO_RULE) -> list[Example]:
    """Pure: a dataset's text -> examples; the layout comes from `source`'s suffix and the CSV header. Rows
    left out (the official layout's unlabelled ones) are reported in `warnings` as "file: line N: reason"."""
    mapping = any(c is not None for c in (text_col, label_col, id_col))
    suffix = layout_suffix(source)
    if suffix == ".csv" and not mapping and is_official_layout(text):
        return official_dataset(text, source, policy, warnings)
    if suffix == ".csv":
        return collect(mapped_examples(text, policy, text_col or "text", label_col or "label", id_col or "id",
                                       labels), source)
    if mapping:
        raise ConfigError(source, "", "--text-col/--label-col/--id-col apply to CSV files only")
    if suffix in (".jsonl", ".ndjson"):
        return collect(jsonl_examples(text, policy, labels), source)
    if suffix == ".json":
        return collect(json_array_examples(text, policy, labels), source)
    raise ConfigError(source, "", "unknown dataset format: use .jsonl, .json (an array) or .csv, optionally .gz")


def load_dataset(path: str | Path, *, text_col: str | None = None, label_col: str | None = None,
                 id_col: str | None = None, policy: Policy | None = None,
                 warnings: list[str] | None = None, labels: LabelRule = NO_RULE) -> list[Example]:
    path = Path(path)
    return parse_dataset(read_text(path), str(path), text_col=text_col, label_col=label_col, id_col=id_col,
                         policy=policy, warnings=warnings, labels=labels)


def read_official_csv(path: str | Path, *, policy: Policy | None = None,
                      warnings: list[str] | None = None) -> list[Example]:
    """The official pack's datasets/<slug>.csv, whatever its file name."""
    path = Path(path)
    text = read_text(path)
    if not is_official_layout(text):
        raise ConfigError(str(path), "line 2", "expected an official header: example,classification,Responses,"
                                               "Response Label or Example Prompt,Prompt label,Example Generation,"
                                               "Generation Label")
    return official_dataset(text, str(path), policy, warnings)


def official_dataset(text: str, source: str, policy: Policy | None, warnings: list[str] | None) -> list[Example]:
    found: list[str] = []
    examples = collect(official_examples(text, policy, found), source)
    if warnings is not None:
        warnings += [f"{source}: {w}" for w in found]
    return examples
