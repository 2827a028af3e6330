"""Process plumbing shared by the benchmarks: stand-ins and proxies as subprocesses on 127.0.0.1,
proxy configs in a temporary directory, /proc readings (CPU time, RSS) and the machine description.

Everything started here is stopped by `Processes.stop_all()` (terminate, then kill after 10 s).
"""

from __future__ import annotations

import json
import os
import platform
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
POLICIES_DIR = REPO / "teen_safety_policies"
POLICY_ID = "dangerous-content"  # one shipped policy: realistic prompt size for the classifier calls
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never route loopback via $http_proxy


def fmt(value: float, digits: int = 0) -> str:
    """A table cell: thousands separators, and '-' for NaN."""
    return "-" if value != value else f"{value:,.{digits}f}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(url: str, method: str = "GET", timeout: float = 5.0) -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with NO_PROXY.open(request, timeout=timeout) as response:
        return json.loads(response.read())


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time spent in processes on the machine (all cores), from /proc/stat. Interrupt and softirq time
    is left out: loopback traffic puts ours there, where no process is charged for it."""
    user, nice, system = (int(x) for x in Path("/proc/stat").read_text().split()[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


class ForeignLoad:
    """How much CPU processes other than ours used between start() and stop(): a busy box shows here."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.started = time.monotonic()
        self.total0 = busy_seconds()
        self.ours0 = self._ours()

    def _ours(self) -> float:
        mine = os.times()
        return mine.user + mine.system + sum(cpu_seconds(pid) for pid in self.pids)

    def stop(self) -> str:
        wall = time.monotonic() - self.started
        foreign = max((busy_seconds() - self.total0) - (self._ours() - self.ours0), 0.0)
        note = f"other processes used {foreign:.1f} CPU-s in the {wall:.0f} s measuring phase"
        if foreign > 0.05 * wall * (os.cpu_count() or 1):
            note += " (the machine was busy with other work: absolute numbers are inflated, compare ratios)"
        return note


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "nproc": os.cpu_count(), "cpu": cpu,
            "python": platform.python_version(), "platform": platform.platform(), "loadavg_at_start": loadavg()}


def loadavg() -> str:
    """1, 5 and 15 minute load averages: anything else busy on the box shows here."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def proxy_command() -> list[str]:
    script = Path(sys.executable).parent / "guardrail-proxy"
    if script.exists():
        return [str(script)]
    found = shutil.which("guardrail-proxy")
    return [found] if found else [sys.executable, "-m", "guardrail_proxy"]


class Processes:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def _log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def fail(self, name: str, why: str) -> None:
        tail = self._log(name).read_text(errors="replace")[-3000:] if self._log(name).exists() else ""
        self.stop_all()
        sys.exit(f"{name}: {why}\n--- log tail ---\n{tail}")

    def standin(self, name: str, kind: str, *args: str, timeout: float = 30.0) -> tuple[int, str]:
        """Start `python -m guardrail_proxy.standins KIND --port 0 ARGS`; (pid, base URL) once it listens."""
        cmd = [sys.executable, "-m", "guardrail_proxy.standins", kind, "--port", "0", *args]
        log = self._log(name).open("wb")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, cwd=REPO)
        self.procs.append(proc)
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                line = proc.stdout.readline()
                break
        text = line.decode(errors="replace").strip()
        if not text.startswith("STAND-IN") or " at http://" not in text:
            self.fail(name, f"did not start (got {text!r})")
        print(f"  {name}: {text}", flush=True)
        url = text.split(" at ", 1)[1].split("/v1", 1)[0]
        return proc.pid, url

    def proxy(self, name: str, config: Path, timeout: float = 90.0, code: Path | None = None) -> tuple[int, str]:
        """Start `guardrail-proxy serve --config CONFIG --port P`; (pid, base URL) once /readyz says ready.
        `code`: a directory holding another copy of the guardrail_proxy package to run instead (a baseline)."""
        port = free_port()
        cmd = [*proxy_command(), "serve", "--config", str(config), "--port", str(port)]
        log = self._log(name).open("wb")
        env = {**os.environ, "PYTHONPATH": str(code)} if code is not None else None
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                self.fail(name, f"exited with {proc.returncode}")
            try:
                if http_json(f"{url}/readyz", timeout=5.0).get("ready"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.fail(name, f"not ready after {timeout:.0f} s")
            time.sleep(0.1)
        print(f"  {name}: guardrail-proxy pid {proc.pid} at {url} ({' '.join(cmd[-4:])})", flush=True)
        return proc.pid, url

    def log_notes(self, name: str, limit: int = 8) -> list[str]:
        """The first lines a process wrote to its log (stand-ins and proxies log only warnings and worse)."""
        path = self._log(name)
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()] if path.exists() else []
        return lines[:limit] + ([f"... {len(lines) - limit} more line(s)"] if len(lines) > limit else [])

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def write_proxy_config(directory: Path, routes: dict[str, dict[str, Any]], classifier_url: str,
                       upstreams: dict[str, dict[str, Any]], audit: dict[str, Any] | None = None,
                       server: dict[str, Any] | None = None, sdk_classifier: bool = True) -> Path:
    """proxy.yaml + routes/<name>.yaml under `directory`; every route gets the model name `bench-<name>`.
    `audit` is the proxy's `audit:` section; by default a JSONL file, `directory`/audit.jsonl. `server` adds
    to the `server:` section. `sdk_classifier`: also a classifier `sdk` on the openai SDK transport (which
    loads the SDK: leave it out to measure a proxy on the raw transports only)."""
    routes_dir = directory / "routes"
    routes_dir.mkdir(parents=True, exist_ok=True)
    for name, route in routes.items():
        body = {"models": [f"bench-{name}"], "classifier": "default", "fail_mode": "closed",
                "policies": [{"id": POLICY_ID, "phases": ["input", "output"]}], **route}
        (routes_dir / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    proxy = {
        "server": {"host": "127.0.0.1", "log_level": "warning", **(server or {})},
        "classifiers": {
            "default": {"base_url": f"{classifier_url}/v1", "timeout_s": 20, "retries": 0},
            **({"sdk": {"base_url": f"{classifier_url}/v1", "timeout_s": 20, "retries": 0, "transport": "openai"}}
               if sdk_classifier else {}),
        },
        "upstreams": upstreams,
        "policies": {"dirs": [str(POLICIES_DIR)]},
        "audit": audit if audit is not None else {"store": "jsonl", "path": str(directory / "audit.jsonl")},
        "routes_dir": "routes",
    }
    path = directory / "proxy.yaml"
    path.write_text(yaml.safe_dump(proxy, sort_keys=False))
    return path


def openai_upstream(upstream_url: str) -> dict[str, Any]:
    return {"provider": "openai", "model": "stand-in-chat", "api_base": f"{upstream_url}/v1"}


def litellm_upstream(upstream_url: str) -> dict[str, Any]:
    return {"provider": "litellm", "model": "openai/stand-in-chat", "api_base": f"{upstream_url}/v1"}
