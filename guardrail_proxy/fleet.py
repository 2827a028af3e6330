"""A worker's channel to its siblings under `serve --workers N` (workers.py starts and supervises them).

Each worker listens on a unix socket of its own, `<run dir>/worker-<slot>.sock`. The supervisor makes the run
dir (`make_run_dir`: mode 0700, so only the proxy's own user can connect) and removes it at exit; a run dir
left behind by a supervisor that was killed outright is removed by the next supervisor that starts on the
machine, once nothing in it is alive. A sibling connects and sends one line naming what it wants; the worker
answers `ACK` at once, then one JSON object, and closes the connection:

    metrics   {"worker": slot, "pid": pid, "digest": "<config digest>", "metrics": "<its own /metrics text>"}
    reload    {"worker": slot, "pid": pid, "reload": <ReloadResult.to_json()>}, after it reloaded itself

The worker that receives GET /metrics (or POST /admin/reload) asks every sibling at once and answers for the
whole fleet; metrics_fleet.py combines the pages. Two limits per question: the acknowledgement must come within
`ack_timeout_s` (a sibling that is stopped, wedged or gone is reported as not answering, quickly), and the
answer within the question's own limit (1 s for metrics, 60 s for a reload, which reads the policies and may
import litellm). A sibling that is gone, slow or still starting never makes /metrics fail or hang: it counts
as not answered (guardrail_worker_up 0). Why a socket per worker rather than prometheus_client's multiprocess
mode: that mode is switched on by an environment variable read at import, keeps gauges in mmapped files whose
combining rule is fixed per gauge at creation, and cannot carry the collectors read at scrape time (requests
in flight, classifier queues), which are most of what an operator looks at during an incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette

from .metrics_fleet import Page, merge

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("guardrail_proxy")

ACK = b"working\n"
ACK_TIMEOUT_S = 3.0  # connect, send the question, read ACK: a live worker's event loop does this in milliseconds
SCRAPE_TIMEOUT_S = 1.0  # a sibling's metrics page: well under Prometheus's default 10 s scrape timeout
RELOAD_TIMEOUT_S = 60.0  # a sibling's reload: reading policies, and maybe importing litellm (~2 s) off its loop
RUN_DIR_PREFIX = "guardrail-proxy-workers-"  # then the supervisor's pid and a random part
STALE_AFTER_S = 60.0  # a run dir untouched this long, whose supervisor and workers are gone, is removed


@dataclass(frozen=True)
class Fleet:
    slot: int  # this worker's place, 0 .. count - 1; a replaced worker takes the slot of the one it replaces
    count: int
    run_dir: Path
    scrape_timeout_s: float = SCRAPE_TIMEOUT_S
    reload_timeout_s: float = RELOAD_TIMEOUT_S
    ack_timeout_s: float = ACK_TIMEOUT_S

    def path(self, slot: int) -> Path:
        return self.run_dir / f"worker-{slot}.sock"

    def siblings(self) -> list[int]:
        return [slot for slot in range(self.count) if slot != self.slot]

    async def listen(self, app: Starlette) -> asyncio.AbstractServer:
        """Serve this worker's side of the channel (for as long as the returned server is open)."""
        path = self.path(self.slot)
        path.unlink(missing_ok=True)  # the socket file of the worker this one replaces

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                async with asyncio.timeout(self.reload_timeout_s):
                    command = (await reader.readline()).decode(errors="replace").strip()
                    writer.write(ACK)
                    await writer.drain()
                    body = await self.answer(app, command)
                    writer.write(json.dumps(body).encode())
                    await writer.drain()
            except (OSError, TimeoutError):
                pass  # the asking sibling gave up, or went away: nobody is left to tell
            finally:
                writer.close()

        return await asyncio.start_unix_server(answer, path=str(path))

    async def answer(self, app: Starlette, command: str) -> dict[str, Any]:
        body: dict[str, Any] = {"worker": self.slot, "pid": os.getpid()}
        runtime: Runtime | None = getattr(app.state, "runtime", None)
        if runtime is None:
            body["error"] = "starting or stopping"
        elif command == "metrics":
            body["digest"] = runtime.config.digest
            body["metrics"] = runtime.metrics.render()
        elif command == "reload":
            body["reload"] = (await runtime.reload()).to_json()
        else:
            body["error"] = f"unknown command {command[:40]!r}"
        return body

    async def ask(self, slot: int, command: str, timeout: float) -> dict[str, Any] | str:
        """One sibling's answer, or why there is none, in words. The acknowledgement must come within
        ack_timeout_s (or `timeout`, if shorter), the answer within `timeout` of the question."""
        ack_wait = min(self.ack_timeout_s, timeout)
        start = asyncio.get_running_loop().time()
        ack_by, deadline = start + ack_wait, start + timeout
        silent = f"did not answer within {ack_wait:g} s (stopped or overloaded)"
        try:
            async with asyncio.timeout_at(ack_by):
                reader, writer = await asyncio.open_unix_connection(str(self.path(slot)))
        except (FileNotFoundError, ConnectionRefusedError):
            return "not listening (starting, stopping or gone)"
        except TimeoutError:
            return silent
        except OSError as exc:
            return f"cannot connect: {exc}"
        try:
            try:
                async with asyncio.timeout_at(ack_by):
                    writer.write(command.encode() + b"\n")
                    ack = await reader.readline()
            except TimeoutError:
                return silent
            if ack != ACK:
                return "closed the connection without answering"
            try:
                async with asyncio.timeout_at(deadline):
                    data = await reader.read()
            except TimeoutError:
                return f"did not finish within {timeout:g} s"
        except OSError as exc:
            return f"connection failed: {exc}"
        finally:
            writer.close()
        try:
            reply = json.loads(data)
        except ValueError:
            return "answered something unreadable"
        return reply if isinstance(reply, dict) else "answered something unreadable"

    async def scrape(self, runtime: Runtime) -> str:
        """The fleet's /metrics: this worker's own page merged with every sibling's that answered in time."""
        slots = self.siblings()
        replies = await asyncio.gather(*(self.ask(slot, "metrics", self.scrape_timeout_s) for slot in slots))
        pages = [Page(self.slot, os.getpid(), runtime.metrics.render(), runtime.config.digest)]
        for slot, reply in zip(slots, replies, strict=True):
            got = reply if isinstance(reply, dict) else {}
            text, pid, digest = got.get("metrics"), got.get("pid"), got.get("digest")
            pages.append(Page(slot, pid if isinstance(pid, int) else None, text if isinstance(text, str) else None,
                              digest if isinstance(digest, str) else None))
        return merge(pages)

    async def reload(self, runtime: Runtime) -> tuple[bool, dict[str, Any]]:
        """Reload this worker and every sibling at once. (all applied, body): the body is this worker's result
        plus `workers`, one entry per worker; a sibling that did not answer counts as not reloaded."""
        slots = self.siblings()
        own, replies = await asyncio.gather(
            runtime.reload(), asyncio.gather(*(self.ask(slot, "reload", self.reload_timeout_s) for slot in slots)))
        workers: list[dict[str, Any]] = [{"worker": self.slot, "pid": os.getpid(), **own.to_json()}]
        for slot, reply in zip(slots, replies, strict=True):
            got = reply if isinstance(reply, dict) else {}
            result = got.get("reload")
            if isinstance(result, dict):
                workers.append({"worker": slot, "pid": got.get("pid"), **result})
            else:
                error = got.get("error") or (reply if isinstance(reply, str) else "answered no reload result")
                workers.append({"worker": slot, "pid": got.get("pid"), "reloaded": False, "error": error})
        workers.sort(key=lambda w: int(w["worker"]))
        return all(w.get("reloaded") is True for w in workers), {**own.to_json(), "workers": workers}


def make_run_dir(parent: Path | None = None) -> Path:
    """A fresh run dir for this supervisor's worker sockets (mode 0700), after removing stale ones."""
    parent = Path(tempfile.gettempdir()) if parent is None else parent
    for stale in stale_run_dirs(parent, time.time()):
        log.info("removing %s, left behind by a supervisor that is gone", stale)
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-", dir=parent))


def stale_run_dirs(parent: Path, now: float) -> list[Path]:
    """Run dirs in `parent` that are this user's, untouched for STALE_AFTER_S, whose supervisor's pid is not
    running and none of whose worker sockets accepts a connection (a worker that outlived its supervisor)."""
    found = []
    for path in parent.glob(f"{RUN_DIR_PREFIX}*-*"):
        pid_text = path.name.removeprefix(RUN_DIR_PREFIX).split("-", 1)[0]
        try:
            info = path.lstat()
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if (pid <= 0 or path.is_symlink() or not path.is_dir() or info.st_uid != os.getuid()
                or now - info.st_mtime < STALE_AFTER_S or running(pid)):
            continue
        if not any(accepts(sock) for sock in path.glob("worker-*.sock")):
            found.append(path)
    return found


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def accepts(path: Path) -> bool:
    """Whether a unix socket has a listener (any outcome but 'refused' or 'not there' counts as yes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    return True
