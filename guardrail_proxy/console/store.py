"""The console's one connection to the audit store, used off the event loop, in a thread of its own.

Every question runs in the store's own single worker thread (a ThreadPoolExecutor with one worker, like the
audit writer's), one at a time. Not in the event loop's default pool: that pool is small and shared (aiohttp's
DNS lookups, config reloads), and console requests queued behind a slow one would hold its threads and stall
the proxy's own traffic. Here they wait in this executor's queue and hold nothing.

Each question has a time limit, counted from when it was asked, so a request never hangs: a question still
queued at its deadline is not started; on SQLite a progress handler interrupts a statement that runs past
it; on PostgreSQL the session's statement_timeout bounds every statement, and the deadline is checked before
each one. Either way the console answers 503 with the reason.

The connection is opened at the first question (the proxy's own writer has migrated the schema by then) and
reopened after a failure. SQLite in WAL mode lets the console read while the writer commits; a reviewer's
mark waits up to the busy timeout for the writer's lock, in the worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg

from ..audit_postgres import connect as postgres_connect
from ..audit_sqlite import connect as sqlite_connect
from ..audit_store import postgres_dsn, sqlite_path
from ..config import AuditConfig
from ..errors import ConfigError, GuardrailUnavailable
from ..settings import Settings

T = TypeVar("T")

STORES = ("sqlite", "postgres")
QUERY_LIMIT_S = 10.0  # one page's questions; the export's download gets EXPORT_LIMIT_S (routes.py)
PROGRESS_STEPS = 20_000  # SQLite virtual-machine steps between two looks at the clock


def unsupported(audit: AuditConfig) -> str | None:
    """Why the console cannot work with this store, or None."""
    if audit.store in STORES:
        return None
    return (f"The review console reads the sqlite or postgres audit store; this proxy writes its records to "
            f"'{audit.store}' (audit.store), which keeps no reviews and answers no queries. Switch audit.store to "
            "sqlite (a local file) or postgres, and restart the proxy.")


class TooSlow(Exception):
    """A question ran past its deadline (raised in the worker thread, turned into a 503 by `ask`)."""


class Deadline:
    """The connection as a question sees it: every statement first checks the question's deadline."""

    def __init__(self, db: Any, deadline: float) -> None:
        self.db, self.deadline = db, deadline

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if time.monotonic() >= self.deadline:
            raise TooSlow
        return self.db.execute(sql, params)


class ConsoleStore:
    def __init__(self, audit: AuditConfig, settings: Settings, source: str,
                 limit_s: float = QUERY_LIMIT_S) -> None:
        self.audit, self.settings, self.source, self.limit_s = audit, settings, source, limit_s
        self.executor: ThreadPoolExecutor | None = None  # created at the first question, shut down by close()
        self.db: Any = None  # touched only in the executor's thread

    @property
    def problem(self) -> str | None:
        return unsupported(self.audit)

    async def run(self, question: Callable[[Any], T], limit_s: float | None = None) -> T:
        """question(db) in the store's thread, within `limit_s` (the store's limit when None) from now.
        GuardrailUnavailable (503) when the store cannot answer in time or at all."""
        limit = self.limit_s if limit_s is None else limit_s
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-store")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.ask, question, time.monotonic() + limit, limit)

    def ask(self, question: Callable[[Any], T], deadline: float, limit: float) -> T:
        try:
            if time.monotonic() >= deadline:
                raise TooSlow
            if self.db is None:
                self.db = self.open()
            with self.limited(deadline):
                return question(Deadline(self.db, deadline))
        except TooSlow:
            raise self.too_slow(limit) from None
        except psycopg.errors.QueryCanceled:
            raise self.too_slow(limit) from None
        except sqlite3.OperationalError as exc:
            if time.monotonic() >= deadline and "interrupt" in str(exc):
                raise self.too_slow(limit) from None
            raise self.failed(exc) from None
        except (sqlite3.Error, psycopg.Error) as exc:
            raise self.failed(exc) from None
        except ConfigError as exc:
            raise GuardrailUnavailable(f"the audit store cannot be opened: {exc.message}") from None

    @staticmethod
    def too_slow(limit: float) -> GuardrailUnavailable:
        return GuardrailUnavailable(f"the audit store did not answer within {limit:g} s, the console's limit for "
                                    "one page; narrow the filter (a shorter time range, one route or policy) or "
                                    "try again when the store is less busy")

    def failed(self, exc: Exception) -> GuardrailUnavailable:
        self.drop()
        return GuardrailUnavailable(f"the audit store could not answer: {type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())[:300]}")

    @contextlib.contextmanager
    def limited(self, deadline: float) -> Iterator[None]:
        """On SQLite, interrupt any statement still running at `deadline`."""
        if not isinstance(self.db, sqlite3.Connection):
            yield
            return
        self.db.set_progress_handler(lambda: int(time.monotonic() >= deadline), PROGRESS_STEPS)
        try:
            yield
        finally:
            self.db.set_progress_handler(None, PROGRESS_STEPS)

    def open(self) -> Any:
        if self.audit.store == "sqlite":
            return sqlite_connect(sqlite_path(self.audit))
        assert self.audit.store == "postgres" and self.audit.dsn_env is not None  # `problem` is checked first
        db = postgres_connect(postgres_dsn(self.audit.dsn_env, self.settings, self.source, "audit.dsn_env"))
        try:
            db.execute(f"SET statement_timeout = {max(1, round(self.limit_s * 1000))}")  # a number we made
        except psycopg.Error:
            db.close()
            raise
        return db

    def drop(self) -> None:
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error, psycopg.Error):
                self.db.close()
            self.db = None

    async def close(self) -> None:
        """Close the connection in its thread (after any question still queued), then the thread."""
        executor, self.executor = self.executor, None
        if executor is None:
            return
        await asyncio.get_running_loop().run_in_executor(executor, self.drop)
        executor.shutdown(wait=False)
