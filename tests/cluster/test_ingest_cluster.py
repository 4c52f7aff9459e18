"""``retrosearch ingest --ray-address`` on the two-node cluster, with the worker node lost mid-job.

The job runs as a user runs it (a subprocess), its embedding actors are seen on both nodes
through Ray's state API, and node w1's raylet is SIGKILLed once the first rows are durably
written. Either the job finishes on the head alone, or it fails and the same command run again
completes it; either way the index then holds every corpus id exactly once, with the vectors of
a one-node run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.cluster.conftest import actor_nodes, record_figure, run_command, start_command, wait_for
from tests.conftest import scifact_head

pytestmark = pytest.mark.cluster

DOCS = 1200  # enough rows that the job is still embedding when w1 is lost
EMBED_ACTOR = "MapWorker(MapBatches(EmbedBatch))"  # the class name Ray Data gives the pool's actors


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first DOCS SciFact abstracts."""
    return scifact_head(tmp_path_factory, DOCS, "cluster-corpus")


def corpus_ids(path: Path) -> list[str]:
    return [json.loads(line)["_id"] for line in path.read_text().splitlines()]


def ingest_args(corpus: Path, model: Path) -> list[str]:
    # Small chunks and blocks: many durable writes, so a lost node costs little and "mid-job" is wide.
    return [
        "ingest", "--corpus", str(corpus), "--model", str(model), "--chunk-rows", "100", "--block-rows", "25",
        "--workers", "2",
    ]


def faiss_vectors(folder: Path) -> tuple[list[str], np.ndarray]:
    from retrosearch.core.config import Settings
    from retrosearch.core.index.faiss_index import FaissIndex

    return FaissIndex.open_saved(folder, Settings()).stored_vectors()


@pytest.fixture(scope="module")
def one_node(corpus: Path, tiny_bert: Path) -> dict[str, np.ndarray]:
    """Vectors of the corpus from the encoder runtime in this process: what any run on one node embeds."""
    from retrosearch.core.collections import read_corpus
    from retrosearch.core.config import EncoderSettings
    from retrosearch.core.encoder import Encoder

    docs = list(read_corpus(corpus))
    encoder = Encoder.load(EncoderSettings(model=str(tiny_bert), show_progress=False))
    return dict(zip((d.id for d in docs), encoder.encode_documents(docs)))


def fragment_rows(state: Path) -> int:
    """Rows recorded as durably written under a state folder (its fragment records)."""
    total = 0
    for record in state.glob("**/fragments/*/*.json"):
        try:
            total += json.loads(record.read_text())["rows"]
        except (OSError, ValueError):  # a record being replaced right now
            pass
    return total


def opensearch_vectors(url: str, index: str) -> tuple[list[str], np.ndarray]:
    from opensearchpy import OpenSearch
    from opensearchpy.helpers import scan

    from retrosearch.core.config import OpenSearchSettings

    field = OpenSearchSettings().vector_field
    client = OpenSearch(url)
    hits = list(scan(client, index=index, query={"query": {"match_all": {}}}, _source=[field], size=500))
    return [h["_id"] for h in hits], np.array([h["_source"][field] for h in hits], dtype=np.float32)


@pytest.mark.parametrize("sink", ["faiss", pytest.param("opensearch", marks=pytest.mark.integration)])
def test_ingest_survives_a_lost_worker_node(
    sink: str, cluster, lose_worker_node, corpus: Path, tiny_bert: Path, one_node, tmp_path: Path, request
) -> None:
    args = [*ingest_args(corpus, tiny_bert), "--ray-address", cluster.address, "--state-dir", str(tmp_path / "state")]
    if sink == "faiss":
        args += ["--sink", "faiss", "--out", str(tmp_path / "index")]
    else:
        url = request.getfixturevalue("opensearch_url")
        index = f"cluster-ingest-{int(time.time())}"
        args += ["--sink", "opensearch", "--opensearch-url", url, "--index-name", index, "--replicas", "0"]

    started = time.monotonic()
    proc = start_command(args, tmp_path / "run1.log")
    # Mid-job: both of the pool's actors are up, the first rows are durable, the job still runs.
    def mid_job() -> list[str] | bool:
        if proc.poll() is not None:
            return True
        nodes = actor_nodes(cluster, EMBED_ACTOR)
        return sorted(nodes) if len(nodes) == 2 and fragment_rows(tmp_path / "state") > 0 else []

    nodes = wait_for(mid_job, 240, "two embedding actors and the first written rows")
    assert proc.poll() is None, f"the job ended before the node could be lost:\n{(tmp_path / 'run1.log').read_text()[-3000:]}"
    killed_at = lose_worker_node()
    written_at_kill = fragment_rows(tmp_path / "state")
    assert nodes == ["head", "w1"], f"embedding actors on {nodes}, expected one per node"
    assert written_at_kill < DOCS, "every row was written before the node was lost"

    first = proc.wait(timeout=300)
    first_s = time.monotonic() - started
    reruns = 0
    if first != 0:  # the documented way back: the same command again
        reruns = 1
        assert run_command(args, tmp_path / "run2.log") == 0, (tmp_path / "run2.log").read_text()[-3000:]
    total_s = time.monotonic() - started

    if sink == "faiss":
        ids, vectors = faiss_vectors(tmp_path / "index")
    else:
        ids, vectors = opensearch_vectors(url, index)
    expected = corpus_ids(corpus)
    assert len(ids) == len(set(ids)), "an id was stored twice"
    assert sorted(ids) == sorted(expected)
    reference = np.stack([one_node[i] for i in ids])
    np.testing.assert_allclose(vectors, reference, atol=1e-5, rtol=1e-4)
    record_figure(f"ingest_{sink}", {
        "docs": DOCS, "rows_written_before_loss": written_at_kill, "first_run_exit": first,
        "first_run_s": round(first_s, 1), "reruns": reruns, "total_s": round(total_s, 1),
        "loss_after_s": round(killed_at - started, 1),
    })
