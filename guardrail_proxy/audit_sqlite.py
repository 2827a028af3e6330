"""The embedded audit store: one SQLite file in WAL mode, written by the audit writer's own thread.

WAL lets the `audit` command read while the proxy writes. Each batch is one transaction; `synchronous=FULL`
makes a committed batch survive a power cut as well as a crash of the process (`NORMAL` would keep it
through a process crash only). The schema comes from audit_schema.py and is migrated at open.

A group is written with three statements whatever its size: its rows travel as one JSON array that SQLite
unpacks (`json_each`). Python's sqlite3 gives up the GIL at every statement, and each time it must win it
back from a busy event loop; one statement per row made a busy proxy's writer fall seconds behind.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .audit_rows import CHECK_COLUMNS, RECORD_COLUMNS, SHADOW_COLUMNS, is_shadow, rows_of, shadow_values
from .audit_schema import to_run
from .errors import ConfigError


def from_json_rows(table: str, columns: tuple[str, ...], verb: str = "INSERT") -> str:
    """One statement inserting every row of a JSON array of rows (each a JSON array in column order)."""
    picks = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(columns)))
    return f"{verb} INTO {table} ({', '.join(columns)}) SELECT {picks} FROM json_each(?)"


INSERT_RECORDS = from_json_rows("records", RECORD_COLUMNS, "INSERT OR REPLACE")
INSERT_CHECKS = from_json_rows("checks", CHECK_COLUMNS)
INSERT_SHADOW = from_json_rows("shadow_checks", SHADOW_COLUMNS)
DELETE_CHECKS = "DELETE FROM checks WHERE request_id IN (SELECT value FROM json_each(?))"


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the schema migrated (or, read-only, checked); ConfigError when it cannot be."""
    try:
        if readonly:
            if not Path(path).exists():
                raise ConfigError(path, "audit", "no audit database here (the proxy creates it on its first request)")
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        migrate(db, path, readonly)
        return db
    except sqlite3.Error as exc:
        raise ConfigError(path, "audit", f"cannot open the audit database: {exc}") from None


def version_of(db: sqlite3.Connection) -> int:
    """The last migration the database ran; 0 for a new file."""
    try:
        row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:  # no such table: a new file
        return 0
    return int(row[0] or 0)


def migrate(db: sqlite3.Connection, path: str, readonly: bool) -> None:
    for version, statements in to_run(version_of(db), readonly, path):
        db.execute("BEGIN IMMEDIATE")
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        for statement in statements:
            db.execute(statement)
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        db.execute("COMMIT")


class SqliteStore:
    """Used from one thread at a time (the writer's); `open` runs there too."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db: sqlite3.Connection | None = None

    def open(self) -> None:
        self.db = connect(self.path)

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        assert self.db is not None, "open() first"
        rows = [rows_of(r) for r in records if not is_shadow(r)]
        shadows = [shadow_values(r) for r in records if is_shadow(r)]
        db = self.db
        db.execute("BEGIN")
        try:
            if rows:
                db.execute(DELETE_CHECKS, (json.dumps([r.record[0] for r in rows]),))
                db.execute(INSERT_RECORDS, (json.dumps([r.record for r in rows], ensure_ascii=False),))
                db.execute(INSERT_CHECKS, (json.dumps([c for r in rows for c in r.checks], ensure_ascii=False),))
            if shadows:
                db.execute(INSERT_SHADOW, (json.dumps(shadows, ensure_ascii=False),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def put_policies(self, policies: Sequence[tuple[str, str, str]]) -> None:
        """(digest, policy id, text) of every policy loaded: each text is stored once per digest."""
        assert self.db is not None, "open() first"
        now = time.time()
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR IGNORE INTO policies (digest, policy_id, text, first_seen) VALUES (?, ?, ?, ?)",
                            [(d, i, t, now) for d, i, t in policies])
        self.db.execute("COMMIT")

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
