"""The `retrosearch` command end to end on a small real collection, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from retrosearch.core.encoder import Encoder
from retrosearch.core.index import load_index


def run_cli(*args: str, check: bool = True, columns: int = 200) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": str(columns)}
    proc = subprocess.run(
        [sys.executable, "-m", "retrosearch.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"retrosearch {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def built_index(small_scifact: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "index"
    proc = run_cli("index", "--collection", str(small_scifact), "--model", "minilm", "--out", str(out), "--quiet")
    assert "indexed" in proc.stdout
    return out


def _table_rows(stdout: str) -> list[list[str]]:
    """The cells of each hit row of the tables ``retrosearch search`` prints (rank, id, score[, title])."""
    rows = []
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│┃").split("│")]
        if cells and cells[0].isdigit():
            rows.append(cells)
    return rows


def test_index_search_and_eval_agree(small_scifact: Path, built_index: Path, tmp_path: Path):
    meta = json.loads((built_index / "meta.json").read_text())
    ids = json.loads((built_index / "ids.json").read_text())
    corpus_ids = [json.loads(line)["_id"] for line in (small_scifact / "corpus.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(corpus_ids)
    assert meta["model_name"] == "minilm" and meta["dim"] == 384 and meta["similarity"] == "cosine"

    query = json.loads((small_scifact / "queries.jsonl").read_text().splitlines()[0])["text"]
    proc = run_cli("search", "--index", str(built_index), "--collection", str(small_scifact), "-k", "3",
                   query)
    expected = load_index(built_index).search(Encoder.load("minilm").encode_queries([query]), 3)
    rows = _table_rows(proc.stdout)
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert [row[1] for row in rows] == expected.ids[0]
    assert [float(row[2]) for row in rows] == pytest.approx(expected.scores[0], abs=1e-4)
    corpus = map(json.loads, (small_scifact / "corpus.jsonl").read_text().splitlines())
    titles = {doc["_id"]: doc["title"] for doc in corpus}
    assert all(titles[row[1]].startswith(row[3].rstrip("…")[:20]) for row in rows)  # --collection adds titles

    fresh, reused = tmp_path / "fresh.json", tmp_path / "reused.json"
    run_cli("eval", "--collection", str(small_scifact), "--model", "minilm", "--json-out", str(fresh), "--quiet")
    run_cli("eval", "--collection", str(small_scifact), "--index", str(built_index), "--json-out", str(reused), "--quiet")
    a, b = json.loads(fresh.read_text()), json.loads(reused.read_text())
    for key in ("ndcg@10", "mrr@10", "recall@100", "map"):
        assert isinstance(a[key], float) and a[key] == pytest.approx(b[key], abs=1e-6)
    assert a["num_queries"] == 20 and a["num_docs"] == len(corpus_ids)
    assert {"encode_corpus", "encode_queries", "search", "total"} <= set(a["seconds"])
    assert a["config"]["backend"] == "faiss-flat" and a["config"]["split"] == "test"
    # 20 real queries against their own relevant abstracts plus 60 distractors: a real model ranks well.
    assert a["ndcg@10"] > 0.6
    # a trained encoder keeps different queries apart (a collapsed one would be near 1)
    assert 0.0 < a["query_cosine"] < 0.5 and a["query_cosine"] == pytest.approx(b["query_cosine"], abs=1e-6)


def test_hnsw_backend_matches_flat_on_small_collection(small_scifact: Path, built_index: Path,
                                                       tmp_path: Path):
    """On 85 documents HNSW (M=32, efSearch=256) visits the whole graph: its hits and figures are flat's."""
    hnsw_index = tmp_path / "hnsw-index"
    run_cli("index", "--collection", str(small_scifact), "--backend", "faiss-hnsw", "--out", str(hnsw_index),
            "--quiet")
    queries = _first_queries(small_scifact, 20)
    flat_hits, hnsw_hits = (
        json.loads(run_cli("search", "--index", str(index), "--json-out", "-", "-k", "10", *queries).stdout)
        for index in (built_index, hnsw_index)
    )
    assert len(flat_hits) == len(hnsw_hits) == 20
    for flat, hnsw in zip(flat_hits, hnsw_hits):
        assert [hit["id"] for hit in hnsw["hits"]] == [hit["id"] for hit in flat["hits"]]
        flat_scores = [hit["score"] for hit in flat["hits"]]
        assert [hit["score"] for hit in hnsw["hits"]] == pytest.approx(flat_scores, abs=1e-5)

    flat_out, hnsw_out = tmp_path / "flat.json", tmp_path / "hnsw.json"
    run_cli("eval", "--collection", str(small_scifact), "--index", str(built_index), "--json-out", str(flat_out),
            "--quiet")
    run_cli("eval", "--collection", str(small_scifact), "--backend", "faiss-hnsw", "--json-out", str(hnsw_out),
            "--quiet")
    flat, hnsw = json.loads(flat_out.read_text()), json.loads(hnsw_out.read_text())
    assert hnsw["config"]["backend"] == "faiss-hnsw" and hnsw["config"]["index_params"]["m"] == 32
    assert flat["config"]["backend"] == "faiss-flat"
    for key in ("ndcg@10", "mrr@10", "recall@100", "map"):
        assert hnsw[key] == pytest.approx(flat[key], abs=1e-6), key


def test_quantized_backend_reports_bytes_and_searches_like_flat(small_scifact: Path, built_index: Path,
                                                                 tmp_path: Path):
    out = tmp_path / "int8"
    # a narrow terminal: the result line (two paths long) must still be one line, not word-wrapped
    proc = run_cli("index", "--collection", str(small_scifact), "--backend", "faiss-int8", "--out", str(out),
                   "--quiet", columns=60)
    first = proc.stdout.splitlines()[0]
    assert first.startswith("indexed 81 documents") and f"into {out} (faiss-int8, dim 384)" in first
    # 384 one-byte codes per vector in memory (plus FAISS's header and ranges, spread over 81 vectors);
    # the float32 rescoring store adds 1,536 on disk
    found = re.search(r"memory ([\d,]+) B/vector, disk ([\d,]+) B/vector \(1,536 of them", proc.stdout)
    memory, disk = (int(x.replace(",", "")) for x in found.groups())
    assert 384 <= memory < 450 and disk == memory + 1536
    queries = _first_queries(small_scifact, 5)
    flat = json.loads(run_cli("search", "--index", str(built_index), "--json-out", "-", "-k", "5", *queries).stdout)
    int8 = json.loads(run_cli("search", "--index", str(out), "--json-out", "-", "-k", "5", "--oversample", "10",
                              *queries).stdout)
    assert [[h["id"] for h in q["hits"]] for q in int8] == [[h["id"] for h in q["hits"]] for q in flat]


def test_index_at_a_dimension_refuses_queries_at_another(small_scifact: Path, built_index: Path,
                                                          tmp_path: Path):
    out = tmp_path / "d128"
    proc = run_cli("index", "--collection", str(small_scifact), "--dimensions", "128", "--out", str(out),
                   "--quiet")
    assert "dim 128" in proc.stdout and json.loads((out / "meta.json").read_text())["dim"] == 128
    query = _first_queries(small_scifact, 1)
    proc = run_cli("search", "--index", str(out), *query, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert error == ["error: refusing to search: dimension 384 != 128 (the index was built with "
                     "dimensions=128)"]
    hits = json.loads(run_cli("search", "--index", str(out), "--dimensions", "128", "--json-out", "-", "-k", "3",
                              *query).stdout)
    assert len(hits[0]["hits"]) == 3
    # the full-dimension index refuses cut queries the same way
    proc = run_cli("search", "--index", str(built_index), "--dimensions", "128", *query, check=False)
    assert proc.returncode == 2 and "dimension 128 != 384" in proc.stderr


def test_errors_are_one_clear_line(tmp_path: Path, built_index: Path, tiny_bert: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "1", "text": "ok"}\n{"_id": "2"}\n')
    proc = run_cli("index", "--corpus", str(bad), "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2
    assert f"{bad}:2: missing text field 'text'" in proc.stderr and "Traceback" not in proc.stderr

    proc = run_cli("eval", "--collection", str(tmp_path), check=False)
    assert proc.returncode == 2 and "corpus.jsonl missing" in proc.stderr

    proc = run_cli("search", "--index", str(built_index), "--model", str(tiny_bert), "protein", check=False)
    assert proc.returncode == 2 and "refusing to search" in proc.stderr and "Traceback" not in proc.stderr

    proc = run_cli("eval", "--collection", str(tmp_path), "--model", "org/some-hub-model", check=False)
    assert proc.returncode == 2


@pytest.mark.integration
def test_opensearch_backend_matches_faiss_flat(small_scifact: Path, tmp_path: Path, opensearch_url: str):
    flat, remote = tmp_path / "flat.json", tmp_path / "os.json"
    run_cli("eval", "--collection", str(small_scifact), "--json-out", str(flat), "--quiet")
    name = "cli-eval-small-scifact"
    run_cli(
        "index", "--collection", str(small_scifact), "--backend", "opensearch", "--opensearch-url", opensearch_url,
        "--index-name", name, "--replicas", "0", "--quiet",
    )
    again = run_cli(
        "index", "--collection", str(small_scifact), "--backend", "opensearch", "--opensearch-url", opensearch_url,
        "--index-name", name, "--replicas", "0", "--quiet",
    )
    docs = len((small_scifact / "corpus.jsonl").read_text().splitlines())
    assert f"indexed {docs} documents" in again.stdout  # loading twice leaves the count unchanged
    run_cli(
        "eval", "--collection", str(small_scifact), "--backend", "opensearch", "--opensearch-url", opensearch_url,
        "--index-name", name, "--json-out", str(remote), "--quiet",
    )
    a, b = json.loads(flat.read_text()), json.loads(remote.read_text())
    assert b["config"]["backend"] == "opensearch" and b["num_docs"] == docs
    assert abs(a["ndcg@10"] - b["ndcg@10"]) <= 0.005
    assert abs(a["recall@100"] - b["recall@100"]) <= 0.005

    query = json.loads((small_scifact / "queries.jsonl").read_text().splitlines()[0])["text"]
    proc = run_cli("search", "--index-name", name, "--opensearch-url", opensearch_url, "-k", "3", query)
    assert proc.stdout.count("0.") >= 3


def test_opensearch_errors_are_one_clear_line(small_scifact: Path):
    proc = run_cli(
        "eval", "--collection", str(small_scifact), "--backend", "opensearch", "--opensearch-url",
        "http://127.0.0.1:9", "--quiet", check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot reach OpenSearch at http://127.0.0.1:9" in proc.stderr


def _first_queries(collection: Path, n: int) -> list[str]:
    return [json.loads(line)["text"] for line in (collection / "queries.jsonl").read_text().splitlines()[:n]]


def test_search_json_matches_index_search(small_scifact: Path, built_index: Path):
    queries = _first_queries(small_scifact, 2)
    proc = run_cli("search", "--index", str(built_index), "--json-out", "-", "-k", "5", *queries)
    printed = json.loads(proc.stdout)  # nothing but the JSON on stdout
    hits = load_index(built_index).search(Encoder.load("minilm").encode_queries(queries), 5)
    assert [entry["query"] for entry in printed] == queries
    for entry, ids, scores in zip(printed, hits.ids, hits.scores):
        assert all(set(hit) == {"id", "score", "rank"} for hit in entry["hits"])
        assert [hit["id"] for hit in entry["hits"]] == ids
        assert [hit["rank"] for hit in entry["hits"]] == [1, 2, 3, 4, 5]
        assert [hit["score"] for hit in entry["hits"]] == pytest.approx(scores, abs=1e-5)

    with_fields = json.loads(run_cli("search", "--index", str(built_index), "--json-out", "-", "--field", "title", queries[0]).stdout)
    assert [hit["id"] for hit in with_fields[0]["hits"]][:5] == hits.ids[0]
    assert all(hit["fields"] == {} for hit in with_fields[0]["hits"])  # FAISS stores no fields

    proc = run_cli("search", "--index", str(built_index), "--filter", '{"term": {"text": "x"}}', queries[0], check=False)
    assert proc.returncode == 2 and "cannot filter" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("search", "--index", str(built_index), "--filter", "{not json", queries[0], check=False)
    assert proc.returncode == 2 and "--filter is not valid JSON" in proc.stderr


@pytest.mark.integration
def test_search_json_with_filter_and_fields_on_opensearch(small_scifact: Path, opensearch_url: str):
    from retrosearch.core.config import OpenSearchSettings, Settings
    from retrosearch.core.encoder import Encoder
    from retrosearch.core.index import load_index

    name = "cli-search-json-small-scifact"
    run_cli(
        "index", "--collection", str(small_scifact), "--backend", "opensearch", "--opensearch-url", opensearch_url,
        "--index-name", name, "--replicas", "0", "--quiet",
    )
    corpus = [json.loads(line) for line in (small_scifact / "corpus.jsonl").read_text().splitlines()]
    allowed = [doc["_id"] for doc in corpus[::3]]
    title_of = {doc["_id"]: doc["title"] for doc in corpus}
    filter_clause = {"ids": {"values": allowed}}
    queries = _first_queries(small_scifact, 2)
    proc = run_cli(
        "search", "--index-name", name, "--opensearch-url", opensearch_url, "--json-out", "-", "-k", "4",
        "--filter", json.dumps(filter_clause), "--field", "title", *queries,
    )
    printed = json.loads(proc.stdout)
    settings = Settings(opensearch=OpenSearchSettings(url=opensearch_url, index=name))
    hits = load_index(None, settings, backend="opensearch").search(
        Encoder.load("minilm").encode_queries(queries), 4, filter=filter_clause, fields=["title"]
    )
    for entry, ids, scores in zip(printed, hits.ids, hits.scores):
        assert [hit["id"] for hit in entry["hits"]] == ids and len(ids) == 4 and set(ids) <= set(allowed)
        assert [hit["score"] for hit in entry["hits"]] == pytest.approx(scores, abs=1e-4)
        assert [hit["fields"] for hit in entry["hits"]] == [{"title": title_of[i]} for i in ids]
    table = run_cli("search", "--index-name", name, "--opensearch-url", opensearch_url, "--field", "title", queries[0])
    assert "title" in table.stdout and printed[0]["hits"][0]["id"] in table.stdout
    from retrosearch.core.opensearch.client import connect

    connect(settings.opensearch).indices.delete(index=name, ignore_unavailable=True)
