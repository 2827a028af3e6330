"""A real PostgreSQL server for the tests, started on 127.0.0.1 from Debian's `postgresql` binaries.

`.ci/run` installs them and sets GUARDRAIL_REQUIRE_POSTGRES=1, which turns "binaries not found" from a
visible skip into a failure, so CI can never pass without having run the PostgreSQL tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REQUIRE = "GUARDRAIL_REQUIRE_POSTGRES"


def binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    root: Path
    bin: Path
    port: int
    as_user: list[str]

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://guardrail@127.0.0.1:{self.port}/{database}"

    def run(self, *argv: str) -> None:
        subprocess.run([*self.as_user, *argv], check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> PostgresServer | None:
    """A running server, or None when the binaries are absent."""
    bin_dir = binaries()
    if bin_dir is None:
        return None
    root = Path(tempfile.mkdtemp(prefix="guardrail-pg-"))
    root.chmod(0o755)
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(root, bin_dir, free_port(), as_user)
    data = root / "data"
    server.run(str(bin_dir / "initdb"), "-D", str(data), "-U", "guardrail", "--auth=trust", "-E", "UTF8",
               "--no-sync")
    options = f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
    server.run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
    return server
