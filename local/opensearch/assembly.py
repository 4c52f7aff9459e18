"""Assemble an OpenSearch distribution with plugins from Maven Central only, and find the JDK to run it.

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

The result is cached under ``${RETROSEARCH_CACHE:-~/.cache/retrosearch}/opensearch/<v>/``.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from retrosearch.core.process import tail_text

from .node_config import MARKER, ServerError, ServerSettings

# ingest-common and the libraries only it needs (everything else downloaded belongs to lang-painless).
_INGEST_COMMON_ARTIFACTS = {"ingest-common", "opensearch-grok", "opensearch-dissect", "jcodings", "joni"}

# lang-painless's own code is in the jars below; everything else it needs is already in lib/.
_PAINLESS_POLICY = """grant {
  // generates classes for compiled scripts at runtime
  permission java.lang.RuntimePermission "createClassLoader";
  // finds the class loader of allow-listed classes
  permission java.lang.RuntimePermission "getClassLoader";
};
"""



def _build_once(target: Path, marker: str, name: str, build) -> Path:
    """``target`` built by ``build(work_dir) -> built_dir`` once, atomically, under a file lock.

    The tree is built in a temporary sibling and renamed into place, so concurrent or interrupted
    runs never leave a half-built ``target``; ``marker`` (a file inside it) says it is complete.
    Each kind of build (``name``) has its own lock and temporary prefix, so one never removes
    another's work in progress.
    """
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".tmp-{name}-"
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / marker).is_file():
            return target
        for stale in target.parent.glob(f"{prefix}*"):
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():  # only possible if someone deleted the marker by hand
            shutil.rmtree(target)
        work = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        try:
            os.rename(build(work), target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def assemble(settings: ServerSettings) -> Path:
    """Build the distribution for `settings.version` + `settings.plugins` once; return its home.

    Idempotent and atomic (:func:`_build_once`).
    """
    return _build_once(settings.home, MARKER, "assemble", lambda work: _build(settings, work))


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
    env = tool_env(home, java_home)
    for name in settings.plugins:
        plugin_zip = artifacts / f"{name}-{_plugin_version(version)}.zip"
        result = subprocess.run(
            [str(home / "bin" / "opensearch-plugin"), "install", "--batch", plugin_zip.resolve().as_uri()],
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise ServerError(f"installing {name} failed:\n{tail_text(result.stdout + result.stderr)}")

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
            + tail_text(result.stdout + result.stderr)
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


def tool_env(home: Path, java_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OPENSEARCH_JAVA_HOME=str(java_home), OPENSEARCH_PATH_CONF=str(home / "config"))
    return env


# ml-commons' ONNX text-embedding translator tokenizes, pools and normalises with DJL array
# operations that run on DJL's PyTorch engine, so a local ONNX model needs libtorch too. By default
# DJL downloads it from the internet at deploy time (offline: "Failed to save pytorch index file",
# and DJL stays broken until the node restarts). Maven Central publishes both halves: libtorch
# itself and DJL's JNI bridge. ml-commons 2.19.1 bundles DJL 0.31.1, whose JNI build is not on
# Maven Central; 0.32.0's declares the same native methods (checked by the local-model tests).
LIBTORCH_VERSION = "2.5.1"
DJL_JNI_VERSION = "2.5.1-0.32.0"
LIBTORCH_FLAVOR = "cpu"  # ml-commons runs ONNX models on the CPU; libtorch only pools their output
# Written last into the libtorch folder: its presence means every library is in place.
LIBTORCH_MARKER = "retrosearch-libtorch.json"


def libtorch_dir(settings: ServerSettings) -> Path:
    """Where the offline libtorch of this version's ml-commons lives (see :func:`assemble_libtorch`)."""
    djl = DJL_JNI_VERSION.split("-")[-1]
    return settings.version_dir / f"libtorch-{LIBTORCH_VERSION}-{LIBTORCH_FLAVOR}-djl{djl}"


def _native_classifier() -> str:
    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
        platform.machine().lower()
    )
    if platform.system() != "Linux" or machine is None:
        raise ServerError(
            f"no offline libtorch for {platform.system()} {platform.machine()}: ml-commons local models "
            "need linux-x86_64 or linux-aarch64 (or set PYTORCH_LIBRARY_PATH to a libtorch folder yourself)"
        )
    return f"linux-{machine}"


def assemble_libtorch(settings: ServerSettings) -> Path:
    """The folder of libtorch and ``libdjl_torch.so`` for ml-commons local models, fetched once.

    The node finds it through ``PYTORCH_LIBRARY_PATH`` (set by the server at start), so a model
    deploy never reaches for the internet. Built like the distribution (:func:`_build_once`).
    """
    return _build_once(libtorch_dir(settings), LIBTORCH_MARKER, "libtorch", _build_libtorch)


def _build_libtorch(work: Path) -> Path:
    classifier = _native_classifier()
    jars = _maven_copy(
        work / "maven",
        [("ai.djl.pytorch", "pytorch-native-cpu", LIBTORCH_VERSION, classifier),
         ("ai.djl.pytorch", "pytorch-jni", DJL_JNI_VERSION, None)],
        what=f"libtorch {LIBTORCH_VERSION} ({classifier}) and DJL's JNI library {DJL_JNI_VERSION}",
    )
    out = work / "libtorch"
    out.mkdir()
    # One flat folder: DJL looks for libtorch and libdjl_torch.so in PYTORCH_LIBRARY_PATH itself.
    wanted = (f"pytorch/{LIBTORCH_FLAVOR}/{classifier}/", f"jnilib/{classifier}/{LIBTORCH_FLAVOR}/")
    for jar in jars:
        with zipfile.ZipFile(jar) as zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.startswith(wanted) or ".so" not in info.filename:
                    continue
                with zf.open(info) as src, open(out / Path(info.filename).name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    found = sorted(p.name for p in out.iterdir())
    if "libdjl_torch.so" not in found or "libtorch.so" not in found:
        names = ", ".join(j.name for j in jars)
        raise ServerError(f"the Maven artifacts {names} hold no {classifier} libtorch "
                          f"and libdjl_torch.so (found {found or 'nothing'})")
    for lib in out.iterdir():
        os.chmod(lib, 0o555)
    os.chmod(out, 0o755)
    record = {"libtorch": LIBTORCH_VERSION, "djl_jni": DJL_JNI_VERSION, "classifier": classifier,
              "files": found}
    (out / LIBTORCH_MARKER).write_text(json.dumps(record, indent=2) + "\n")
    return out


def _maven_copy(work: Path, artifacts: list[tuple[str, str, str, str | None]], what: str) -> list[Path]:
    """Download jars (group, artifact, version, classifier), none of their dependencies; their paths."""
    deps = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>"
        + (f"<classifier>{c}</classifier>" if c else "")
        + "<exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>"
        "</dependency>"
        for g, a, v, c in artifacts
    )
    work.mkdir(parents=True)
    (work / "pom.xml").write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>retrosearch.local</groupId><artifactId>opensearch-native</artifactId><version>0</version>"
        f"<dependencies>{deps}</dependencies></project>\n"
    )
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServerError(f"`mvn` is not on PATH; it is needed once to download {what} from Maven Central")
    out = work / "out"
    result = subprocess.run(
        [mvn, "-B", "-q", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={out}"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise ServerError(f"Maven could not fetch {what}:\n" + tail_text(result.stdout + result.stderr))
    return sorted(out.glob("*.jar"))
