"""The export's download on both stores: the reviewed items as JSONL, built by one question to the store,
capped for a browser, and saying (in its file name) when the filter held more."""

from __future__ import annotations

import json

from console_seed import Seeded, check, content, record

from guardrail_proxy.audit_query import Filters
from guardrail_proxy.console.download import EXPORT_LIMIT, file_name, run_download

T = 1_800_000_000.0


def test_the_download_is_capped_and_says_so(seeded: Seeded) -> None:
    seeded.records(*(record(f"r{i}", T + i, decision="block", content=content(f"text {i} é"),
                            inputs=[check(result="violation", label="TV2", severity=2, action="block")])
                     for i in range(3)))
    for i in range(3):
        seeded.mark(f"r{i}", T + 100, label="TV0", note=f"n{i}")
    whole = run_download(seeded.db, Filters(), "violence", limit=3)
    assert (whole.rows, whole.truncated) == (3, False)
    rows = [json.loads(line) for line in whole.body.decode().splitlines()]
    assert [(r["text"], r["label"]) for r in rows] == [("text 2 é", "TV0"), ("text 1 é", "TV0"), ("text 0 é", "TV0")]
    cut = run_download(seeded.db, Filters(), "violence", limit=2)
    assert (cut.rows, cut.truncated, cut.body.count(b"\n")) == (2, True, 2)  # the newest two
    assert b"text 0" not in cut.body
    empty = run_download(seeded.db, Filters(route="nowhere"), "violence")
    assert (empty.body, empty.rows, empty.truncated) == (b"", 0, False)


def test_a_browser_download_is_bounded() -> None:
    assert EXPORT_LIMIT <= 20_000
    assert file_name(None, T) == "reviewed-all-policies-20270115-0800.jsonl"
    assert file_name("violence", T, truncated=True, limit=5).endswith("-first-5.jsonl")
