"""``ray job submit``: ingestion as a cluster job that carries its own code, model and input.

The job folder holds the staged ``retrosearch`` package (built from this checkout's wheel), the
model and the corpus, and nothing is named by an absolute path of this machine except the output
(storage every node sees). The job prints where it imported RetroSearch from: the copy Ray
unpacked from the uploaded folder, not this checkout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from retrosearch.local.ray_job import stage
from tests.cluster.conftest import REPO, command_env, record_figure

pytestmark = pytest.mark.cluster


def test_ingest_runs_as_a_submitted_job(cluster, tiny_bert: Path, small_scifact: Path, tmp_path: Path) -> None:
    job = tmp_path / "job"
    stage(job)
    shutil.copytree(tiny_bert, job / "model")
    shutil.copy(small_scifact / "corpus.jsonl", job / "corpus.jsonl")
    out = tmp_path / "index"
    entrypoint = (
        "python -c 'import retrosearch.ingest; print(\"retrosearch from\", retrosearch.ingest.__file__)' && "
        f"python -m retrosearch.cli ingest --ray-address auto --corpus corpus.jsonl --model model "
        f"--sink faiss --out {out} --workers 2 --chunk-rows 20"
    )
    # The submitting process's runtime env carries only the code folder; the job's driver adds
    # its start-up variables itself (ensure_ray), as it does on a laptop.
    runtime_env = {"working_dir": str(job)}
    command = [
        sys.executable, "-m", "ray.scripts.scripts", "job", "submit", "--address", cluster.dashboard_url,
        "--runtime-env-json", json.dumps(runtime_env), "--", "sh", "-c", entrypoint,
    ]
    # Run from an empty folder: nothing of the checkout is on the submitting side's path either.
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=command_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "succeeded" in output
    origin = next(line for line in output.splitlines() if line.startswith("retrosearch from"))
    assert str(REPO) not in origin and "runtime_resources" in origin, origin

    summary = json.loads(output[output.index("{\n") : output.index("\n}") + 2])
    corpus_ids = [json.loads(line)["_id"] for line in (small_scifact / "corpus.jsonl").read_text().splitlines()]
    assert summary["rows_written"] == summary["sink_count"] == len(corpus_ids)
    from retrosearch.core.config import Settings
    from retrosearch.core.index.faiss_index import FaissIndex

    ids, _ = FaissIndex.open_saved(out, Settings()).stored_vectors()
    assert sorted(ids) == sorted(corpus_ids)
    record_figure("job_ingest", {"docs": len(corpus_ids), "seconds": summary["total_seconds"]})
