"""Assemble, start and stop a real single-node OpenSearch with the k-NN plugin, from Maven Central only.

No OpenSearch archive or Docker image can be fetched on the project's machines, but Maven Central
serves every piece needed for a working node:

* the server: ``org.opensearch.distribution.integ-test-zip:opensearch:<v>`` (zip, no bundled JDK;
  on 2.x only the ``transport-*`` modules, while 3.5 ships all modules);
* the ``lang-painless`` module, which k-NN extends but the 2.x integ-test zip lacks: published as
  plain jars (``org.opensearch.plugin:lang-painless`` and its dependencies), so the module directory
  is built here with a written ``plugin-descriptor.properties``;
* plugins: ``org.opensearch.plugin:<name>:<v>.0`` (zip), installed with the plugin CLI.

The k-NN zip on Maven Central has no native libraries, so only ``"engine": "lucene"`` works;
``faiss``/``nmslib`` fail when a segment is written.

The assembled distribution is cached under ``${RETROSEARCH_CACHE:-~/.cache/retrosearch}/opensearch/<v>/``
and never written by a running node: each node (one per HTTP port) gets its own config, data and
logs under a run directory, so two nodes can run side by side from one distribution.

Standard library only (with plugin/process.py, the process control it shares with
``retrosearch serve --background``): this runs before the project's virtualenv exists::

    python3 plugin/opensearch/server.py start --port 9250
    python3 plugin/opensearch/server.py status
    python3 plugin/opensearch/server.py stop
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any


def _load_process_module() -> ModuleType:
    """plugin/process.py (pid checks, stopping), also when this file runs as a plain script."""
    try:
        from retrosearch.plugin import process

        return process
    except ImportError:  # run by path before the project is installed
        path = Path(__file__).resolve().parents[1] / "process.py"
        spec = importlib.util.spec_from_file_location("retrosearch_process", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


_process = _load_process_module()
_pid_alive = _process.pid_alive
_terminate = _process.terminate

DEFAULT_VERSION = "2.19.1"
DEFAULT_PORT = 9250
DEFAULT_PLUGINS = ("opensearch-knn",)
# neural-search needs k-NN and ml-commons, ml-commons needs job-scheduler: install order matters.
ML_PLUGINS = ("opensearch-knn", "opensearch-job-scheduler", "opensearch-ml-plugin", "neural-search")
# ml-commons keeps its model index and connector clients on the heap; 1g starts but runs short.
ML_HEAP = "2g"
LOOPBACK_ENDPOINTS = r"^https?://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?(/.*)?$"
MARKER = "retrosearch-assembly.json"
_MAIN_CLASS = b"org.opensearch.bootstrap.OpenSearch"
# The node is on loopback: never route it through an $http_proxy meant for package registries.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# ingest-common and the libraries only it needs (everything else downloaded belongs to lang-painless).
_INGEST_COMMON_ARTIFACTS = {"ingest-common", "opensearch-grok", "opensearch-dissect", "jcodings", "joni"}
# Bumped when the assembled tree changes, so cached distributions of an older layout are rebuilt.
ASSEMBLY_REVISION = 2

# lang-painless's own code is in the jars below; everything else it needs is already in lib/.
_PAINLESS_POLICY = """grant {
  // generates classes for compiled scripts at runtime
  permission java.lang.RuntimePermission "createClassLoader";
  // finds the class loader of allow-listed classes
  permission java.lang.RuntimePermission "getClassLoader";
};
"""


class ServerError(RuntimeError):
    """Assembly or start-up failed; the message carries the relevant log tail."""


def default_cache_dir() -> Path:
    """The project's cache root, shared with the virtualenv builder (scripts/env.sh)."""
    return Path(os.environ.get("RETROSEARCH_CACHE") or Path.home() / ".cache" / "retrosearch")


@dataclass
class ServerSettings:
    """Where and how one node runs. Two nodes differ at least by `port`."""

    version: str = DEFAULT_VERSION
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    heap: str = "1g"
    cache_dir: Path = field(default_factory=default_cache_dir)
    run_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    plugins: tuple[str, ...] = DEFAULT_PLUGINS
    user: str = "opensearch"
    java_home: Path | None = None
    cluster_name: str = "retrosearch"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def version_dir(self) -> Path:
        return Path(self.cache_dir) / "opensearch" / self.version

    @property
    def home(self) -> Path:
        """The assembled distribution; its name carries the plugin list so each list has its own."""
        return self.version_dir / (f"dist{ASSEMBLY_REVISION}-" + ("+".join(self.plugins) or "core"))

    @property
    def node_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else self.version_dir / "run" / str(self.port)

    @property
    def pid_file(self) -> Path:
        return self.node_dir / "opensearch.pid"

    @property
    def console_log(self) -> Path:
        return self.node_dir / "logs" / "console.log"


def ml_node_settings() -> dict[str, Any]:
    """What ml-commons needs on a single local node to call a query service on loopback.

    Out of the box it runs models only on dedicated ML nodes, refuses work above 90% native
    memory (CI machines often sit there), calls only a list of commercial endpoints and never a
    private or loopback address.
    """
    return {
        "plugins.ml_commons.only_run_on_ml_node": False,
        "plugins.ml_commons.native_memory_threshold": 100,
        "plugins.ml_commons.connector.private_ip_enabled": True,
        "plugins.ml_commons.trusted_connector_endpoints_regex": LOOPBACK_ENDPOINTS,
    }


def with_ml(settings: ServerSettings, heap_given: bool = False) -> ServerSettings:
    """`settings` with the neural-search plugin chain and ml-commons' one-node settings added.

    Plugins the caller listed beyond the chain are kept after it; explicit `extra` settings win.
    """
    plugins = ML_PLUGINS + tuple(p for p in settings.plugins if p not in ML_PLUGINS)
    return replace(
        settings,
        plugins=plugins,
        extra={**ml_node_settings(), **settings.extra},
        heap=settings.heap if heap_given else ML_HEAP,
    )


# ---------------------------------------------------------------------------------------------- assembly


def assemble(settings: ServerSettings) -> Path:
    """Build the distribution for `settings.version` + `settings.plugins` once; return its home.

    Idempotent and atomic: the tree is built in a temporary sibling directory and renamed into
    place, under a file lock, so concurrent or interrupted runs never leave a half-built home.
    """
    home = settings.home
    if (home / MARKER).is_file():
        return home
    settings.version_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.version_dir / ".assemble.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / MARKER).is_file():
            return home
        for stale in settings.version_dir.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if home.exists():  # only possible if someone deleted the marker by hand
            shutil.rmtree(home)
        work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=settings.version_dir))
        try:
            built = _build(settings, work)
            os.rename(built, home)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return home


def _build(settings: ServerSettings, work: Path) -> Path:
    version = settings.version
    artifacts = _fetch(settings, work / "maven")
    core_zip = artifacts / f"opensearch-{version}.zip"
    _unzip(core_zip, work)
    home = work / f"opensearch-{version}"
    if not (home / "bin" / "opensearch").is_file():
        raise ServerError(f"{core_zip} has no opensearch-{version}/bin/opensearch")

    # 2.x integ-test zips carry only transport-* modules; newer ones (3.5 at least) ship lang-painless.
    # ingest-common holds the everyday ingest processors (script, remove, set, ...).
    jars = _module_jars(home, artifacts)
    if not (home / "modules" / "lang-painless").is_dir():
        _build_module(home, "lang-painless", jars["lang-painless"], version,
                      ["org.opensearch.painless.PainlessModulePlugin", "org.opensearch.painless.PainlessPlugin"],
                      "An easy, safe and fast scripting language for OpenSearch", policy=_PAINLESS_POLICY)
    if not (home / "modules" / "ingest-common").is_dir():
        _build_module(home, "ingest-common", jars["ingest-common"], version,
                      ["org.opensearch.ingest.common.IngestCommonModulePlugin", "org.opensearch.ingest.common.IngestCommonPlugin"],
                      "Ingest processors without extra permissions", extended="lang-painless")

    java_home = find_java_home(settings)
    env = _tool_env(home, java_home)
    for name in settings.plugins:
        plugin_zip = artifacts / f"{name}-{_plugin_version(version)}.zip"
        result = subprocess.run(
            [str(home / "bin" / "opensearch-plugin"), "install", "--batch", plugin_zip.resolve().as_uri()],
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise ServerError(f"installing {name} failed:\n{_tail_text(result.stdout + result.stderr)}")

    # The node runs as an unprivileged user but the tree belongs to whoever assembled it.
    for path in [home, *home.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            os.chmod(path, stat.S_IMODE(mode) | 0o755)
        elif stat.S_ISREG(mode):
            extra = 0o555 if mode & stat.S_IXUSR else 0o444
            os.chmod(path, stat.S_IMODE(mode) | extra)
    record = {
        "version": version,
        "plugins": list(settings.plugins),
        "java_home": str(java_home),
        "assembled_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (home / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    return home


def _plugin_version(version: str) -> str:
    # External plugins add a fourth component: k-NN 2.19.1.0 is built for OpenSearch 2.19.1.
    return f"{version}.0"


def _fetch(settings: ServerSettings, work: Path) -> Path:
    """Download every artifact with one Maven run (one JVM start); return the folder holding them."""
    version = settings.version
    deps = [
        ("org.opensearch.distribution.integ-test-zip", "opensearch", version, "zip", False),
        ("org.opensearch.plugin", "lang-painless", version, "jar", False),
        # Declared directly only to cut its transitive tree (the server jars), which lib/ already has.
        ("org.opensearch.plugin", "opensearch-scripting-painless-spi", version, "jar", True),
        ("org.opensearch.plugin", "ingest-common", version, "jar", False),
    ] + [("org.opensearch.plugin", name, _plugin_version(version), "zip", False) for name in settings.plugins]
    xml_deps = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version><type>{t}</type>"
        + (
            "<exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>"
            if cut
            else ""
        )
        + "</dependency>"
        for g, a, v, t, cut in deps
    )
    work.mkdir(parents=True)
    (work / "pom.xml").write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>retrosearch.local</groupId><artifactId>opensearch-assembly</artifactId><version>0</version>"
        f"<dependencies>{xml_deps}</dependencies></project>\n"
    )
    out = work / "out"
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServerError("`mvn` is not on PATH; it is needed once to download OpenSearch from Maven Central")
    result = subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            "-f",
            str(work / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={out}",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ServerError(
            f"Maven could not fetch OpenSearch {version} with {', '.join(settings.plugins) or 'no plugins'} "
            "(is every artifact published for this exact version?):\n"
            + _tail_text(result.stdout + result.stderr)
        )
    return out


def _unzip(archive: Path, dest: Path) -> None:
    # zipfile drops Unix permissions, and bin/ must stay executable.
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode)


def _module_jars(home: Path, artifacts: Path) -> dict[str, list[Path]]:
    """The downloaded jars each built module needs (those lib/ lacks), by module name."""
    in_lib = {_artifact_name(jar.name) for jar in (home / "lib").glob("*.jar")}
    jars = [jar for jar in sorted(artifacts.glob("*.jar")) if _artifact_name(jar.name) not in in_lib]
    ingest = [jar for jar in jars if _artifact_name(jar.name) in _INGEST_COMMON_ARTIFACTS]
    return {"ingest-common": ingest, "lang-painless": [jar for jar in jars if jar not in ingest]}


def _build_module(home: Path, name: str, jars: list[Path], version: str, classnames: list[str],
                  description: str, extended: str = "", policy: str | None = None) -> None:
    """Lay out modules/<name> as the full distribution ships it: its jars and a descriptor."""
    module = home / "modules" / name
    module.mkdir(parents=True)
    for jar in jars:
        shutil.copy2(jar, module / jar.name)
    main_jar = module / f"{name}-{version}.jar"
    with zipfile.ZipFile(main_jar) as zf:
        names = set(zf.namelist())
    # Plugin classes get renamed across branches; use whichever this release ships.
    classname = next((c for c in classnames if c.replace(".", "/") + ".class" in names), None)
    if classname is None:
        raise ServerError(f"{main_jar.name} has none of {classnames}")
    java_version = "11" if version.startswith(("1.", "2.")) else "21"
    (module / "plugin-descriptor.properties").write_text(
        f"description={description}\n"
        f"version={version}\nname={name}\nclassname={classname}\n"
        f"java.version={java_version}\nopensearch.version={version}\n"
        f"extended.plugins={extended}\nhas.native.controller=false\ncustom.foldername=\n"
    )
    if policy:
        (module / "plugin-security.policy").write_text(policy)


def _artifact_name(jar_name: str) -> str:
    """'asm-util-9.7.jar' -> 'asm-util'; 'netty-codec-4.1.118.Final.jar' -> 'netty-codec'."""
    return re.sub(r"-\d[^-]*(-[^-]+)?\.jar$", "", jar_name)


# ---------------------------------------------------------------------------------------------- java


def _jdk_major(jdk: Path) -> int | None:
    try:
        text = (jdk / "release").read_text()
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="(\d+)', text, re.M)
    return int(match.group(1)) if match and (jdk / "bin" / "java").is_file() else None


def find_java_home(settings: ServerSettings) -> Path:
    """The JDK to run `settings.version` on: explicit setting, $OPENSEARCH_JAVA_HOME, else the best match.

    2.x still uses the Java Security Manager, which Java 24+ removed, so it gets 17 (or 21/11);
    3.x needs 21+.
    """
    for explicit in (settings.java_home, os.environ.get("OPENSEARCH_JAVA_HOME")):
        if explicit:
            return Path(explicit)
    wanted = (17, 21, 11) if settings.version.startswith(("1.", "2.")) else (21, 25, 24)
    candidates = sorted(Path("/usr/lib/jvm").glob("*")) if Path("/usr/lib/jvm").is_dir() else []
    if os.environ.get("JAVA_HOME"):
        candidates.insert(0, Path(os.environ["JAVA_HOME"]))
    by_major: dict[int, Path] = {}
    for jdk in candidates:
        major = _jdk_major(jdk)
        if major is not None:
            by_major.setdefault(major, jdk.resolve())
    for major in wanted:
        if major in by_major:
            return by_major[major]
    raise ServerError(
        f"no JDK {'/'.join(map(str, wanted))} found for OpenSearch {settings.version} "
        f"(looked in $JAVA_HOME and /usr/lib/jvm); set OPENSEARCH_JAVA_HOME"
    )


def _tool_env(home: Path, java_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OPENSEARCH_JAVA_HOME=str(java_home), OPENSEARCH_PATH_CONF=str(home / "config"))
    return env


# ---------------------------------------------------------------------------------------------- config


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    # A JSON string is a valid double-quoted YAML scalar, and OpenSearch parses numbers from strings.
    return json.dumps(str(value))


def render_opensearch_yml(settings: ServerSettings, node_dir: Path | None = None) -> str:
    """The node's opensearch.yml: single node on loopback, data and logs in its run dir, plus `extra`."""
    node_dir = node_dir or settings.node_dir
    values: dict[str, Any] = {
        "cluster.name": settings.cluster_name,
        "node.name": f"{settings.cluster_name}-{settings.port}",
        "discovery.type": "single-node",
        # Loopback keeps bootstrap checks (vm.max_map_count, file limits) as warnings.
        "network.host": settings.host,
        "http.port": settings.port,
        "path.data": str(node_dir / "data"),
        "path.logs": str(node_dir / "logs"),
        # CI disks are often >90% full; the default watermark would make every index read-only.
        "cluster.routing.allocation.disk.threshold_enabled": False,
        "action.destructive_requires_name": False,
    }
    values.update(settings.extra)
    lines = ["# Written by plugin/opensearch/server.py on every start; edits are overwritten."]
    lines += [f"{key}: {_yaml_scalar(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _render_jvm_options(text: str, node_dir: Path) -> str:
    # Relative paths in the stock file resolve against the read-only home; the heap comes from
    # OPENSEARCH_JAVA_OPTS instead.
    text = re.sub(r"(?<=[=:])logs/", f"{node_dir / 'logs'}/", text)
    text = text.replace("-XX:HeapDumpPath=data", f"-XX:HeapDumpPath={node_dir / 'data'}")
    return "".join(line for line in text.splitlines(keepends=True) if not re.match(r"^-Xm[sx]", line))


def _prepare_node_dir(settings: ServerSettings, home: Path) -> Path:
    node_dir = settings.node_dir
    for sub in ("data", "logs", "tmp"):
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    config = node_dir / "config"
    # A fresh copy each start, so a changed distribution or settings never mixes with old files.
    shutil.rmtree(config, ignore_errors=True)
    shutil.copytree(home / "config", config)
    (config / "opensearch.yml").write_text(render_opensearch_yml(settings, node_dir))
    jvm = config / "jvm.options"
    jvm.write_text(_render_jvm_options(jvm.read_text(), node_dir))
    return node_dir


# ---------------------------------------------------------------------------------------------- processes


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
    try:
        return _MAIN_CLASS in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return _pid_alive(pid)


def _read_pid(settings: ServerSettings) -> int | None:
    """The node's pid if its pid file names a live OpenSearch process; a stale file is removed."""
    try:
        pid = int(settings.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if _pid_alive(pid) and _is_opensearch(pid):
        return pid
    settings.pid_file.unlink(missing_ok=True)
    return None


def _http_json(url: str, timeout: float = 5.0) -> Any:
    """GET `url` and decode JSON; None when nothing (healthy) answers."""
    try:
        with _HTTP.open(url, timeout=timeout) as response:
            return json.loads(response.read().decode())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _healthy(settings: ServerSettings, wait: str = "0s") -> bool:
    health = _http_json(f"{settings.url}/_cluster/health?wait_for_status=yellow&timeout={wait}", timeout=10)
    return bool(health) and health.get("status") in ("yellow", "green") and not health.get("timed_out")


def _tail_text(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


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
    return f"--- {path} (last {lines} lines) ---\n{_tail_text(text, lines)}"


def _startup_error(settings: ServerSettings, what: str) -> ServerError:
    cause = _root_cause(_log_text(settings)[1])
    headline = f"OpenSearch on port {settings.port} {what}" + (f": {cause}" if cause else "")
    return ServerError(f"{headline}\n{log_tail(settings)}")


def start(settings: ServerSettings, wait_s: float = 180.0) -> dict[str, Any]:
    """Start the node (assembling first if needed) and wait until it is yellow; return `status()`.

    Does nothing if a healthy node already answers on the port. On failure the node is stopped
    and `ServerError` carries the log tail.
    """
    pid = _read_pid(settings)
    if pid is None and _healthy(settings):
        return status(settings)
    if pid is not None:
        _wait_healthy(settings, pid, time.monotonic() + wait_s)
        return status(settings)

    home = assemble(settings)
    java_home = find_java_home(settings)
    node_dir = _prepare_node_dir(settings, home)
    env = _tool_env(home, java_home)
    env.update(
        OPENSEARCH_PATH_CONF=str(node_dir / "config"),
        OPENSEARCH_TMPDIR=str(node_dir / "tmp"),
        OPENSEARCH_JAVA_OPTS=" ".join(
            [f"-Xms{settings.heap}", f"-Xmx{settings.heap}", os.environ.get("OPENSEARCH_JAVA_OPTS", "")]
        ).strip(),
        HOME=str(node_dir),
    )
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
    try:
        _wait_healthy(settings, proc.pid, time.monotonic() + wait_s)
    except ServerError:
        _terminate(proc.pid, grace_s=20)
        settings.pid_file.unlink(missing_ok=True)
        raise
    return status(settings)


def _wait_healthy(settings: ServerSettings, pid: int, deadline: float) -> None:
    while True:
        if not _pid_alive(pid):
            raise _startup_error(settings, "exited during start-up")
        if _healthy(settings, wait="1s"):
            return
        if time.monotonic() > deadline:
            raise _startup_error(settings, "was not healthy in time")
        time.sleep(0.5)


def stop(settings: ServerSettings, grace_s: float = 30.0) -> bool:
    """Stop the node on `settings.port` (SIGTERM, then SIGKILL after `grace_s`); False if none ran."""
    pid = _read_pid(settings)
    if pid is None:
        return False
    _terminate(pid, grace_s)
    settings.pid_file.unlink(missing_ok=True)
    return True


def status(settings: ServerSettings) -> dict[str, Any]:
    """What runs on the port: our process (pid), whether it answers, its version, plugins and health."""
    pid = _read_pid(settings)
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


# ---------------------------------------------------------------------------------------------- CLI


def _parse_setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value.strip()


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    settings = ServerSettings(
        version=args.version,
        port=args.port,
        heap=args.heap or ServerSettings.heap,
        cache_dir=Path(args.cache_dir) if args.cache_dir else default_cache_dir(),
        run_dir=Path(args.run_dir) if args.run_dir else None,
        extra=dict(args.setting),
        plugins=tuple(args.plugin) if args.plugin else DEFAULT_PLUGINS,
    )
    return with_ml(settings, heap_given=args.heap is not None) if args.with_ml else settings


def main(argv: list[str] | None = None) -> int:
    """CLI: start | stop | status | assemble. Exit status 1 with a message and the log tail on failure."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--version", default=DEFAULT_VERSION, help=f"OpenSearch version (default {DEFAULT_VERSION})"
    )
    common.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    common.add_argument("--heap", help=f"JVM heap, -Xms and -Xmx (default 1g, {ML_HEAP} with --with-ml)")
    common.add_argument(
        "--setting",
        action="append",
        type=_parse_setting,
        default=[],
        metavar="KEY=VALUE",
        help="extra opensearch.yml setting, repeatable",
    )
    common.add_argument(
        "--plugin",
        action="append",
        default=[],
        help="plugin artifactId under org.opensearch.plugin, repeatable, in install order "
        "(default opensearch-knn)",
    )
    common.add_argument(
        "--with-ml",
        action="store_true",
        help="add job-scheduler, ml-commons and neural-search (neural/hybrid queries, remote models) "
        "with the settings a one-node cluster needs",
    )
    common.add_argument("--cache-dir", help="default $RETROSEARCH_CACHE or ~/.cache/retrosearch")
    common.add_argument("--run-dir", help="node config/data/logs (default <cache>/opensearch/<v>/run/<port>)")
    parser = argparse.ArgumentParser(prog="server.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start_cmd = commands.add_parser(
        "start", parents=[common], help="assemble if needed, start, wait for yellow"
    )
    start_cmd.add_argument(
        "--wait", type=float, default=180.0, help="seconds to wait for health (default 180)"
    )
    commands.add_parser("stop", parents=[common], help="stop the node on --port")
    commands.add_parser("status", parents=[common], help="print the node's status as JSON")
    commands.add_parser("assemble", parents=[common], help="download and assemble only")
    args = parser.parse_args(argv)
    settings = settings_from_args(args)

    try:
        if args.command == "assemble":
            began = time.monotonic()
            fresh = not (settings.home / MARKER).is_file()
            home = assemble(settings)
            verb = "assembled" if fresh else "already assembled"
            print(f"{verb}: {home} ({time.monotonic() - began:.1f}s)")
        elif args.command == "start":
            began = time.monotonic()
            info = start(settings, wait_s=args.wait)
            print(
                f"OpenSearch {info['version']} ({info['health']}) at {info['url']}, pid {info['pid']}, "
                f"plugins {','.join(info['plugins']) or '-'} ({time.monotonic() - began:.1f}s)"
            )
        elif args.command == "stop":
            print(
                f"stopped node on port {settings.port}"
                if stop(settings)
                else f"no node of ours running on port {settings.port}"
            )
        else:
            print(json.dumps(status(settings), indent=2))
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
