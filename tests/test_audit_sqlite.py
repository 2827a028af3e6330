"""The SQLite store: migrations, upserts, policy texts once per digest, and refusing what it cannot read."""

from __future__ import annotations

import sqlite3

import pytest

from guardrail_proxy.audit_schema import LATEST
from guardrail_proxy.audit_sqlite import SqliteStore, connect
from guardrail_proxy.errors import ConfigError


def rec(request_id: str, ts: float, result: str = "pass") -> dict:
    return {"request_id": request_id, "ts": ts, "route": "r", "model": "m", "status": 200, "decision": "allow",
            "phases": [{"phase": "input", "checks": [{"policy": "p", "policy_digest": "d1", "result": result}]}]}


def test_records_checks_and_policies(tmp_path):
    path = str(tmp_path / "a.db")
    store = SqliteStore(path)
    store.open()
    store.put_policies([("d1", "p", "policy text v1")])
    store.put_policies([("d1", "p", "policy text v1"), ("d2", "p", "policy text v2")])
    store.write([rec("a", 1.0), rec("b", 2.0, "violation")])
    store.write([rec("a", 1.0, "violation")])  # the same request again replaces its row and checks
    store.close()
    db = connect(path, readonly=True)
    assert db.execute("SELECT COUNT(*), SUM(flagged) FROM records").fetchone() == (2, 2)
    assert db.execute("SELECT COUNT(*) FROM checks").fetchone() == (2,)
    assert db.execute("SELECT digest FROM policies ORDER BY digest").fetchall() == [("d1",), ("d2",)]
    assert db.execute("SELECT journal_mode FROM pragma_journal_mode").fetchone() == ("wal",)
    db.close()


def test_migrations_run_once_and_a_newer_file_is_refused(tmp_path):
    path = str(tmp_path / "a.db")
    connect(path).close()
    connect(path).close()  # a second start runs nothing again
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(LATEST,)]
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
