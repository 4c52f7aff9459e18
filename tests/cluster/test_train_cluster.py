"""``retrosearch train ... --ray-address`` with 2 workers on different nodes (gloo on CPU).

RetroMAE loses its worker node mid-run, and the same command run again resumes from the last
checkpoint in the storage folder both nodes see: the resumed run's loss curve must equal an
uninterrupted run's (same command, another run folder) step by step, and its first steps after
the checkpoint must repeat what the killed run logged for them. Fine-tuning runs once across the
two nodes (its resume is the same harness code, tested on one node in tests/trainers/).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.cluster.conftest import DATA, WORKER, actor_nodes, record_figure, run_command, start_command, wait_for, wait_for_nodes
from retrosearch.local import ray_cluster

pytestmark = pytest.mark.cluster

STEPS, EVERY = 16, 4
TRAIN_WORKER = "RayTrainWorker"


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = DATA / "scifact" / "corpus.jsonl"
    if not source.exists():
        pytest.skip(f"shared data not found at {source}")
    folder = tmp_path_factory.mktemp("train-data")
    with source.open() as handle:
        docs = [json.loads(line) for line, _ in zip(handle, range(160))]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    # Fine-tuning groups from real text: a title as the query, its abstract as the positive and
    # the next document's abstract as the negative.
    groups = [
        {"query": d["title"], "positives": [d["text"]], "negatives": [docs[i + 1]["text"]]}
        for i, d in enumerate(docs[:-1]) if d["title"]
    ]
    (folder / "groups.jsonl").write_text("".join(json.dumps(g) + "\n" for g in groups))
    # One worker per node; every other setting comes from the command line.
    (folder / "spread.json").write_text(json.dumps({"train": {"placement_strategy": "STRICT_SPREAD"}}))
    return folder


def train_args(method: str, model: Path, data: Path, out: Path, address: str) -> list[str]:
    common = [
        "--out", str(out), "--model", str(model), "--steps", str(STEPS), "--train-batch-size", "8", "--workers", "2",
        "--checkpoint-every", str(EVERY), "--log-every", "1", "--ray-address", address,
        "--config", str(data / "spread.json"), "--lr", "1e-3",
    ]
    if method == "retromae":
        return ["train", "retromae", "--corpus", str(data / "corpus.jsonl"), "--max-length", "64", *common]
    return [
        "train", "finetune", "--train-file", str(data / "groups.jsonl"), "--group-size", "2",
        "--query-max-length", "16", "--passage-max-length", "48", *common,
    ]


def log_records(out: Path, method: str) -> list[dict]:
    path = out.with_name(out.name + ".train") / method / "train_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def steps_of(records: list[dict]) -> dict[int, dict]:
    return {r["step"]: r for r in records if "step" in r}


def test_finetuning_runs_on_two_nodes(cluster, texts: Path, tiny_bert_encoder: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    proc = start_command(train_args("finetune", tiny_bert_encoder, texts, out, cluster.address), tmp_path / "run.log")
    wait_for(lambda: actor_nodes(cluster, TRAIN_WORKER) if len(actor_nodes(cluster, TRAIN_WORKER)) == 2 else None,
             120, "two train workers")
    placed = sorted(actor_nodes(cluster, TRAIN_WORKER))
    assert proc.wait(timeout=300) == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert placed == ["head", "w1"], f"train workers on {placed}"
    steps = steps_of(log_records(out, "finetune"))
    assert sorted(steps) == list(range(1, STEPS + 1))
    assert all(0 < r["loss"] < 10 for r in steps.values())
    assert (out / "retrosearch.json").is_file()


def test_retromae_resumes_after_a_lost_worker_node(
    cluster, lose_worker_node, texts: Path, tiny_bert_encoder: Path, tmp_path: Path
) -> None:
    method = "retromae"
    reference_out = tmp_path / "reference"
    log = tmp_path / "reference.log"
    assert run_command(train_args(method, tiny_bert_encoder, texts, reference_out, cluster.address), log) == 0, log.read_text()[-3000:]
    reference = steps_of(log_records(reference_out, method))
    assert sorted(reference) == list(range(1, STEPS + 1))

    out = tmp_path / "model"
    args = train_args(method, tiny_bert_encoder, texts, out, cluster.address)
    started = time.monotonic()
    proc = start_command(args, tmp_path / "run1.log")
    wait_for(lambda: actor_nodes(cluster, TRAIN_WORKER) if len(actor_nodes(cluster, TRAIN_WORKER)) == 2 else None,
             120, "two train workers")
    placed = sorted(actor_nodes(cluster, TRAIN_WORKER))
    # Past the second checkpoint, so that the rerun has one to resume from and steps to redo.
    wait_for(lambda: max(steps_of(log_records(out, method)), default=0) > 2 * EVERY or proc.poll() is not None,
             180, f"step {2 * EVERY + 1}")
    assert proc.poll() is None, f"the run ended before the node was lost:\n{(tmp_path / 'run1.log').read_text()[-3000:]}"
    lost_at = lose_worker_node()
    exit_code = proc.wait(timeout=300)
    failed_after_s = time.monotonic() - lost_at
    killed_run = steps_of(log_records(out, method))
    assert placed == ["head", "w1"], f"train workers on {placed}"
    assert exit_code != 0 and not out.exists(), (tmp_path / "run1.log").read_text()[-3000:]
    assert max(killed_run) < STEPS

    # The way back: the node returns (a replacement machine), and the same command runs again.
    ray_cluster.start_node(cluster, WORKER)
    wait_for_nodes(cluster, 2)
    rerun_started = time.monotonic()
    assert run_command(args, tmp_path / "run2.log") == 0, (tmp_path / "run2.log").read_text()[-3000:]
    rerun_s = time.monotonic() - rerun_started
    records = log_records(out, method)
    resumed_at = next(i for i, r in enumerate(records) if r.get("message", "").startswith("resumed"))
    checkpoint = int(records[resumed_at]["message"].rsplit(" ", 1)[1])
    assert checkpoint % EVERY == 0 and EVERY <= checkpoint <= max(killed_run)
    resumed = steps_of(records[resumed_at:])
    assert sorted(resumed) == list(range(checkpoint + 1, STEPS + 1))
    for step in range(checkpoint + 1, max(killed_run) + 1):  # redone steps repeat the killed run's
        assert resumed[step]["loss"] == pytest.approx(killed_run[step]["loss"], rel=1e-5), step
    for step in range(1, STEPS + 1):  # the whole curve: the uninterrupted run's
        got = resumed.get(step) or killed_run[step]
        assert got["loss"] == pytest.approx(reference[step]["loss"], rel=1e-4, abs=1e-6), step
        assert got["lr"] == pytest.approx(reference[step]["lr"], rel=1e-9), step
    assert (out / "retrosearch.json").is_file()
    record_figure(f"train_{method}", {
        "steps": STEPS, "checkpoint_every": EVERY, "lost_after_step": max(killed_run),
        "resumed_from_step": checkpoint, "failure_seen_after_s": round(failed_after_s, 1),
        "rerun_s": round(rerun_s, 1), "total_s": round(time.monotonic() - started, 1),
    })
