"""The chart runs the guides' commands: `retrosearch serve --ray`, `ingest`, `train retromae|llara|finetune`.

Each command line of the guides (docs/guides/*.md) becomes values (its options in camelCase); the
rendered RayService's Ray Serve arguments, or the RayJob's entrypoint, are parsed by the CLI's own
parser and must give the same parameters, apart from what the chart sets for the cluster (Ray
address, OpenSearch URL, listening address). Every option rendered anywhere must be an option of
its command.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from tests.helm.chart import (
    EXAMPLES, REPO, by_kind, cli_command, cli_long_options, entrypoint_argv, one, parse_cli, serve_argv, write_values,
)

TRAINERS = ("retromae", "llara", "finetune")


def guide_commands(*words: str) -> list[list[str]]:
    """The guides' `retrosearch WORDS...` command lines (bash blocks; continuations joined; comments cut)."""
    out = []
    for guide in sorted((REPO / "docs" / "guides").glob("*.md")):
        for block in re.findall(r"```bash\n(.*?)```", guide.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if not line.startswith("retrosearch "):
                    continue
                argv = shlex.split(line, comments=True)
                if argv[: len(words) + 1] == ["retrosearch", *words]:
                    out.append(argv[len(words) + 1:])
    assert out, f"no `retrosearch {' '.join(words)}` command in docs/guides"
    return out


def given_options(path: tuple[str, ...], argv: list[str]) -> dict[str, object]:
    """{long option: value} of the options ARGV gives explicitly, as the CLI parses them."""
    from retrosearch.core.cli_options import SETTING_OPTIONS

    cmd = cli_command(path)
    # An old spelling (README lines written before a rename) counts as the option it stands for.
    aliases = getattr(cmd.callback, "deprecated_aliases", {})
    with cmd.make_context(" ".join(path), list(argv)) as ctx:
        out = {}
        for param in cmd.params:
            if getattr(ctx.get_parameter_source(param.name), "name", None) == "COMMANDLINE":
                long = next(o for o in param.opts if o.startswith("--"))
                value = ctx.params[param.name]
                if param.name in aliases:
                    alias = aliases[param.name]
                    long, value = alias.option, (alias.alias.value if alias.alias.is_flag else value)
                if param.name in SETTING_OPTIONS and SETTING_OPTIONS[param.name].repeatable:
                    value = ",".join(value)  # as the setting holds it, and as the chart passes one value
                out[long] = [str(v) for v in value] if isinstance(value, (list, tuple)) else (
                    str(value) if isinstance(value, Path) else value)
        return out


def to_values_options(given: dict[str, object], chart_set: set[str]) -> dict[str, object]:
    from tests.helm.chart import load_cli_schema

    camel = load_cli_schema().camel
    return {camel(option): value for option, value in given.items() if option not in chart_set}


def assert_same_call(path, rendered_argv, guide_argv, chart_set: set[str]):
    rendered = given_options(path, rendered_argv)
    wanted = given_options(path, guide_argv)
    keep = lambda d: {k: v for k, v in d.items() if k not in chart_set}  # noqa: E731
    assert keep(rendered) == keep(wanted), f"retrosearch {' '.join(path)}: {rendered_argv} != guide {guide_argv}"
    return rendered


@pytest.mark.parametrize("argv", [a for a in guide_commands("serve") if "--background" not in a], ids=" ".join)
def test_rayservice_runs_the_guide_serve_command(helm, tmp_path, argv):
    given = given_options(("serve",), argv)
    # The default target (indexName: docs) is replaced, as a user serving a folder or a model does.
    options = {"indexName": None, **to_values_options(given, {"--opensearch-url", "--port", "--ray", "--host"})}
    values = {"serve": {"options": options}}
    if "--port" in given:
        values["serve"]["port"] = given["--port"]
    if "--opensearch-url" in given:
        values["opensearch"] = {"url": given["--opensearch-url"]}
    objects = helm.template(write_values(tmp_path, values))
    rendered = serve_argv(one(objects, "RayService"))
    got = assert_same_call(("serve",), rendered, argv, chart_set={"--ray", "--host", "--port", "--opensearch-url"})
    assert got["--ray"] is True and got["--host"] == "0.0.0.0" and got["--port"] == given.get("--port", 8000)
    assert got["--opensearch-url"] == given.get("--opensearch-url", "https://opensearch-cluster-master:9200")
    # Ray Serve listens where the command would.
    import yaml

    config = yaml.safe_load(one(objects, "RayService")["spec"]["serveConfigV2"])
    assert config["http_options"] == {"host": "0.0.0.0", "port": given.get("--port", 8000)}


@pytest.mark.parametrize("argv", guide_commands("ingest"), ids=" ".join)
def test_ingest_rayjob_runs_the_guide_ingest_command(helm, tmp_path, argv):
    given = given_options(("ingest",), argv)
    values = {
        "ingest": {"enabled": True, "options": to_values_options(given, {"--ray-address", "--opensearch-url"})},
        "storage": {"existingClaim": "retrosearch-data"},
    }
    job = one(helm.template(write_values(tmp_path, values)), "RayJob", "-ingest")
    argv_rendered = entrypoint_argv(job)
    assert argv_rendered[:2] == ["retrosearch", "ingest"]
    got = assert_same_call(("ingest",), argv_rendered[2:], argv, chart_set={"--ray-address", "--opensearch-url"})
    assert got["--ray-address"] == "auto"  # the job's own Ray cluster, as the guide's cluster line does
    if got.get("--sink") == "opensearch":
        assert got["--opensearch-url"] == "https://opensearch-cluster-master:9200"
    else:
        assert "--opensearch-url" not in got


@pytest.mark.parametrize(("method", "argv"), [(m, a) for m in TRAINERS for a in guide_commands("train", m)],
                         ids=lambda v: v if isinstance(v, str) else " ".join(v)[:40])
def test_train_rayjob_runs_the_guide_train_command(helm, tmp_path, method, argv):
    path = ("train", method)
    given = given_options(path, argv)
    values = {
        "train": {method: {"enabled": True, "options": to_values_options(given, {"--ray-address"})}},
        "storage": {"existingClaim": "retrosearch-data"},
    }
    job = one(helm.template(write_values(tmp_path, values)), "RayJob", f"-train-{method}")
    rendered = entrypoint_argv(job)
    assert rendered[:3] == ["retrosearch", "train", method]
    got = assert_same_call(path, rendered[3:], argv, chart_set={"--ray-address"})
    assert got["--ray-address"] == "auto"


def _all_jobs(helm):
    """Every example, the GPU one with every trainer enabled: all RayJobs and the RayService."""
    renders = {f.name: helm.template(f) for f in EXAMPLES}
    gpu = REPO / "helm" / "examples" / "gpu-cluster.yaml"
    renders["gpu-all-trainers"] = helm.template(gpu, sets=("train.retromae.enabled=true", "train.llara.enabled=true"))
    renders["defaults"] = helm.template()
    return renders


def test_every_rendered_option_is_a_real_option(helm):
    seen = set()
    for name, objects in _all_jobs(helm).items():
        commands = [(("serve",), serve_argv(o)) for o in by_kind(objects, "RayService")]
        for job in by_kind(objects, "RayJob"):
            argv = entrypoint_argv(job)
            words = 2 if argv[1] == "ingest" else 3
            commands.append((tuple(argv[1:words]), argv[words:]))
        for hook in by_kind(objects, "Job"):
            args = hook["spec"]["template"]["spec"]["containers"][0]["args"]
            commands.append((tuple(args[:2]), args[2:]))
        for path, argv in commands:
            real = cli_long_options(path)
            unknown = [a for a in argv if a.startswith("--") and a not in real]
            assert not unknown, f"{name}: retrosearch {' '.join(path)} has no {unknown}"
            parse_cli(path, argv)  # the CLI's parser accepts the whole line (types, values)
            seen.add(path)
    assert seen == {("serve",), ("ingest",), *(("train", m) for m in TRAINERS), ("opensearch", "connect")}


def test_gpu_example_gives_the_jobs_their_gpus(helm):
    objects = helm.template(REPO / "helm" / "examples" / "gpu-cluster.yaml")
    for job in by_kind(objects, "RayJob"):
        workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
        limits = workers["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == 1
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in workers["template"]["spec"]["tolerations"]
        argv = entrypoint_argv(job)
        assert ["--gpus-per-worker", "1"] == argv[argv.index("--gpus-per-worker"):][:2]
    service = one(objects, "RayService")
    argv = serve_argv(service)
    assert argv[argv.index("--gpus-per-worker") + 1] == "1"
    assert service["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True


def test_options_render_types_the_cli_reads(helm, tmp_path):
    """Large integers stay integers, floats keep their value, lists repeat, false is the negative."""
    values = {
        "storage": {"existingClaim": "data"},
        "ingest": {"enabled": True, "options": {
            "corpus": ["/data/a b.jsonl", "/data/it's.jsonl"], "maxTextChars": 1000000, "cpusPerWorker": 0.5,
            "tokenizeStage": False, "forceMerge": True, "keepField": ["lang", "year"], "sink": "faiss", "out": "/data/x"}},
        "train": {"finetune": {"enabled": True, "options": {"out": "/data/m", "lora": False, "lr": 2.0e-5}}},
    }
    objects = helm.template(write_values(tmp_path, values))
    ingest = parse_cli(("ingest",), entrypoint_argv(one(objects, "RayJob", "-ingest"))[2:])
    assert [str(p) for p in ingest["corpus"]] == ["/data/a b.jsonl", "/data/it's.jsonl"]
    assert ingest["max_text_chars"] == 1000000 and ingest["cpus_per_worker"] == 0.5
    assert ingest["tokenize_stage"] is False and ingest["force_merge"] is True
    assert list(ingest["keep_field"]) == ["lang", "year"]
    finetune = entrypoint_argv(one(objects, "RayJob", "-train-finetune"))
    assert "--no-lora" in finetune
    assert parse_cli(("train", "finetune"), finetune[3:])["lr"] == pytest.approx(2e-5)
