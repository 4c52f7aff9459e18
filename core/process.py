"""Managed background processes: start detached, pid file, health URL, log tail, stop.

The local OpenSearch node and ``retrosearch serve --background`` are both long-running
processes that a later command must find again (``status``, ``stop``). This module holds what
they share and nothing specific to either. Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Loopback services: never route them through an $http_proxy meant for package registries.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ProcessError(RuntimeError):
    """Start-up failed or timed out; the message carries the log tail."""


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (an exited child of ours is reaped, not mistaken for alive)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> bytes:
    """The process's command line (empty when it cannot be read)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def http_json(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """GET ``url``: (status, decoded JSON or None); status 0 when nothing answers."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with _HTTP.open(request, timeout=timeout) as response:
            return response.status, _decode(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _decode(error.read())
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode() or "null")
    except ValueError:
        return None


def tail_text(text: str, lines: int = 40) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, headed by its path."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return f"--- {path} (last {lines} lines) ---\n" + tail_text(text, lines)


def terminate(pid: int, grace_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; returns once the process is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while pid_alive(pid):
        time.sleep(0.1)


@dataclass
class ManagedProcess:
    """One long-running process known by its run folder: ``<run_dir>/<name>.pid`` and ``.log``.

    ``marker`` is a byte string its command line must contain, so a recycled pid of some other
    program is never taken for ours; ``healthy`` says whether it answers.
    """

    name: str
    run_dir: Path
    marker: bytes
    healthy: Callable[[], bool] = field(default=lambda: True)

    @property
    def pid_file(self) -> Path:
        return Path(self.run_dir) / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return Path(self.run_dir) / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid if the pid file names a live process of ours; a stale file is removed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid_alive(pid) and (self.marker in cmdline(pid) or not Path("/proc").is_dir()):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        wait_s: float = 120.0,
        cwd: Path | None = None,
        write_pid: bool = True,
        **popen: Any,
    ) -> int:
        """Start ``argv`` detached (own session, output to the log) and wait until healthy.

        Returns the pid. If it exits or is not healthy in ``wait_s``, it is stopped and
        :class:`ProcessError` carries the log tail.
        """
        Path(self.run_dir).mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "w") as log:
            proc = subprocess.Popen(
                list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **popen,
            )
        if write_pid:
            self.pid_file.write_text(f"{proc.pid}\n")
        try:
            self.wait_healthy(proc.pid, wait_s)
        except ProcessError:
            terminate(proc.pid, grace_s=20)
            self.pid_file.unlink(missing_ok=True)
            raise
        return proc.pid

    def wait_healthy(self, pid: int, wait_s: float) -> None:
        """Poll until healthy; :class:`ProcessError` if ``pid`` exits or time runs out."""
        deadline = time.monotonic() + wait_s
        while True:
            if not pid_alive(pid):
                raise ProcessError(f"{self.name} exited during start-up\n{tail(self.log_file)}")
            if self.healthy():
                return
            if time.monotonic() > deadline:
                raise ProcessError(f"{self.name} was not healthy after {wait_s:.0f}s\n{tail(self.log_file)}")
            time.sleep(0.25)

    def stop(self, grace_s: float = 30.0) -> bool:
        """Stop it; False if none of ours ran."""
        pid = self.pid()
        if pid is None:
            return False
        terminate(pid, grace_s)
        self.pid_file.unlink(missing_ok=True)
        return True


def free_ports(count: int = 1, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports free on ``host`` now (all held open while they are chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
