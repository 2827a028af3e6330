"""`guardrail-proxy serve --workers N` as real processes in front of the stand-in servers: both workers answer
on one port, /metrics counts the whole fleet per worker, signals reach every worker, a killed worker is replaced
by one serving the config its siblings serve, a stopped worker neither hangs /metrics nor /admin/reload, a bad
config fails once, and two workers writing one SQLite audit file keep every record. Then the supervisor's pure
rules (workers.py): the restart backoff and how an exit is described.

Nothing here sleeps a fixed time to wait for something: every wait polls for its condition, with a deadline."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from conftest import free_port, metric, write_config
from fleet_harness import DEADLINE_S, by_worker, fleet_total, samples

from guardrail_proxy.fleet import RUN_DIR_PREFIX, stale_run_dirs
from guardrail_proxy.workers import MAX_BACKOFF_S, describe_exit, restart_delay

OPS = {"authorization": "Bearer ops-secret"}
REPO = Path(__file__).parents[1]


def wait_for(check: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)

class Running:
    def __init__(self, proc: subprocess.Popen[bytes], main: str, ops: str) -> None:
        self.proc, self.main, self.ops = proc, main, ops
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace"))

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def metrics(self) -> str:
        response = httpx.get(f"{self.ops}/metrics", headers=OPS, timeout=10)
        assert response.status_code == 200, response.text
        return response.text

    def until(self, check: Callable[[str], object], what: str, timeout: float = DEADLINE_S) -> str:
        """The first /metrics page `check` accepts, scraping again until one does (a sibling that missed a
        scrape on a loaded machine is then in the next one)."""
        deadline = time.monotonic() + timeout
        while not check(text := self.metrics()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g} s; the last page:\n{text[-4000:]}")
            time.sleep(0.05)
        return text

    def all_up(self, count: int = 2) -> str:
        return self.until(lambda t: sorted(up(t).items()) == [(str(i), 1.0) for i in range(count)],
                          "every worker answering the scrape")

    def wait_output(self, words: str, count: int = 1) -> None:
        wait_for(lambda: self.output.count(words) >= count, f"{count} x {words!r} in the log")

    def wait(self, timeout: float = DEADLINE_S) -> int:
        code = self.proc.wait(timeout)
        self.reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


def up(text: str) -> dict[str, float]:
    return {labels["worker"]: value for labels, value in samples(text, "guardrail_worker_up")}


def pids(text: str) -> dict[str, int]:
    return {labels["worker"]: int(labels["pid"]) for labels, value in samples(text, "guardrail_worker_up") if value}


def digests(text: str) -> dict[str, str]:
    return {labels["worker"]: labels["digest"] for labels, _ in samples(text, "guardrail_worker_config_info")}


@pytest.fixture
def fleet(tmp_path, safeguard, upstream):
    """fleet(workers=2, audit=..., **server) -> Running, once every worker serves; killed at the end if still up."""
    started: list[Running] = []

    def start(workers: int = 2, audit: dict[str, object] | None = None, expect_start: bool = True,
              **server_cfg: object) -> Running:
        port, ops_port = free_port(), free_port()
        server = {"port": port, "ops_port": ops_port, "ops_key_env": "OPS_KEY", "drain_s": 0.2, **server_cfg}
        path = write_config(tmp_path, {}, safeguard[1].url, upstream[1].url, server_cfg=server,
                            audit=audit or {"store": "jsonl", "path": str(tmp_path / "audit.jsonl"),
                                            "durability": "batch"})
        env = {**os.environ, "OPS_KEY": "ops-secret", "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-m", "guardrail_proxy", "serve", "--config", str(path),
                                 "--workers", str(workers)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        running = Running(proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ops_port}")
        started.append(running)
        if not expect_start:
            return running
        with contextlib.suppress(AssertionError):
            wait_for(lambda: running.output.count(") serving\n") >= workers or proc.poll() is not None, "start")
        if proc.poll() is None and running.output.count(") serving\n") >= workers:
            return running
        proc.kill()
        running.wait()
        raise AssertionError(f"the workers did not start: {running.output[-3000:]}")

    yield start
    for running in started:
        if running.proc.poll() is None:
            running.proc.send_signal(signal.SIGTERM)
            try:
                running.wait(20)
            except subprocess.TimeoutExpired:
                running.proc.kill()
                running.wait()
        if running.proc.stdout is not None:
            running.proc.stdout.close()
        print(f"--- the output of pid {running.proc.pid}, the end (shown when the test failed):\n"
              f"{running.output[-6000:]}")


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="test", max_retries=0, timeout=20)


def chat(c: openai.OpenAI, text: str = "hello") -> str:
    reply = c.chat.completions.create(model="test-model", messages=[{"role": "user", "content": text}])
    return reply.choices[0].message.content or ""


def spread(url: str, requests: int, threads: int = 8) -> None:
    """`requests` completions from `threads` clients, each with its own connection to the shared port."""
    clients = [client(url) for _ in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        replies = list(pool.map(lambda i: chat(clients[i % threads]), range(requests)))
    assert len(replies) == requests and all(replies)


def test_two_workers_share_the_port_and_metrics_count_the_fleet_per_worker(fleet):
    f = fleet(workers=2)
    sent = 0
    while sent < 400:  # the kernel hands each new connection to whichever worker accepts first
        spread(f.main, 40)
        sent += 40
        text = f.until(lambda t, n=sent: fleet_total(t, "guardrail_requests_total") == n, "every request counted")
        per_worker = by_worker(text, "guardrail_requests_total")
        if len(per_worker) == 2 and all(per_worker.values()):
            break
    assert sorted(per_worker) == ["0", "1"] and all(per_worker.values()), per_worker
    assert len(set(pids(text).values())) == 2
    for _ in range(6):  # whichever worker answers the scrape, it reports the whole fleet
        text = f.all_up()
        assert fleet_total(text, "guardrail_requests_total") == sent
        assert fleet_total(text, "guardrail_checks_total", phase="input") == sent
        assert fleet_total(text, "guardrail_added_latency_seconds_count") == sent
        assert fleet_total(text, "guardrail_added_latency_seconds_bucket", le="+Inf") == sent
        assert sorted(by_worker(text, "guardrail_requests_created")) == ["0", "1"]
        assert metric(text, "guardrail_fleet_workers") == 2
        assert samples(text, "guardrail_requests_in_flight") == [({}, 0.0)]  # gauges: combined, no worker label
        assert len(set(digests(text).values())) == 1 and sorted(digests(text)) == ["0", "1"]
    f.proc.send_signal(signal.SIGTERM)
    assert f.wait() == 0


def test_sigterm_drains_every_worker_then_exits_0(fleet, upstream, tmp_path):
    upstream[0].replies = {"": " ".join(f"word{i}" for i in range(30))}
    upstream[0].chunk_delay_s = 0.05
    f = fleet(workers=2, drain_s=5.0, shutdown_timeout_s=20)
    events: list[str] = []
    first = threading.Event()

    def stream() -> None:
        with httpx.stream("POST", f"{f.main}/v1/chat/completions", timeout=30,
                          json={"model": "test-model", "messages": [{"role": "user", "content": "hi"}],
                                "stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    first.set()

    workers = list(pids(f.all_up()).values())
    reader = threading.Thread(target=stream)
    reader.start()
    assert first.wait(10), "the stream did not start"
    f.proc.send_signal(signal.SIGTERM)
    for pid in workers:  # as systemd's default stop does: every process at once; each must drain once, not skip
        os.kill(pid, signal.SIGTERM)
    draining: list[int] = []

    def probes_503(count: int) -> Callable[[], bool]:
        def check() -> bool:  # `count` answers in a row: 503, draining
            ready = httpx.get(f"{f.ops}/readyz", headers=OPS, timeout=10)
            if ready.status_code == 503 and "draining" in ready.json()["checks"].get("shutdown", ""):
                draining.append(1)
            else:
                draining.clear()
            return len(draining) >= count
        return check

    wait_for(probes_503(1), "/readyz answering 503 draining", timeout=4)
    assert chat(client(f.main)).startswith("word0")  # still served during drain_s
    wait_for(probes_503(5), "every worker draining, whichever answers the probe", timeout=4)
    reader.join(30)
    assert events[-1] == "[DONE]"
    assert f.wait() == 0
    assert "SIGTERM: draining 2 workers" in f.output and f.output.count("exited with code 0") == 2
    assert f.output.count("SIGTERM sent to the worker itself is ignored") == 2
    assert "second signal" not in f.output
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert len(records) == 2 and sum(r["stream"] for r in records) == 1
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{f.main}/healthz")


def test_sighup_reloads_every_worker_and_metrics_show_a_failed_one(fleet, tmp_path):
    f = fleet(workers=2)
    first = digests(f.all_up())
    route = tmp_path / "routes" / "main.yaml"
    route.write_text(yaml.safe_dump({**yaml.safe_load(route.read_text()), "policies": [{"id": "selfharm"}]}))
    f.proc.send_signal(signal.SIGHUP)
    text = f.until(lambda t: by_worker(t, "guardrail_worker_config_generation") == {"0": 1, "1": 1},
                   "both workers on generation 1")
    assert by_worker(text, "guardrail_config_reloads_total", result="ok") == {"0": 1, "1": 1}
    assert len(set(digests(text).values())) == 1 and digests(text) != first
    route.write_text("models: [")
    f.proc.send_signal(signal.SIGHUP)
    text = f.until(lambda t: by_worker(t, "guardrail_config_reloads_total", result="error") == {"0": 1, "1": 1},
                   "both reloads failed")
    assert metric(text, "guardrail_config_last_reload_ok") == 0
    assert metric(text, "guardrail_config_generation") == 1
    f.wait_output("config reload failed; still serving generation 1", 2)
    route.write_text(yaml.safe_dump({"models": ["test-model"], "upstream": "standin",
                                     "policies": [{"id": "violence"}]}))
    reloaded = httpx.post(f"{f.ops}/admin/reload", headers=OPS, timeout=30)  # one request reloads the fleet
    assert reloaded.status_code == 200, reloaded.text
    assert [(w["worker"], w["reloaded"], w["generation"]) for w in reloaded.json()["workers"]] == [
        (0, True, 2), (1, True, 2)]
    text = f.all_up()
    assert by_worker(text, "guardrail_worker_config_last_reload_ok") == {"0": 1, "1": 1}
    assert metric(text, "guardrail_config_last_reload_ok") == 1
    assert digests(text) == first  # the first config again: the same digest, whatever the generation


def test_a_replacement_worker_serves_what_its_siblings_serve(fleet, tmp_path):
    f = fleet(workers=2)
    text = f.all_up()
    before, first = pids(text), digests(text)
    route = tmp_path / "routes" / "main.yaml"
    good = route.read_text()
    route.write_text("models: [")  # not reloaded: the workers keep serving the first config
    os.kill(before["1"], signal.SIGKILL)
    text = f.until(lambda t: up(t) == {"0": 1, "1": 1} and pids(t)["1"] != before["1"], "a new worker 1")
    f.wait_output(f"worker 1 (pid {before['1']}) was killed by SIGKILL; a new worker takes its place")
    f.wait_output("worker 1: the config does not load now")
    assert digests(text) == first and pids(text)["0"] == before["0"]  # the supervisor's copy: the one serving
    route.write_text(yaml.safe_dump({**yaml.safe_load(good), "policies": [{"id": "selfharm"}]}))
    assert httpx.post(f"{f.ops}/admin/reload", headers=OPS, timeout=30).status_code == 200  # unseen by the supervisor
    reloaded = digests(f.all_up())
    assert reloaded["0"] == reloaded["1"] != first["0"]
    second = pids(f.all_up())["1"]
    os.kill(second, signal.SIGKILL)
    text = f.until(lambda t: up(t) == {"0": 1, "1": 1} and pids(t)["1"] not in (before["1"], second),
                   "another new worker 1")
    assert digests(text) == reloaded  # it read the file as its siblings did, not the supervisor's copy
    assert by_worker(text, "guardrail_worker_config_generation") == {"0": 1, "1": 0}
    spread(f.main, 16)


def test_a_stopped_worker_hangs_neither_metrics_nor_reload(fleet):
    f = fleet(workers=2)
    stopped = pids(f.all_up())["1"]
    os.kill(stopped, signal.SIGSTOP)  # alive but not answering: the other worker accepts every connection
    try:
        text = f.metrics()
        assert up(text) == {"0": 1, "1": 0}
        reloaded = httpx.post(f"{f.ops}/admin/reload", headers=OPS, timeout=15)  # 60 s if it waited for it
        assert reloaded.status_code == 409, reloaded.text
        workers = {w["worker"]: w for w in reloaded.json()["workers"]}
        assert workers[0]["reloaded"] is True and workers[1]["reloaded"] is False
        assert workers[1]["error"] == "did not answer within 3 s (stopped or overloaded)"
    finally:
        os.kill(stopped, signal.SIGCONT)
    f.all_up()


def test_workers_drain_and_exit_when_the_supervisor_is_killed(fleet):
    f = fleet(workers=2)
    assert chat(client(f.main))
    f.proc.kill()
    f.proc.wait(10)

    def refused() -> bool:
        try:
            httpx.get(f"{f.main}/healthz", timeout=2)
        except httpx.TransportError:
            return True
        return False

    wait_for(refused, "the port closed")
    f.reader.join(15)  # the output ends when the last worker has exited
    assert not f.reader.is_alive()
    assert f.output.count(f"the supervisor (pid {f.proc.pid}) is gone; shutting down") == 2
    left = list(Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}{f.proc.pid}-*"))  # nobody removed it
    assert len(left) == 1
    assert left[0] in stale_run_dirs(left[0].parent, time.time() + 3600)  # the next supervisor will
    shutil.rmtree(left[0])


def test_a_bad_config_fails_once_with_exit_2(fleet, tmp_path):
    f = fleet(workers=3, expect_start=False, no_such_field=1)
    assert f.wait() == 2
    assert f.output.count("config error:") == 1 and "no_such_field" in f.output
    assert "worker" not in f.output


def test_a_port_in_use_fails_once_with_exit_2(fleet):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        f = fleet(workers=2, expect_start=False, port=taken.getsockname()[1])
        assert f.wait() == 2
    assert f.output.count("config error:") == 1 and "server.port: cannot listen on 127.0.0.1:" in f.output
    assert "worker" not in f.output


def test_a_worker_that_cannot_start_stops_the_fleet_once(fleet, tmp_path):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    f = fleet(workers=3, expect_start=False, audit={"store": "sqlite", "path": str(blocked / "audit.db")})
    assert f.wait() == 3, f.output
    assert f.output.count("could not start") == 1 and f.output.count("Application startup failed") == 1


def test_two_workers_commit_every_audit_record_to_one_sqlite_file(fleet, tmp_path):
    db = tmp_path / "audit.db"
    f = fleet(workers=2, audit={"store": "sqlite", "path": str(db), "durability": "batch", "batch_ms": 5})
    spread(f.main, 300, threads=16)
    text = f.until(lambda t: fleet_total(t, "guardrail_requests_total") == 300, "every request counted")
    per_worker = by_worker(text, "guardrail_requests_total")
    f.proc.send_signal(signal.SIGTERM)
    assert f.wait() == 0
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 300
    assert len(per_worker) == 2, per_worker

@pytest.mark.parametrize(("deaths", "delay"), [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (50, 30.0)])
def test_a_crash_loop_backs_off(deaths, delay):
    assert restart_delay(deaths) == delay <= MAX_BACKOFF_S


@pytest.mark.parametrize(("code", "words"), [(0, "exited with code 0"), (3, "exited with code 3"),
                                             (-9, "was killed by SIGKILL"), (-15, "was killed by SIGTERM")])
def test_exits_are_described(code, words):
    assert describe_exit(code) == words
