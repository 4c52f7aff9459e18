"""Shared fixtures: tiny real models built from configs, small collections cut from the shared data."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RETROSEARCH_DATA", REPO.parent / "shared" / "data"))

def cosine(a, b) -> float:
    """Cosine similarity of two vectors, in float64."""
    import numpy as np  # lazy: conftest loads for every test; most never compare vectors

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@contextlib.contextmanager
def ml_settings_lock() -> Iterator[None]:
    """Held while a test changes OpenSearch's cluster-wide ml-commons settings, or connects a service
    that such a change would refuse: scripts/test.sh runs test files on two workers at once."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "retrosearch-tests-ml-settings.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


WORDS = (
    "the a of and to in is was for on with as by at from that this it be are were cell cells protein gene "
    "genes cancer tumor patients study results effect effects treatment risk disease blood brain human mice "
    "expression increased reduced associated activity level levels data model method methods using used "
    "flow wing pressure heat surface boundary layer mach number theory solution high low search dense vector "
    "query passage retrieval index"
).split()


def _write_wordpiece_tokenizer(folder: Path) -> None:
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + list("abcdefghijklmnopqrstuvwxyz0123456789.,;:-()")
    vocab = specials + WORDS + pieces
    ordered = list(dict.fromkeys(vocab))
    (folder / "vocab.txt").write_text("\n".join(ordered) + "\n")
    # transformers 5 ignores vocab_file here (every word would become [UNK]): pass the vocabulary itself.
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(ordered)}, do_lower_case=True)
    assert tokenizer.tokenize("the cell") == ["the", "cell"], "tiny tokenizer lost its vocabulary"
    tokenizer.save_pretrained(folder)


def build_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A 2-layer BERT with a real WordPiece tokenizer, randomly initialised and saved to ``folder``."""
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    _write_wordpiece_tokenizer(folder)
    vocab_size = len((folder / "vocab.txt").read_text().split())
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def build_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """A 2-layer LLaMA (decoder-only) sharing the tiny WordPiece vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    _write_wordpiece_tokenizer(folder)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    tokenizer.bos_token, tokenizer.eos_token = "[CLS]", "[SEP]"
    tokenizer.save_pretrained(folder)
    vocab_size = len((folder / "vocab.txt").read_text().split())
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def minilm_with_templates(folder: Path, query_template: str, passage_template: str) -> Path:
    """MiniLM's weights in ``folder`` (linked) with a query and a passage template of its own."""
    import shutil

    from retrosearch.core.encoder.checkpoint import read_spec, resolve_model_path, write_spec

    source = resolve_model_path("minilm")
    for path in source.rglob("*"):
        target = folder / path.relative_to(source)
        if path.is_dir():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".safetensors":
            target.symlink_to(path)
        else:
            shutil.copy2(path, target)  # copied: write_spec rewrites some of these files
    templates = {"query_template": query_template, "passage_template": passage_template}
    spec = read_spec(folder).model_copy(update=templates)
    write_spec(folder, spec)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def scifact_head(tmp_path_factory: pytest.TempPathFactory, count: int, folder: str) -> Path:
    """The first ``count`` SciFact documents as a JSONL corpus (the test is skipped without the shared data)."""
    source = DATA / "scifact" / "corpus.jsonl"
    if not source.exists():
        pytest.skip(f"shared data not found at {source}")
    path = tmp_path_factory.mktemp(folder) / "corpus.jsonl"
    with source.open() as handle:
        path.write_text("".join(line for line, _ in zip(handle, range(count))))
    return path


def cut_collection(source: Path, dest: Path, num_queries: int, distractors: int, split: str = "test") -> Path:
    """A small BEIR collection: the first ``num_queries`` judged queries, their relevant documents
    and ``distractors`` other documents, copied from a real collection."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "qrels").mkdir(exist_ok=True)
    lines = (source / "qrels" / f"{split}.tsv").read_text().splitlines()
    qrels: dict[str, list[str]] = {}
    for line in lines[1:]:
        qid, did, score = line.split("\t")
        if qid in qrels or len(qrels) < num_queries:
            qrels.setdefault(qid, []).append(line)
    wanted_docs = {line.split("\t")[1] for rows in qrels.values() for line in rows}
    kept, extra = [], 0
    for line in (source / "corpus.jsonl").read_text().splitlines():
        doc_id = json.loads(line)["_id"]
        if doc_id in wanted_docs:
            kept.append(line)
        elif extra < distractors:
            kept.append(line)
            extra += 1
    (dest / "corpus.jsonl").write_text("\n".join(kept) + "\n")
    queries = [line for line in (source / "queries.jsonl").read_text().splitlines() if json.loads(line)["_id"] in qrels]
    (dest / "queries.jsonl").write_text("\n".join(queries) + "\n")
    (dest / "qrels" / f"{split}.tsv").write_text("\n".join([lines[0], *[r for rows in qrels.values() for r in rows]]) + "\n")
    return dest


@pytest.fixture(scope="session")
def small_scifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 judged SciFact queries, their relevant abstracts and 60 distractors (about 85 documents)."""
    source = DATA / "scifact"
    if not source.exists():
        pytest.skip(f"shared data not found at {source}")
    return cut_collection(source, tmp_path_factory.mktemp("scifact-small"), num_queries=20, distractors=60)


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    """The test OpenSearch node (started by scripts/test.sh).

    Without one the integration tests skip, unless RETROSEARCH_REQUIRE_OPENSEARCH=1 (set by
    scripts/test.sh and so by CI), where a missing node is a failure, never a silent skip.
    """
    import urllib.error
    import urllib.request

    url = os.environ.get("RETROSEARCH_OPENSEARCH_URL", "http://127.0.0.1:9250").rstrip("/")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url + "/", timeout=5) as response:
            if response.status == 200:
                return url
    except (urllib.error.URLError, OSError):
        pass
    message = f"no OpenSearch answers at {url} (start one: retrosearch opensearch start)"
    if os.environ.get("RETROSEARCH_REQUIRE_OPENSEARCH") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def ml_url(opensearch_url: str) -> str:
    """The test node, which must carry ml-commons and neural-search."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{opensearch_url}/_cat/plugins?format=json", timeout=10) as response:
        plugins = {p["component"] for p in json.load(response)}
    missing = {"opensearch-ml", "opensearch-neural-search"} - plugins
    if missing:
        message = f"the node at {opensearch_url} lacks {sorted(missing)} (start it with --with-ml)"
        if os.environ.get("RETROSEARCH_REQUIRE_OPENSEARCH") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return opensearch_url


def remove_ml_models(client, service_url: str, settle_s: float = 90.0) -> None:
    """Undeploy and delete the models and connectors made for one service URL.

    After a cluster restart ml-commons redeploys its models on its own, and a delete while that
    deploy runs (or once it has ended) is refused: a model is undeployed and deleted again until the
    delete goes through.
    """
    from opensearchpy.exceptions import RequestError

    for kind, search in (("model", client.plugins.ml.search_models), ("connector", client.plugins.ml.search_connectors)):
        hits = search(body={"query": {"match_phrase": {"name": service_url}}, "size": 50})["hits"]["hits"]
        for hit in hits:
            if kind == "model":
                deadline = time.monotonic() + settle_s
                while True:
                    client.plugins.ml.undeploy_model(model_id=hit["_id"])
                    try:
                        client.plugins.ml.delete_model(model_id=hit["_id"])
                        break
                    except RequestError as exc:
                        if "deployed state" not in str(exc) or time.monotonic() > deadline:
                            raise
                    time.sleep(1.0)
            else:
                client.plugins.ml.delete_connector(connector_id=hit["_id"])


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole test session (starting one costs seconds)."""
    import ray

    from retrosearch.core.ray_runtime import ensure_ray

    # Spot-instance preemption polling and metrics are cluster features; off, a test run starts fewer actors.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_TRAIN_METRICS_ENABLED", "0")
    ensure_ray(num_cpus=2, object_store_memory=512 << 20)
    yield
    ray.shutdown()


@pytest.fixture
def cli_joins_session_ray(ray_local, monkeypatch: pytest.MonkeyPatch) -> str:
    """Commands run as subprocesses join the session's Ray (``RAY_ADDRESS``) instead of starting one each.

    A local Ray costs 5-10 s to start and stop here; a command that is killed on purpose must not
    join (its orphaned tasks would outlive it): run it with :func:`without_session_ray`.
    """
    import ray

    address = ray.get_runtime_context().gcs_address
    monkeypatch.setenv("RAY_ADDRESS", address)
    return address


def without_session_ray() -> dict[str, str]:
    """This process's environment without ``RAY_ADDRESS``: a subprocess that starts its own local Ray."""
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
