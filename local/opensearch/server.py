"""Start, stop and inspect a local single-node OpenSearch (``retrosearch opensearch start|stop|status``).

The distribution comes from :mod:`.assembly` (Maven Central, cached), the node's files from
:mod:`.node_config`; process control (pid checks, stopping) is the shared :mod:`retrosearch.core.process`.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from retrosearch.core import process

from .assembly import assemble, assemble_libtorch, find_java_home, tool_env
from .node_config import MARKER, ML_PLUGIN, ServerError, ServerSettings, prepare_node_dir

_MAIN_CLASS = b"org.opensearch.bootstrap.OpenSearch"


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode not in (0, 9):  # 9: created meanwhile by a concurrent run
        raise ServerError(f"could not create user {name!r}: {result.stderr.strip()}")
    return pwd.getpwnam(name)


def _grant_traverse(path: Path) -> None:
    """Let other users pass through every ancestor of `path` (e.g. root's 0700 home holding the cache)."""
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.lchown(path, uid, gid)


def _is_opensearch(pid: int) -> bool:
    line = process.cmdline(pid)
    return _MAIN_CLASS in line if line else process.pid_alive(pid)


def read_pid(settings: ServerSettings) -> int | None:
    """The node's pid if its pid file names a live OpenSearch process; a stale file is removed."""
    try:
        pid = int(settings.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if process.pid_alive(pid) and _is_opensearch(pid):
        return pid
    settings.pid_file.unlink(missing_ok=True)
    return None


def _http_json(url: str, timeout: float = 5.0) -> Any:
    """GET `url` and decode JSON; None when nothing (healthy) answers."""
    status, body = process.http_json(url, timeout=timeout)
    return body if status == 200 else None


def _healthy(settings: ServerSettings, wait: str = "0s") -> bool:
    health = _http_json(f"{settings.url}/_cluster/health?wait_for_status=yellow&timeout={wait}", timeout=10)
    return bool(health) and health.get("status") in ("yellow", "green") and not health.get("timed_out")


def _log_text(settings: ServerSettings) -> tuple[Path | None, str]:
    for path in (settings.console_log, settings.node_dir / "logs" / f"{settings.cluster_name}.log"):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if text.strip():
            return path, text
    return None, ""


def _root_cause(text: str) -> str:
    """The last Java exception line in `text`, which names what actually went wrong."""
    causes = re.findall(r"^(?:Caused by: )?((?:[\w$]+\.)+[\w$]*(?:Exception|Error): .*)$", text, re.M)
    return causes[-1].strip() if causes else ""


def log_tail(settings: ServerSettings, lines: int = 40) -> str:
    """The last lines the node wrote: console output first (it holds JVM errors before logging starts)."""
    path, text = _log_text(settings)
    if path is None:
        return f"(no log under {settings.node_dir / 'logs'})"
    return f"--- {path} (last {lines} lines) ---\n{process.tail_text(text, lines)}"


def startup_error(settings: ServerSettings, what: str) -> ServerError:
    cause = _root_cause(_log_text(settings)[1])
    headline = f"OpenSearch on port {settings.port} {what}" + (f": {cause}" if cause else "")
    return ServerError(f"{headline}\n{log_tail(settings)}")


def start(settings: ServerSettings, wait_s: float = 180.0) -> dict[str, Any]:
    """Start the node (assembling first if needed) and wait until it is yellow; return `status()`.

    Does nothing if a healthy node already answers on the port. On failure the node is stopped
    and `ServerError` carries the log tail.
    """
    pid = read_pid(settings)
    if pid is None and _healthy(settings):
        return status(settings)
    if pid is not None:
        _wait_healthy(settings, pid, time.monotonic() + wait_s)
        return status(settings)

    home = assemble(settings)
    node_dir = prepare_node_dir(settings, home)
    pid = launch(settings, home, node_dir)
    try:
        _wait_healthy(settings, pid, time.monotonic() + wait_s)
    except ServerError:
        process.terminate(pid, grace_s=20)
        settings.pid_file.unlink(missing_ok=True)
        raise
    return status(settings)


def launch(settings: ServerSettings, home: Path, node_dir: Path) -> int:
    """Start the node whose files :func:`prepare_node_dir` laid out, without waiting; return its pid.

    Run as root, the node runs as ``settings.user`` (OpenSearch refuses root), which then owns its folder.
    """
    env = tool_env(home, find_java_home(settings))
    env.update(
        OPENSEARCH_PATH_CONF=str(node_dir / "config"),
        OPENSEARCH_TMPDIR=str(node_dir / "tmp"),
        OPENSEARCH_JAVA_OPTS=" ".join(
            [f"-Xms{settings.heap}", f"-Xmx{settings.heap}", os.environ.get("OPENSEARCH_JAVA_OPTS", "")]
        ).strip(),
        HOME=str(node_dir),
    )
    env.update(_local_model_env(settings))
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:  # OpenSearch refuses to run as root.
        user = _ensure_user(settings.user)
        _grant_traverse(home)
        _grant_traverse(node_dir)
        _chown_tree(node_dir, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env.update(USER=user.pw_name, LOGNAME=user.pw_name)

    with open(settings.console_log, "w") as console:
        if as_user:
            os.chown(settings.console_log, as_user["user"], as_user["group"])
        # Foreground mode in its own session: the pid is the JVM's (bin/opensearch execs java),
        # and the node outlives this process without the daemon mode's dependency on `ps`.
        proc = subprocess.Popen(
            [str(home / "bin" / "opensearch"), "-p", str(settings.pid_file)],
            cwd=node_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **as_user,
        )
    return proc.pid


def _local_model_env(settings: ServerSettings) -> dict[str, str]:
    """Where ml-commons' DJL finds libtorch, so local models deploy offline (empty without ml-commons).

    A ``PYTORCH_LIBRARY_PATH`` already in the environment wins (a libtorch of the user's own).
    """
    if ML_PLUGIN not in settings.plugins or os.environ.get("PYTORCH_LIBRARY_PATH"):
        return {}
    return {"PYTORCH_LIBRARY_PATH": str(assemble_libtorch(settings))}


def _wait_healthy(settings: ServerSettings, pid: int, deadline: float) -> None:
    while True:
        if not process.pid_alive(pid):
            raise startup_error(settings, "exited during start-up")
        if _healthy(settings, wait="1s"):
            return
        if time.monotonic() > deadline:
            raise startup_error(settings, "was not healthy in time")
        time.sleep(0.5)


def stop(settings: ServerSettings, grace_s: float = 30.0) -> bool:
    """Stop the node on `settings.port` (SIGTERM, then SIGKILL after `grace_s`); False if none ran."""
    pid = read_pid(settings)
    if pid is None:
        return False
    process.terminate(pid, grace_s)
    settings.pid_file.unlink(missing_ok=True)
    return True


def status(settings: ServerSettings) -> dict[str, Any]:
    """What runs on the port: our process (pid), whether it answers, its version, plugins and health."""
    pid = read_pid(settings)
    info: dict[str, Any] = {
        "running": pid is not None,
        "pid": pid,
        "url": settings.url,
        "answering": False,
        "version": None,
        "plugins": [],
        "health": None,
        "home": str(settings.home),
        "assembled": (settings.home / MARKER).is_file(),
        "node_dir": str(settings.node_dir),
    }
    root = _http_json(settings.url + "/")
    if isinstance(root, dict) and "version" in root:
        info["answering"] = True
        info["version"] = root["version"].get("number")
        plugins = _http_json(settings.url + "/_cat/plugins?format=json") or []
        info["plugins"] = sorted({p.get("component") for p in plugins if isinstance(p, dict)})
        health = _http_json(settings.url + "/_cluster/health") or {}
        info["health"] = health.get("status")
    return info
