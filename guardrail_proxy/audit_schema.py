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
    (3, (
        # A reviewer's mark on one policy's verdict in one phase of a request (audit_reviews.py): the verdict was
        # right (correct = 1), or it should have been `label`. Every mark is kept; the newest one counts.
        """CREATE TABLE IF NOT EXISTS reviews (
            review_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, phase TEXT NOT NULL, policy TEXT NOT NULL,
            verdict_label TEXT, correct INTEGER NOT NULL, label TEXT, note TEXT, reviewer TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS reviews_request ON reviews (request_id, phase, policy, ts)",
        "CREATE INDEX IF NOT EXISTS reviews_ts ON reviews (ts)",
        # A candidate policy's verdict beside the enforced one, on live traffic (shadow checks): never part of a
        # decision, so never in `checks`. `agree` is 1 when both found the same label, null when either failed;
        # `detail` is JSON (reasoning, rationale, the raw answer).
        """CREATE TABLE IF NOT EXISTS shadow_checks (
            request_id TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, route TEXT NOT NULL, phase TEXT NOT NULL,
            policy TEXT NOT NULL, subject TEXT, enforced_digest TEXT, candidate_digest TEXT NOT NULL,
            enforced_result TEXT, enforced_label TEXT, result TEXT NOT NULL, label TEXT, severity INTEGER,
            agree INTEGER, error_kind TEXT, latency_ms DOUBLE PRECISION, detail TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS shadow_policy_ts ON shadow_checks (policy, ts)",
        "CREATE INDEX IF NOT EXISTS shadow_request ON shadow_checks (request_id)",
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
