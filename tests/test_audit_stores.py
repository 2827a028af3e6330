"""The stores themselves, SQLite and PostgreSQL (a real server): migrations, upserts, policy texts once per
digest, and refusing what they cannot read."""

from __future__ import annotations

import json
import sqlite3

import pytest

from guardrail_proxy.audit_postgres import PostgresStore
from guardrail_proxy.audit_postgres import connect as postgres_connect
from guardrail_proxy.audit_query import run_prune
from guardrail_proxy.audit_schema import LATEST
from guardrail_proxy.audit_sqlite import SqliteStore, connect
from guardrail_proxy.errors import ConfigError

ALL_VERSIONS = [(v,) for v in range(1, LATEST + 1)]  # each migration ran once


def rec(request_id: str, ts: float, result: str = "pass") -> dict:
    return {"request_id": request_id, "ts": ts, "route": "r", "model": "m", "status": 200, "decision": "allow",
            "phases": [{"phase": "input", "checks": [{"policy": "p", "policy_digest": "d1", "result": result}]}]}


@pytest.fixture(params=["sqlite", "postgres"])
def opened(request, tmp_path):
    """(a store, a function opening a reader on the same database)."""
    if request.param == "sqlite":
        path = str(tmp_path / "a.db")
        return SqliteStore(path), lambda: connect(path, readonly=True)
    dsn = request.getfixturevalue("postgres_dsn")
    return PostgresStore(dsn), lambda: postgres_connect(dsn, readonly=True)


def test_records_checks_and_policies(opened):
    store, reader = opened
    store.open()
    store.put_policies([("d1", "p", "policy text v1")])
    store.put_policies([("d1", "p", "policy text v1"), ("d2", "p", "policy text v2")])
    store.write([rec("a", 1.0), rec("b", 2.0, "violation")])
    store.write([rec("a", 1.0, "violation")])  # the same request again replaces its row and checks
    store.close()
    db = reader()
    assert db.execute("SELECT COUNT(*), SUM(flagged) FROM records").fetchone() == (2, 2)
    assert db.execute("SELECT COUNT(*) FROM checks").fetchone() == (2,)
    assert db.execute("SELECT digest FROM policies ORDER BY digest").fetchall() == [("d1",), ("d2",)]
    if isinstance(store, SqliteStore):
        assert db.execute("SELECT journal_mode FROM pragma_journal_mode").fetchone() == ("wal",)
    db.close()


def test_postgres_replicas_migrate_one_at_a_time_and_refuse_a_newer_schema(postgres_dsn):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:  # four replicas starting at once
        for db in pool.map(lambda _: postgres_connect(postgres_dsn), range(4)):
            db.close()
    db = postgres_connect(postgres_dsn)
    assert db.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == ALL_VERSIONS
    db.execute("INSERT INTO schema_version VALUES (?)", [LATEST + 1])
    db.close()
    with pytest.raises(ConfigError, match="newer than this release"):
        postgres_connect(postgres_dsn)


def test_migrations_run_once_and_a_newer_file_is_refused(tmp_path):
    path = str(tmp_path / "a.db")
    connect(path).close()
    connect(path).close()  # a second start runs nothing again
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == ALL_VERSIONS
    raw.execute("INSERT INTO schema_version VALUES (?)", (LATEST + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(ConfigError, match="newer than this release"):
        connect(path)


def test_reading_needs_a_migrated_database(tmp_path):
    with pytest.raises(ConfigError, match="no audit database here"):
        connect(str(tmp_path / "none.db"), readonly=True)
    sqlite3.connect(str(tmp_path / "old.db")).close()
    with pytest.raises(ConfigError, match="start the proxy once"):
        connect(str(tmp_path / "old.db"), readonly=True)
    (tmp_path / "junk.db").write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(ConfigError, match="cannot open the audit database"):
        connect(str(tmp_path / "junk.db"))


def test_prune_deletes_in_chunks(opened):
    store, reader = opened
    store.open()
    store.write([rec(f"old{n}", float(n)) for n in range(7)] + [rec("new", 10_000.0)])
    store.close()
    db = reader()
    db.close()
    writable = connect(store.path) if isinstance(store, SqliteStore) else postgres_connect(store.dsn)
    try:
        assert run_prune(writable, before=100.0, chunk=3) == 7
        assert writable.execute("SELECT request_id FROM records").fetchall() == [("new",)]
        assert writable.execute("SELECT COUNT(*) FROM checks").fetchone() == (1,)
    finally:
        writable.close()


def test_shadow_rows_go_to_their_own_table_never_to_checks(opened):
    store, reader = opened
    store.open()
    row = {"kind": "shadow_check", "request_id": "a", "ts": 1.0, "route": "r", "phase": "input", "policy": "p",
           "subject": "0", "enforced_digest": "d1", "candidate_digest": "d2", "enforced_result": "pass",
           "enforced_label": "P0", "result": "violation", "label": "P2", "severity": 2, "agree": 0,
           "error_kind": None, "latency_ms": 5.0, "detail": {"reasoning": "r", "answer": "P2"}}
    store.write([rec("a", 1.0), row, {**row, "phase": "output", "agree": None, "result": "error"}])
    store.write([row])  # alone in a batch, too
    store.close()
    db = reader()
    assert db.execute("SELECT COUNT(*) FROM checks").fetchone() == (1,)
    stored = db.execute("SELECT phase, agree, result, detail FROM shadow_checks ORDER BY phase, agree").fetchall()
    assert [r[:3] for r in stored] == [("input", 0, "violation"), ("input", 0, "violation"), ("output", None, "error")]
    assert json.loads(stored[0][3]) == {"reasoning": "r", "answer": "P2"}
    db.close()
