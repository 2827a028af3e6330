"""The audit database's schema, as numbered migrations applied in order at start-up. Pure.

A database remembers the last migration it ran (`schema_version`); start-up runs the newer ones in one
transaction each, so a proxy of a newer release upgrades the file in place and an older one refuses a file
from a newer release instead of misreading it. The SQL is the common subset of SQLite and PostgreSQL.
`to_run` decides, for either store, what a connection runs (or refuses) given the version it found.
"""

from __future__ import annotations

from .errors import ConfigError

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (
        """CREATE TABLE IF NOT EXISTS policies (
            digest TEXT PRIMARY KEY, policy_id TEXT NOT NULL, text TEXT NOT NULL, first_seen DOUBLE PRECISION
        )""",
        """CREATE TABLE IF NOT EXISTS records (
            request_id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, route TEXT NOT NULL, model TEXT NOT NULL,
            client TEXT, stream INTEGER NOT NULL, decision TEXT NOT NULL, status INTEGER NOT NULL, error TEXT,
            upstream_called INTEGER NOT NULL, upstream_cancelled INTEGER NOT NULL, duration_ms DOUBLE PRECISION,
            unchecked INTEGER NOT NULL, flagged INTEGER NOT NULL, record TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS checks (
            request_id TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, phase TEXT, policy TEXT, policy_digest TEXT,
            result TEXT, label TEXT, severity INTEGER, action TEXT, error_kind TEXT, latency_ms DOUBLE PRECISION
        )""",
        "CREATE INDEX IF NOT EXISTS records_ts ON records (ts)",
        "CREATE INDEX IF NOT EXISTS records_route_ts ON records (route, ts)",
        "CREATE INDEX IF NOT EXISTS checks_request ON checks (request_id)",
        "CREATE INDEX IF NOT EXISTS checks_policy_ts ON checks (policy, ts)",
    )),
    (2, (
        "CREATE INDEX IF NOT EXISTS checks_ts ON checks (ts)",  # prune: checks past retention, without a scan
    )),
)

LATEST = MIGRATIONS[-1][0]


def to_run(current: int, readonly: bool, source: str) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """The migrations a connection to a database at `current` must run; none for a reader, which needs the
    latest schema. ConfigError for a database of a newer release, or a reader's unmigrated one."""
    if current > LATEST:
        raise ConfigError(source, "audit", f"the database is at schema version {current}, newer than this release "
                                           f"knows ({LATEST}); upgrade the proxy")
    if readonly:
        if current < LATEST:
            raise ConfigError(source, "audit", f"the database is at schema version {current}; start the proxy "
                                               "once to migrate it")
        return ()
    return tuple(m for m in MIGRATIONS if m[0] > current)
