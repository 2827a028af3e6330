"""What the workers share (fleet.py), and the digest each reports (loader.LoadedConfig.digest): it names what
is served, not the directory it was read from; stale run dirs left by a dead supervisor are removed while live
ones are kept."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import write_config

from guardrail_proxy.fleet import RUN_DIR_PREFIX, make_run_dir
from guardrail_proxy.loader import load_config


def test_the_config_digest_names_what_is_served_not_where_it_was_read(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    audit = {"store": "jsonl", "path": str(tmp_path / "audit.jsonl")}
    a = load_config(write_config(one, {}, "http://127.0.0.1:9", "http://127.0.0.1:9", audit=audit))
    b = load_config(write_config(two, {}, "http://127.0.0.1:9", "http://127.0.0.1:9", audit=audit))
    assert a.digest == b.digest == load_config(a.path).digest
    (one / "policies" / "violence.md").write_text((one / "policies" / "violence.md").read_text() + "\nMore.\n")
    assert load_config(a.path).digest != a.digest


def test_stale_run_dirs_are_removed_and_live_ones_kept():
    gone = subprocess.Popen(["true"])
    gone.wait()
    with tempfile.TemporaryDirectory(prefix="gp-") as parent_name:  # short: unix socket paths are limited
        parent = Path(parent_name)
        dirs = {name: parent / f"{RUN_DIR_PREFIX}{pid}-{name}" for name, pid in
                [("stale", gone.pid), ("mine", os.getpid()), ("listening", gone.pid), ("fresh", gone.pid)]}
        for path in dirs.values():
            path.mkdir()
        with socket.socket(socket.AF_UNIX) as closed, socket.socket(socket.AF_UNIX) as listening:
            closed.bind(str(dirs["stale"] / "worker-0.sock"))  # bound, never listening: refused
            listening.bind(str(dirs["listening"] / "worker-1.sock"))  # a worker that outlived its supervisor
            listening.listen()
            old = time.time() - 3600
            for name in ("stale", "mine", "listening"):
                os.utime(dirs[name], (old, old))
            made = make_run_dir(parent)
        assert made.name.startswith(f"{RUN_DIR_PREFIX}{os.getpid()}-") and made.stat().st_mode & 0o777 == 0o700
        assert [name for name, path in dirs.items() if not path.exists()] == ["stale"]
