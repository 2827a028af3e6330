"""`guardrail-proxy export`: an eval's mistakes, or a compare's flips, as a dataset file to relabel.

    guardrail-proxy export eval-results/20261129-101500 --what mistakes --out relabel.csv

The format follows --out's suffix (.csv, .jsonl). The file loads back with `eval --dataset` unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .evaluation.relabel import flips, mistakes, to_csv, to_jsonl
from .settings import Settings
from .tool_flags import guarded


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sub.add_parser("export", help="write an eval's mistakes or a compare's flips as a dataset to relabel",
                            description="Write disagreements (mistakes) or flips of an eval as a dataset file.")
    export.add_argument("results", help="an eval output directory (holding results.jsonl), or the file itself")
    export.add_argument("--what", choices=("mistakes", "flips"), default="mistakes",
                        help="mistakes: false positives and negatives; flips: a compare's changed verdicts")
    export.add_argument("--errors", action="store_true", help="with mistakes: the classifier errors too")
    export.add_argument("--out", required=True, help="the file to write: .csv or .jsonl")
    export.set_defaults(func=cmd_export)


def read_results(path: Path) -> list[dict[str, Any]]:
    file = path / "results.jsonl" if path.is_dir() else path
    rows = []
    try:
        with file.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except ValueError as exc:
                        raise ConfigError(str(file), f"line {number}", f"not valid JSON ({exc})") from None
                    if not isinstance(row, dict) or not {"id", "text", "outcome"} <= row.keys():
                        raise ConfigError(str(file), f"line {number}", "not an eval result row (id, text, outcome): "
                                                                       "export reads an eval's results.jsonl")
                    rows.append(row)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(file), "", f"cannot read results: {exc}") from None
    return rows


def run_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".jsonl"):
        raise ConfigError(str(out), "--out", "the file must end in .csv or .jsonl")
    rows = read_results(Path(args.results))
    try:
        chosen = flips(rows) if args.what == "flips" else mistakes(rows, args.errors)
    except ValueError as exc:
        raise ConfigError(args.results, "--what", str(exc)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_csv(chosen) if out.suffix.lower() == ".csv" else to_jsonl(chosen), encoding="utf-8")
    print(f"wrote {len(chosen)} {args.what} to {out}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    return guarded(lambda: run_export(args))
