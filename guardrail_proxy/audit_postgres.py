"""The audit store for several proxy replicas: one PostgreSQL database, the same schema and the same
`audit` command as SQLite. psycopg 3 runs in the audit writer's own thread, so the event loop never waits on
the database. Replicas starting together migrate one at a time (an advisory lock); a batch is one
transaction, so a record is either committed with all its checks or not at all.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from .audit_rows import CHECK_COLUMNS, RECORD_COLUMNS, SHADOW_COLUMNS, is_shadow, rows_of, shadow_values
from .audit_schema import to_run
from .errors import ConfigError

MIGRATION_LOCK = 7_340_011  # any fixed number: the advisory lock replicas take while migrating
UPDATES = ", ".join(f"{c} = EXCLUDED.{c}" for c in RECORD_COLUMNS[1:])
INSERT_RECORD = (f"INSERT INTO records ({', '.join(RECORD_COLUMNS)}) VALUES ({', '.join('%s' for _ in RECORD_COLUMNS)})"
                 f" ON CONFLICT (request_id) DO UPDATE SET {UPDATES}")
INSERT_CHECK = f"INSERT INTO checks ({', '.join(CHECK_COLUMNS)}) VALUES ({', '.join('%s' for _ in CHECK_COLUMNS)})"
INSERT_SHADOW = (f"INSERT INTO shadow_checks ({', '.join(SHADOW_COLUMNS)}) "
                 f"VALUES ({', '.join('%s' for _ in SHADOW_COLUMNS)})")


class Placeholders:
    """A psycopg connection that takes the `?` placeholders audit_query.py writes (psycopg wants %s)."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.connection.execute(sql.replace("?", "%s"), list(params))

    def close(self) -> None:
        self.connection.close()


def connect(dsn: str, *, readonly: bool = False) -> Placeholders:
    """A connection with the schema migrated (or, read-only, checked); ConfigError when it cannot be."""
    try:
        connection = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())  # libpq's message spans lines
        raise ConfigError("audit", "dsn", f"cannot connect to the PostgreSQL audit store: {reason}") from None
    except psycopg.Error:  # a malformed connection string: its message may quote it, password included
        raise ConfigError("audit", "dsn", "the PostgreSQL connection string is not valid (libpq could not parse "
                                          "it; the message is not shown, as it may hold the password)") from None
    try:
        migrate(connection, readonly)
    except BaseException:
        connection.close()
        raise
    return Placeholders(connection)


def version_of(connection: psycopg.Connection[Any]) -> int:
    exists = connection.execute("SELECT to_regclass('schema_version')").fetchone()
    if not exists or exists[0] is None:
        return 0
    row = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0) if row else 0


def migrate(connection: psycopg.Connection[Any], readonly: bool) -> None:
    if readonly:
        to_run(version_of(connection), readonly, "audit dsn")
        return
    connection.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
    try:
        for version, statements in to_run(version_of(connection), readonly, "audit dsn"):
            with connection.transaction():
                connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                for statement in statements:
                    connection.execute(statement)  # fixed DDL from audit_schema
                connection.execute("INSERT INTO schema_version (version) VALUES (%s)", [version])
    finally:
        connection.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])


class PostgresStore:
    """Used from the writer's thread only."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.db: Placeholders | None = None

    def open(self) -> None:
        self.db = connect(self.dsn)

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        if self.db is None or self.db.connection.broken or self.db.connection.closed:
            self.close()
            self.open()  # after a restart of the server or a dropped connection; raises while it is down
        assert self.db is not None
        rows = [rows_of(r) for r in records if not is_shadow(r)]
        shadows = [shadow_values(r) for r in records if is_shadow(r)]
        connection = self.db.connection
        with connection.transaction(), connection.cursor() as cursor:
            if rows:
                cursor.execute("DELETE FROM checks WHERE request_id = ANY(%s)", [[r.record[0] for r in rows]])
                cursor.executemany(INSERT_RECORD, [r.record for r in rows])
                cursor.executemany(INSERT_CHECK, [c for r in rows for c in r.checks])
            if shadows:
                cursor.executemany(INSERT_SHADOW, shadows)

    def put_policies(self, policies: Sequence[tuple[str, str, str]]) -> None:
        assert self.db is not None, "open() first"
        now = time.time()
        connection = self.db.connection
        with connection.transaction(), connection.cursor() as cursor:
            cursor.executemany("INSERT INTO policies (digest, policy_id, text, first_seen) VALUES (%s, %s, %s, %s) "
                               "ON CONFLICT (digest) DO NOTHING", [(d, i, t, now) for d, i, t in policies])

    def close(self) -> None:
        if self.db is not None:
            with contextlib.suppress(psycopg.Error):
                self.db.close()
            self.db = None
