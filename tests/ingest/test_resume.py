"""Kill an ingest mid-way, rerun the same command: every document ends up present exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA, without_session_ray

DOCS = 400


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "corpus.jsonl"
    lines = (DATA / "scifact" / "corpus.jsonl").read_text().splitlines()[:DOCS]
    path.write_text("\n".join(lines) + "\n")
    return path


def _ids(path: Path) -> set[str]:
    return {json.loads(line)["_id"] for line in path.read_text().splitlines()}


def _command(corpus: Path, model: Path, state: Path, *sink_args: str) -> list[str]:
    return [
        sys.executable, "-m", "retrosearch.cli", "ingest", "--corpus", str(corpus), "--model", str(model),
        "--chunk-rows", "10", "--block-rows", "10", "--write-concurrency", "1", "--state-dir", str(state),
        *sink_args,
    ]


def _fragments(state: Path) -> int:
    return len(list(state.glob("*/fragments/*/*.json")))


def _kill_midway(command: list[str], state: Path, min_fragments: int = 4, timeout_s: float = 300) -> int:
    """Start the job; once ``min_fragments`` chunk writes are recorded, freeze its whole process group
    (SIGSTOP), check it is still running, count the records it left, then SIGKILL it.

    Freezing first makes the kill land at a known point: nothing can finish or record between the
    check and the kill. Returns the chunk records present at the kill.
    """
    # Its own local Ray, killed with it: on a shared one, tasks of the killed job could still write.
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=without_session_ray())
    try:
        deadline = time.monotonic() + timeout_s
        while _fragments(state) < min_fragments:
            ended = proc.poll()
            assert ended is None, f"the job ended (exit {ended}) before {min_fragments} chunks were recorded"
            assert time.monotonic() < deadline, f"no {min_fragments} chunk records within {timeout_s} s"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGSTOP)
        assert proc.poll() is None, "the job had already finished: the kill would not have been mid-way"
        recorded = _fragments(state)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return recorded


def _finish(command: list[str], tmp_path: Path) -> dict:
    out = tmp_path / "summary.json"
    proc = subprocess.run([*command, "--json-out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_faiss_sink_resumes_after_kill(corpus, tiny_bert, tmp_path):
    from retrosearch.core.index import load_index

    state, out = tmp_path / "state", tmp_path / "index"
    command = _command(corpus, tiny_bert, state, "--sink", "faiss", "--out", str(out))
    recorded = _kill_midway(command, state)
    assert 4 <= recorded < DOCS // 10, "the kill was meant to land mid-way"
    summary = _finish(command, tmp_path)
    # One record per chunk of 10 rows: the rerun keeps exactly the chunks recorded before the kill.
    assert summary["rows_already_done"] == 10 * recorded
    assert summary["rows_already_done"] + summary["rows_written"] == DOCS
    index = load_index(out)
    assert index.count() == DOCS and sorted(index._ids) == sorted(_ids(corpus))  # every id exactly once
    again = _finish(command, tmp_path)  # a third run has nothing left to do
    assert again["rows_written"] == 0 and again["rows_already_done"] == DOCS and again["sink_count"] == DOCS


@pytest.mark.integration
def test_opensearch_sink_resumes_after_kill(corpus, tiny_bert, tmp_path, opensearch_url):
    from retrosearch.core.config import OpenSearchSettings
    from retrosearch.core.index.opensearch_index import OpenSearchIndex

    name = "test-ingest-resume"
    settings = OpenSearchSettings(url=opensearch_url, index=name)
    from retrosearch.core.opensearch.client import connect

    connect(settings).indices.delete(index=name, ignore_unavailable=True)
    state = tmp_path / "state"
    command = _command(
        corpus, tiny_bert, state, "--sink", "opensearch", "--index-name", name, "--opensearch-url", opensearch_url,
        "--replicas", "0",
    )
    recorded = _kill_midway(command, state)
    assert 4 <= recorded < DOCS // 10, "the kill was meant to land mid-way"
    summary = _finish(command, tmp_path)
    assert summary["rows_already_done"] == 10 * recorded
    assert summary["rows_already_done"] + summary["rows_written"] == DOCS and summary["sink_count"] == DOCS
    index = OpenSearchIndex.open(settings)
    assert index.count() == DOCS and index.ids() == _ids(corpus)
    hit = index.client.get(index=name, id=sorted(_ids(corpus))[0])["_source"]
    assert hit["title"] is not None and len(hit["embedding"]) == 32
    current = index.client.indices.get_settings(index=name)[name]["settings"]["index"]
    assert current.get("refresh_interval") != "-1"
    index.delete()
