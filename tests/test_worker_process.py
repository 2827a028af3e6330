"""One worker in-process (worker_process.py): a SIGHUP that reaches a worker while it starts is applied once it
has started, and a starting worker serves the config file as it reads now unless it cannot serve it, in which
case it serves the supervisor's checked copy."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest
import yaml
from conftest import write_config
from fleet_harness import DEADLINE_S

from guardrail_proxy.app import create_app
from guardrail_proxy.fleet import Fleet
from guardrail_proxy.loader import load_config
from guardrail_proxy.serving import Sockets
from guardrail_proxy.worker_process import WorkerServing, worker_config
from guardrail_proxy.workers import bind


async def test_a_sighup_that_reaches_a_starting_worker_reloads_it_once_started(tmp_path, safeguard, upstream,
                                                                              caplog):
    path = write_config(tmp_path, {}, safeguard[1].url, upstream[1].url, server_cfg={"drain_s": 0})
    config = load_config(path)
    sockets = Sockets(bind("127.0.0.1", 0, str(path), "server.port"))
    ready_r, ready_w = os.pipe()
    control_r, control_w = os.pipe()
    app, fleet = create_app(config), Fleet(0, 1, tmp_path)
    app.state.fleet = fleet
    serving = WorkerServing(app, config, "127.0.0.1", 0, sockets, fleet, ready_w, control_r, os.getpid())
    caplog.set_level(logging.INFO, "guardrail_proxy")
    os.write(control_w, b"H")  # the supervisor passed a SIGHUP on before this worker's app exists
    task = asyncio.create_task(serving.serve())
    try:
        deadline = time.monotonic() + DEADLINE_S
        while getattr(getattr(app.state, "runtime", None), "last_reload", None) is None:
            assert time.monotonic() < deadline and not task.done(), "no reload after the start"
            await asyncio.sleep(0.05)
        assert app.state.runtime.last_reload.ok and app.state.runtime.served.generation == 1
        assert "SIGHUP while the proxy is starting: it reloads once it has started" in caplog.text
        os.write(control_w, b"T")
        await asyncio.wait_for(task, DEADLINE_S)
    finally:
        task.cancel()
        sockets.main.close()
        for fd in (ready_r, control_r, control_w):
            os.close(fd)


@pytest.mark.parametrize(("edit", "serves", "warning"), [
    ("route", "the file", None),
    ("broken", "the checked copy", "the config does not load now"),
    ("restart-only", "the checked copy", "the config file changes server.log_level, which takes effect only after"),
])
def test_a_starting_worker_reads_the_file_unless_it_cannot_serve_it(tmp_path, edit, serves, warning, caplog):
    path = write_config(tmp_path, {}, "http://127.0.0.1:9", "http://127.0.0.1:9")
    checked = load_config(path)
    if edit == "route":
        (tmp_path / "routes" / "main.yaml").write_text(yaml.safe_dump(
            {"models": ["test-model"], "upstream": "standin", "policies": [{"id": "selfharm"}]}))
    elif edit == "broken":
        (tmp_path / "routes" / "main.yaml").write_text("models: [")
    else:
        proxy = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**proxy, "server": {**proxy["server"], "log_level": "debug"}}))
    caplog.set_level(logging.INFO, "guardrail_proxy")
    config = worker_config(checked, 1)
    assert (config is checked) == (serves == "the checked copy")
    assert (config.digest == checked.digest) == (serves == "the checked copy")
    if warning:
        assert f"worker 1: {warning}" in caplog.text
    else:
        assert "worker 1:" not in caplog.text
