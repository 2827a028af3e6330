"""`guardrail-proxy serve --workers N`: N worker processes serving one port, and the supervisor that runs them.

The supervisor (the process the operator started) checks the config as `serve` always does, binds the listening
sockets (the main port and, if configured, the ops port) once, and forks the workers, which inherit them; each
worker runs serving.Serving on those sockets, exactly as a single process would. Why inherited sockets rather
than SO_REUSEPORT: a port already taken fails once, in the supervisor, before any worker exists; port 0 means one
port shared by all; every worker accepts from one queue, so a connection waiting in it is taken by whichever
worker is free, never stranded in the backlog of a worker that just died; the ops port is shared the same way;
and nothing else can bind the port beside the proxy. Why fork rather than spawning fresh interpreters: the
supervisor has already imported the stack (litellm included, when an upstream needs it), so a worker, or its
replacement, starts in a fraction of a second and shares those pages copy-on-write. The supervisor runs no
event loop and no threads, which is what makes forking safe.

- Start-up: worker 0 starts alone; the others are forked once it serves. A worker 0 that cannot start (its
  app's start-up failed: an audit store that cannot be opened, say) stops everything with its exit code, so
  the error is reported once, not N times; nothing is restarted.
- Signals go to the supervisor, which passes each one on to every worker, over a pipe of each worker's own
  (worker_process.py): SIGTERM and SIGINT drain (a second and a third signal act as in serving.py), SIGHUP
  reloads (one that comes while a worker is still starting waits in its pipe, and the worker reloads once it
  has started). A worker ignores those signals sent to it directly, and drains by itself when its supervisor
  is gone.
- A worker that exits while the supervisor is not stopping is logged and replaced in the same slot: at once if
  it had served for `MIN_UPTIME_S`, else after a back-off that doubles up to `MAX_BACKOFF_S`. A new worker
  re-reads the config file as it starts (worker_process.worker_config), so a replacement serves what its
  siblings applied on `POST /admin/reload`, which the supervisor never sees. The supervisor's own copy is the
  fallback when the file does not load: it re-reads the file on each SIGHUP and keeps it when it loads and
  changes no restart-only field, i.e. when the workers will have applied it too.
- The worker sockets live in a run dir (fleet.make_run_dir) that the supervisor removes when it exits; one left
  behind by a supervisor killed outright is removed by the next one to start, once nothing in it is alive.
- Exit: 0 when every worker drained and exited 0; a start-up failure's code; 1 otherwise. Workers still running
  `KILL_MARGIN_S` after the drain and the shutdown timeout have passed are killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .app import create_app
from .errors import ConfigError
from .fleet import Fleet, make_run_dir
from .loader import LoadedConfig, load_config
from .reload import needs_restart
from .runtime import warm_imports
from .serving import Sockets
from .settings import Settings
from .worker_process import COMMANDS, WorkerServing, worker_config

log = logging.getLogger("guardrail_proxy")

MIN_UPTIME_S = 10.0  # a worker that dies sooner than this counts as crash-looping
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 30.0
KILL_MARGIN_S = 10.0
STARTUP_FAILURE = 3  # uvicorn's exit code when the app's start-up fails
BACKLOG = 2048  # uvicorn's default
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def restart_delay(quick_deaths: int) -> float:
    """Seconds before a dead worker is replaced, after `quick_deaths` deaths in a row each within MIN_UPTIME_S
    of its start (0: it had been serving for a while). Pure."""
    if quick_deaths <= 0:
        return 0.0
    return min(FIRST_BACKOFF_S * 2 ** (quick_deaths - 1), MAX_BACKOFF_S)


def describe_exit(code: int) -> str:
    """A waitpid status as os.waitstatus_to_exitcode gives it (negative: the signal that killed it), in words."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def bind(host: str, port: int, source: str, field_name: str) -> socket.socket:
    """A listening TCP socket, bound once here and inherited by every worker; ConfigError when it cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise ConfigError(source, field_name, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


@dataclass
class Worker:
    slot: int
    pid: int
    ready_fd: int  # the read end of a pipe the worker writes one byte to once its listeners serve
    control_fd: int  # the write end of a pipe the supervisor passes the signals on through
    started: float
    ready: bool = False

    @property
    def fds(self) -> list[int]:
        """The supervisor's ends of this worker's pipes that are still open."""
        return [fd for fd in (self.ready_fd, self.control_fd) if fd >= 0]


def supervise(config: LoadedConfig, settings: Settings, host: str, port: int, count: int) -> int:
    """Run `count` workers on host:port until they have all exited; the exit code (see the module docstring).
    Binds the sockets (ConfigError, before anything else exists), makes the run dir and the signal pipe, and
    releases all of them at the end."""
    server, source = config.proxy.server, str(config.path)
    main = bind(host, port, source, "server.port")
    try:
        ops = None if server.ops_port is None else bind(server.ops_host or host, server.ops_port, source,
                                                        "server.ops_port")
    except ConfigError:
        main.close()
        raise
    sockets, run_dir = Sockets(main, ops), make_run_dir()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (*FORWARDED, signal.SIGCHLD)}
    signal.set_wakeup_fd(wake_w)  # a signal's number lands in the pipe; the loop reads it there
    supervisor = Supervisor(config, settings, host, port, count, sockets, run_dir, wake_r, wake_w)
    try:
        warm_imports(config)
        ops_note = f", ops port {ops.getsockname()[1]}" if ops else ""
        log.info("supervisor (pid %d): %d workers on %s:%d%s", os.getpid(), count, host, main.getsockname()[1],
                 ops_note)
        supervisor.spawn(0)
        return supervisor.loop()
    finally:
        signal.set_wakeup_fd(-1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        supervisor.close_sockets()
        for fd in (wake_r, wake_w, *(fd for w in supervisor.workers.values() for fd in w.fds)):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(run_dir, ignore_errors=True)


class Supervisor:
    """The supervisor's state: its workers by slot and what it is waiting for. `supervise` owns the sockets,
    the run dir and the signal pipe it is given."""

    def __init__(self, config: LoadedConfig, settings: Settings, host: str, port: int, count: int,
                 sockets: Sockets, run_dir: Path, wake_r: int, wake_w: int) -> None:
        self.config, self.settings, self.host, self.port, self.count = config, settings, host, port, count
        self.sockets, self.run_dir, self.wake_r, self.wake_w = sockets, run_dir, wake_r, wake_w
        self.workers: dict[int, Worker] = {}  # by slot
        self.due: dict[int, float] = {}  # slot -> when its replacement is forked
        self.quick_deaths: dict[int, int] = {}
        self.stop_codes: list[int] = []
        self.signals = 0  # SIGTERM / SIGINT received
        self.kill_at: float | None = None
        self.served_once = False  # some worker has served: from then on, a worker that cannot start is retried
        self.failed_start: int | None = None

    def loop(self) -> int:
        while True:
            self.reap()
            if self.stopping and not self.workers:
                return self.exit_code()
            now = time.monotonic()
            if self.kill_at is not None and now >= self.kill_at:
                for worker in self.workers.values():
                    log.error("worker %d (pid %d) is still running after the shutdown timeout: killing it",
                              worker.slot, worker.pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)
                self.kill_at = None
            for slot, at in sorted(self.due.items()):
                if at <= now and not self.stopping:
                    del self.due[slot]
                    self.spawn(slot)
            wake_ups = [t for t in (*self.due.values(), self.kill_at) if t is not None]
            timeout = max(0.0, min(wake_ups) - time.monotonic()) if wake_ups else None
            waiting = {w.ready_fd: w for w in self.workers.values() if w.ready_fd >= 0}
            readable, _, _ = select.select([self.wake_r, *waiting], [], [], timeout)
            for fd in readable:
                if fd == self.wake_r:
                    for number in self.read_signals():
                        self.on_signal(number)
                else:
                    self.on_ready(waiting[fd])

    @property
    def stopping(self) -> bool:
        return self.signals > 0 or self.failed_start is not None

    def read_signals(self) -> bytes:
        try:
            return os.read(self.wake_r, 512)
        except BlockingIOError:
            return b""

    def on_signal(self, number: int) -> None:
        if number == signal.SIGCHLD:
            return  # the loop reaps
        name = signal.Signals(number).name
        if number == signal.SIGHUP:
            if self.stopping:
                return
            log.info("SIGHUP: reloading every worker")
            self.refresh()
        else:
            self.signals += 1
            if self.signals == 1:
                log.info("%s: draining %d workers", name, len(self.workers))
                self.due.clear()
                self.close_sockets()  # the workers hold their own copies until each has drained
                server = self.config.proxy.server
                self.kill_at = time.monotonic() + server.drain_s + server.shutdown_timeout_s + KILL_MARGIN_S
        for worker in self.workers.values():
            with contextlib.suppress(OSError):  # a worker that just died: reap() deals with it
                os.write(worker.control_fd, COMMANDS[signal.Signals(number)])

    def refresh(self) -> None:
        """Keep the edited config as the fallback for new workers when the workers will have applied it too."""
        try:
            config = load_config(str(self.config.path))
        except ConfigError:
            return  # every worker reports the same error itself, and keeps its config; so does this one
        if not needs_restart(self.config.proxy, config.proxy):
            self.config = config

    def on_ready(self, worker: Worker) -> None:
        try:
            data = os.read(worker.ready_fd, 1)
        except OSError:
            data = b""
        os.close(worker.ready_fd)
        worker.ready_fd = -1
        worker.ready = bool(data)
        if not worker.ready:
            return  # it died before serving: reap() says how
        log.info("worker %d (pid %d) serving", worker.slot, worker.pid)
        if not self.served_once and not self.stopping:
            self.served_once = True
            for slot in range(self.count):
                if slot not in self.workers:
                    self.spawn(slot)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers.values() if w.pid == pid), None)
            if worker is not None:
                del self.workers[worker.slot]
                for fd in worker.fds:
                    os.close(fd)
                self.exited(worker, os.waitstatus_to_exitcode(status))

    def exited(self, worker: Worker, code: int) -> None:
        if self.stopping:
            self.stop_codes.append(code)
            (log.info if code == 0 else log.warning)("worker %d (pid %d) %s", worker.slot, worker.pid,
                                                     describe_exit(code))
            return
        if not self.served_once:
            self.failed_start = code if code > 0 else 1
            log.error("worker %d (pid %d) could not start: it %s (its error is above); stopping", worker.slot,
                      worker.pid, describe_exit(code))
            return
        quick = time.monotonic() - worker.started < MIN_UPTIME_S
        self.quick_deaths[worker.slot] = self.quick_deaths.get(worker.slot, 0) + 1 if quick else 0
        delay = restart_delay(self.quick_deaths[worker.slot])
        log.error("worker %d (pid %d) %s; a new worker takes its place in %.1f s", worker.slot, worker.pid,
                  describe_exit(code), delay)
        self.due[worker.slot] = time.monotonic() + delay

    def exit_code(self) -> int:
        if self.failed_start is not None:
            return self.failed_start
        return 0 if all(code == 0 for code in self.stop_codes) else 1

    def close_sockets(self) -> None:
        for sock in (self.sockets.main, self.sockets.ops):
            if sock is not None:
                sock.close()

    def spawn(self, slot: int) -> None:
        ready_r, ready_w = os.pipe()
        control_r, control_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's stack
            code = 1
            try:
                os.close(ready_r)
                os.close(control_w)
                self.become_worker()
                code = self.serve(slot, ready_w, control_r)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("worker %d failed", slot)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(ready_w)
        os.close(control_r)
        self.workers[slot] = Worker(slot, pid, ready_r, control_w, time.monotonic())

    def become_worker(self) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for sig in FORWARDED:  # until Serving installs its handlers: a direct signal must not kill it
            signal.signal(sig, signal.SIG_IGN)
        for fd in (self.wake_r, self.wake_w, *(fd for w in self.workers.values() for fd in w.fds)):
            with contextlib.suppress(OSError):
                os.close(fd)

    def serve(self, slot: int, ready_fd: int, control_fd: int) -> int:
        config = worker_config(self.config, slot)
        fleet = Fleet(slot, self.count, self.run_dir)
        app = create_app(config, self.settings)
        app.state.fleet = fleet
        return WorkerServing(app, config, self.host, self.port, self.sockets, fleet, ready_fd, control_fd,
                             os.getppid()).run()
