"""The Dockerfile installs what scripts/env.sh installs (no Docker engine here: its text is checked)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

import yaml

from tests.helm.chart import CHART, REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
PYPROJECT = tomllib.load(open(REPO / "pyproject.toml", "rb"))


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", joined, flags=re.M)]


def test_entrypoint_is_the_retrosearch_cli():
    steps = instructions(DOCKERFILE)
    entrypoints = [args for name, args in steps if name == "ENTRYPOINT"]
    assert json.loads(entrypoints[-1]) == ["retrosearch"]
    assert PYPROJECT["project"]["scripts"]["retrosearch"] == "retrosearch.cli:main"


def test_installs_the_same_requirements_as_env_sh():
    run = " ".join(args for name, args in instructions(DOCKERFILE) if name == "RUN")
    helper = "scripts/requirements.py pyproject.toml"
    # The same listing of pyproject.toml as scripts/env.sh's (without the dev extra), then the no-deps list.
    assert f"{helper} > /tmp/requirements.txt" in run and f"{helper} --no-deps > /tmp/no-deps.txt" in run
    assert "scripts/requirements.py" in (REPO / "scripts" / "env.sh").read_text()
    assert "pip install -r /tmp/requirements.txt" in run and "pip install --no-deps -r /tmp/no-deps.txt" in run
    assert "pip install --no-deps --no-build-isolation ." in run and "pip check" in run
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "requirements.py"), str(REPO / "pyproject.toml")],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == PYPROJECT["project"]["dependencies"]


def test_torch_is_the_pinned_one():
    (torch,) = [r for r in PYPROJECT["project"]["dependencies"] if r.startswith("torch")]
    assert re.fullmatch(r"torch==[0-9.]+", torch), "pyproject pins torch exactly"
    # The CPU variant installs exactly that pin from PyTorch's CPU index before the rest.
    assert "\"$(grep '^torch==' /tmp/requirements.txt)\"" in DOCKERFILE
    assert "--index-url \"$TORCH_CPU_INDEX\"" in DOCKERFILE
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", DOCKERFILE, flags=re.M)
    python = re.search(r"^ARG PYTHON_VERSION=(\S+)$", DOCKERFILE, flags=re.M)[1]
    assert python == "3.11"  # scripts/env.sh's interpreter


def test_copies_every_layer_of_the_package():
    copied = {args.split()[0] for name, args in instructions(DOCKERFILE) if name == "COPY" and "--from" not in args}
    layers = re.search(r"LAYERS = (\[.*\])", (REPO / "setup.py").read_text())[1]
    assert set(json.loads(layers.replace("'", '"'))) | {"retrosearch"} <= copied


def test_runs_as_non_root_and_carries_no_credentials():
    steps = instructions(DOCKERFILE)
    users = [args for name, args in steps if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert users[-1] == f"{values['securityContext']['runAsUser']}:{values['securityContext']['runAsGroup']}"
    declared = re.findall(r"(\w+)=", " ".join(args for name, args in steps if name in ("ENV", "ARG")))
    assert "HF_HUB_OFFLINE" in declared
    secretive = [n for n in declared if re.search(r"PASSWORD|SECRET|(^|_)TOKEN$|(^|_)KEY$|_USER$", n, flags=re.I)]
    assert not secretive, secretive
    assert "RETROSEARCH_OPENSEARCH" not in DOCKERFILE.split("# OpenSearch's come from")[1]
    assert (REPO / ".dockerignore").is_file()


def test_chart_image_is_the_dockerfiles():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert f"docker build -t {values['image']['repository']}:{chart['appVersion']} ." in DOCKERFILE
