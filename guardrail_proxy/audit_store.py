"""Where audit records go: one small interface, three stores. Each is used from the writer's thread only.

  sqlite   the embedded default (audit_sqlite.py); the `audit` command queries it
  postgres one database for several replicas (audit_postgres.py), the same schema and command
  jsonl    one JSON line per request appended to a file, for users who ship files elsewhere
  log      the same line on the `guardrail_proxy.audit` logger (stderr), for container log pipelines

A batch may also hold shadow rows (shadow.py; "kind": "shadow_check"): the databases put them in
`shadow_checks`, the jsonl and log stores write them as lines of their own, marked by that "kind".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from .audit_postgres import PostgresStore
from .audit_sqlite import SqliteStore
from .config import AuditConfig
from .errors import ConfigError
from .settings import Settings

DEFAULT_DB = "guardrail-audit.db"


class AuditStore(Protocol):
    def open(self) -> None: ...

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        """Store a batch durably, or raise; the writer retries nothing and reports the fault."""

    def put_policies(self, policies: Sequence[tuple[str, str, str]]) -> None: ...

    def close(self) -> None: ...


class JsonlStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self.file: IO[str] | None = None

    def open(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115  # closed in close()

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        assert self.file is not None, "open() first"
        self.file.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self.file.flush()

    def put_policies(self, policies: Sequence[tuple[str, str, str]]) -> None:
        """Lines carry each verdict's policy digest; the texts themselves are the operator's files."""

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class LogStore:
    def __init__(self) -> None:
        self.logger = logging.getLogger("guardrail_proxy.audit")

    def open(self) -> None:
        pass

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        for record in records:
            self.logger.info(json.dumps(record, ensure_ascii=False))

    def put_policies(self, policies: Sequence[tuple[str, str, str]]) -> None:
        pass

    def close(self) -> None:
        pass


def sqlite_path(config: AuditConfig) -> str:
    return config.path or DEFAULT_DB


def postgres_dsn(variable: str, settings: Settings, source: str, field: str) -> str:
    """The connection string held by `variable`; a ConfigError naming where the variable was named."""
    dsn = settings.secret(variable)
    if not dsn:
        raise ConfigError(source, field, f"environment variable {variable} is not set; the audit store needs its "
                                         "connection string")
    return dsn


def build_store(config: AuditConfig, settings: Settings, source: str) -> AuditStore:
    if config.store == "sqlite":
        return SqliteStore(sqlite_path(config))
    if config.store == "postgres":
        assert config.dsn_env is not None  # AuditConfig's validator
        return PostgresStore(postgres_dsn(config.dsn_env, settings, source, "audit.dsn_env"))
    if config.store == "jsonl":
        assert config.path is not None  # AuditConfig's validator
        return JsonlStore(config.path)
    return LogStore()
