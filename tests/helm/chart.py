"""Helpers of the Helm chart's tests: helm (fetched by scripts/helm.sh) renders the chart offline.

No Kubernetes cluster runs here: built-in objects are checked against Kubernetes' schemas
(kubernetes-validate), RayJob/RayService against KubeRay's CRDs, and the commands the objects run
against the `retrosearch` CLI itself.
"""

from __future__ import annotations

import functools
import importlib.util
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "retrosearch"
EXAMPLES = sorted((REPO / "helm" / "examples").glob("*.yaml"))
KUBERAY_SCHEMAS = REPO.parent / "shared" / "schemas" / "kuberay"
KUBERAY_APIS = ("ray.io/v1/RayService", "ray.io/v1/RayJob")
# The external-OpenSearch example asks for a ServiceMonitor (the Prometheus operator's CRD).
CLUSTER_APIS = (*KUBERAY_APIS, "monitoring.coreos.com/v1/ServiceMonitor")
# A password no template may show outside the Secret it belongs in.
SENTINEL_PASSWORD = "Sentinel-pw-7f3a9c-never-outside-a-secret"


class HelmError(RuntimeError):
    """helm exited non-zero; the message is its stderr."""


@functools.cache
def load_cli_schema():
    """helm/cli_schema.py (the chart's options, generated from the CLI) as a module."""
    spec = importlib.util.spec_from_file_location("cli_schema", REPO / "helm" / "cli_schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Helm:
    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.binary), *args], capture_output=True, text=True, timeout=120)

    @functools.lru_cache(maxsize=None)
    def _template(self, files: tuple[str, ...], sets: tuple[str, ...], crds: bool, extra: tuple[str, ...]) -> str:
        args = ["template", "rs", str(CHART), "--namespace", "search"]
        for f in files:
            args += ["-f", f]
        for s in sets:
            args += ["--set", s]
        if crds:
            for api in CLUSTER_APIS:
                args += ["--api-versions", api]
        proc = self.run(*args, *extra)
        if proc.returncode != 0:
            raise HelmError(proc.stderr)
        return proc.stdout

    def template(self, *files: Path | str, sets: tuple[str, ...] = (), crds: bool = True,
                 extra: tuple[str, ...] = (), text: bool = False) -> Any:
        """The rendered objects (a list of dicts, hooks and tests included), or the raw text."""
        out = self._template(tuple(str(f) for f in files), tuple(sets), crds, tuple(extra))
        return out if text else [doc for doc in yaml.safe_load_all(out) if doc]


def write_values(tmp_path: Path, values: dict, name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} named *{name_suffix}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def serve_argv(rayservice: dict) -> list[str]:
    """The `retrosearch serve` arguments inside a RayService's Ray Serve config."""
    config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    (application,) = config["applications"]
    assert application["import_path"] == "retrosearch.plugin.serve.ray_entry:app_builder"
    return application["args"]["argv"]


def entrypoint_argv(rayjob: dict) -> list[str]:
    return shlex.split(rayjob["spec"]["entrypoint"])


def cli_command(path: tuple[str, ...]):
    """The click command of `retrosearch PATH...`; a group's own options as a plain command."""
    import typer.core

    cmd = load_cli_schema().command(path)
    if hasattr(cmd, "commands"):  # `serve` is a group with its own options
        cmd = typer.core.TyperCommand(path[-1], params=cmd.params, callback=cmd.callback)
    return cmd


def parse_cli(path: tuple[str, ...], argv: list[str]) -> dict[str, Any]:
    """The parameters `retrosearch PATH... ARGV` is called with (raises on an unknown option)."""
    cmd = cli_command(path)
    with cmd.make_context(" ".join(path), list(argv), resilient_parsing=False) as ctx:
        return dict(ctx.params)


def cli_long_options(path: tuple[str, ...]) -> set[str]:
    return {o for p in cli_command(path).params for o in [*p.opts, *p.secondary_opts] if o.startswith("--")}


def pod_specs(obj: dict) -> list[dict]:
    """Every pod spec inside an object (Pod, Job, RayService/RayJob head and worker templates)."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind == "Pod":
        return [spec]
    if kind == "Job":
        return [spec["template"]["spec"]]
    cluster = spec.get("rayClusterConfig") or spec.get("rayClusterSpec")
    if cluster:
        groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
        return [g["template"]["spec"] for g in groups]
    return []
