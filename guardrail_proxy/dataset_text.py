"""A dataset file's text and its records, before any row means anything: gzip, newlines, CSV and JSONL."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .dataset_rows import RowError
from .errors import ConfigError


def read_text(path: Path) -> str:
    """The file's text; a `.gz` file is decompressed first (its layout comes from the name inside)."""
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".gz":
            raw = gzip.decompress(raw)
        # Universal newlines, as a file opened in text mode reads them: the same text whoever wrote the file.
        return raw.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    except (OSError, UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ConfigError(str(path), "", f"cannot read dataset: {exc}") from None


def layout_suffix(source: str) -> str:
    """`.jsonl` for `a.jsonl` and for `a.jsonl.gz`."""
    path = Path(source)
    if path.suffix.lower() == ".gz":
        path = path.with_suffix("")
    return path.suffix.lower()


def split_first_line(text: str) -> tuple[str, str]:
    head, _sep, rest = text.partition("\n")
    return head.rstrip("\r"), rest


def csv_records(text: str, first_line: int) -> Iterator[tuple[int, list[str]]]:
    """(physical line where the record starts, cells); quoted cells may span lines; blank records skipped."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = first_line
    for cells in reader:
        if any(cell.strip() for cell in cells):
            yield start, cells
        start = first_line + reader.line_num


def jsonl_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(line, object) per non-blank line, or (line, RowError) for a line that is not a JSON object."""
    # Split on \n alone: str.splitlines would also split inside a record at U+0085, U+2028 and the like.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:
            yield number, RowError(f"not valid JSON ({exc})")
            continue
        yield number, row if isinstance(row, dict) else RowError("expected a JSON object")
