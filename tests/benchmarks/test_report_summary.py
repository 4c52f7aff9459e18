"""The report's main table and its copy in a documentation page, from a hand-written methods.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from retrosearch.benchmarks.docs_block import splice
from retrosearch.benchmarks.methods import from_json, plot, summary_table
from retrosearch.benchmarks.report_markdown import BLOCK_END, BLOCK_START, docs_block
from retrosearch.cli import app


def _row(method: str, family: str, ndcg: float, **params) -> dict:
    return {"method": method, "family": family, "ndcg@10": ndcg, "mrr@10": 0.5, "recall@100": 0.9, "map": 0.4,
            "search_seconds": 0.1, "params": params}


METHODS = {
    "model": "minilm", "split": "test", "verdicts": [], "not_run": {},
    "collections": {
        "alpha": [_row("dense faiss-flat", "dense", 0.61), _row("dense faiss-hnsw", "dense", 0.60),
                  _row("bm25", "lexical", 0.55), _row("rrf bm25+dense", "fusion", 0.64),
                  _row("hybrid min_max w=0.3", "hybrid", 0.62, normalization="min_max", dense_weight=0.3),
                  _row("hybrid l2 w=0.7", "hybrid", 0.66, normalization="l2", dense_weight=0.7)],
        "beta": [_row("dense faiss-flat", "dense", 0.40), _row("bm25", "lexical", 0.45)],
    },
}


def test_summary_table_picks_each_kind_and_the_best_hybrid():
    table = summary_table(from_json(METHODS)).splitlines()
    assert table[0] == ("| collection | bm25 | dense exact | dense HNSW | RRF | best OpenSearch hybrid "
                        "| hybrid setting |")
    assert table[2] == "| alpha | 0.5500 | 0.6100 | 0.6000 | 0.6400 | **0.6600** | l2 w=0.7 |"
    # Methods a collection lacks show as "-", and the best of what is there is bold.
    assert table[3] == "| beta | **0.4500** | 0.4000 | - | - | - | - |"


def test_from_json_keeps_every_figure():
    results = from_json(METHODS)
    assert [r.method for r in results["beta"]] == ["dense faiss-flat", "bm25"]
    assert results["alpha"][5].figures == {"ndcg@10": 0.66, "mrr@10": 0.5, "recall@100": 0.9, "map": 0.4}
    assert results["alpha"][5].params == {"normalization": "l2", "dense_weight": 0.7}


def test_plot_from_json(tmp_path: Path):
    plot(from_json(METHODS), tmp_path / "methods.png")
    assert (tmp_path / "methods.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_docs_page_splice_replaces_only_the_marked_block(tmp_path: Path):
    out = tmp_path / "benchmarks" / "results" / "report"
    out.mkdir(parents=True)
    (out / "methods.json").write_text(json.dumps(METHODS))
    page = tmp_path / "docs" / "benchmarks" / "methods.md"
    page.parent.mkdir(parents=True)
    page.write_text(f"# Title\n\nbefore\n\n{BLOCK_START}\nold table\n{BLOCK_END}\n\nafter\n")
    argv = ["--collection", "data/alpha", "--out", "benchmarks/results/report",
            "--docs-page", "docs/benchmarks/methods.md"]
    splice(page, docs_block(out, page, argv), BLOCK_START, BLOCK_END)
    text = page.read_text()
    assert text.startswith("# Title\n\nbefore\n\n" + BLOCK_START) and text.endswith(BLOCK_END + "\n\nafter\n")
    assert "old table" not in text
    assert "| alpha | 0.5500 | 0.6100 | 0.6000 | 0.6400 | **0.6600** | l2 w=0.7 |" in text
    # The plot's path is relative to the page, so it renders where the page is read (GitHub or the site).
    assert "![NDCG@10 per method and collection](../../benchmarks/results/report/methods.png)" in text
    assert "[report.md](../../benchmarks/results/report/report.md)" in text
    assert ("retrosearch bench report --collection data/alpha --out benchmarks/results/report "
            "--docs-page docs/benchmarks/methods.md") in text
    # Run twice: the same file (the block replaces itself).
    splice(page, docs_block(out, page, argv), BLOCK_START, BLOCK_END)
    assert page.read_text() == text


def test_page_without_markers_is_refused(tmp_path: Path):
    page = tmp_path / "methods.md"
    page.write_text("# Title\n")
    with pytest.raises(typer.Exit):
        splice(page, "block", BLOCK_START, BLOCK_END)
    assert page.read_text() == "# Title\n"


def test_bench_report_writes_the_docs_page_block_from_reused_parts(tmp_path: Path):
    # Every part's JSON is there, so nothing runs: the command only writes report.md and the page's block.
    collection = tmp_path / "alpha"
    collection.mkdir()
    (collection / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    out = tmp_path / "report"
    out.mkdir()
    (out / "methods.json").write_text(json.dumps(METHODS))
    (out / "machine.json").write_text(json.dumps({
        "cpu": "cpu", "cores": 2, "memory_gib": 1.0, "gpu": "none", "platform": "p", "versions": {},
        "commit": "c"}))
    page = tmp_path / "methods.md"
    base = ["bench", "report", "--collection", str(collection), "--out", str(out), "--part", "methods"]
    for option in ("--docs-page", "--readme"):
        page.write_text(f"intro\n{BLOCK_START}\nstale block\n{BLOCK_END}\n")
        result = CliRunner().invoke(app, [*base, option, str(page)])
        assert result.exit_code == 0, result.output
        text = page.read_text()
        assert "stale block" not in text and "| alpha | 0.5500 |" in text and "--docs-page" in text
        assert ("deprecated" in result.output) == (option == "--readme")
    assert "methods: reusing" in result.output and (out / "report.md").is_file()
