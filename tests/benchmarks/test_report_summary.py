"""The report's main table and its copy in the README, from a hand-written methods.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from retrosearch.benchmarks.methods import from_json, plot, summary_table
from retrosearch.benchmarks.report_markdown import README_END, README_START, readme_block, splice_readme


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


def test_readme_splice_replaces_only_the_marked_block(tmp_path: Path):
    out = tmp_path / "benchmarks" / "results" / "report"
    out.mkdir(parents=True)
    (out / "methods.json").write_text(json.dumps(METHODS))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n\n{README_START}\nold table\n{README_END}\n\nafter\n")
    argv = ["--collection", "data/alpha", "--out", "benchmarks/results/report", "--readme", "README.md"]
    splice_readme(readme, readme_block(out, readme, argv))
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n\n" + README_START) and text.endswith(README_END + "\n\nafter\n")
    assert "old table" not in text
    assert "| alpha | 0.5500 | 0.6100 | 0.6000 | 0.6400 | **0.6600** | l2 w=0.7 |" in text
    # The plot's path is relative to the README, so it renders where the README is read.
    assert "![NDCG@10 per method and collection](benchmarks/results/report/methods.png)" in text
    assert "retrosearch bench report --collection data/alpha --out benchmarks/results/report --readme README.md" in text
    # Run twice: the same file (the block replaces itself).
    splice_readme(readme, readme_block(out, readme, argv))
    assert readme.read_text() == text


def test_readme_without_markers_is_refused(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n")
    with pytest.raises(typer.Exit):
        splice_readme(readme, "block")
    assert readme.read_text() == "# Title\n"


def test_ann_summary_is_rebuilt_from_json():
    from retrosearch.benchmarks.ann import AnnPoint, AnnSweep, summary

    sweep = AnnSweep("alpha", "minilm", 100, [
        AnnPoint("real", 5000, "faiss-flat", {}, 1.0, 20000.0, 0.1, 0.0, 7_680_000),
        AnnPoint("real", 5000, "faiss-hnsw", {"M": 32, "ef": 16}, 0.95, 90000.0, 0.02, 1.0, 9 * 2**20),
        AnnPoint("real", 5000, "faiss-hnsw", {"M": 32, "ef": 64}, 0.99, 50000.0, 0.03, 1.0, 9 * 2**20),
        AnnPoint("real", 5000, "opensearch-lucene", {"ef": 32}, 0.985, 1000.0, 0.9, 2.0, 32 * 2**20),
    ])
    again = AnnSweep.from_dict(json.loads(json.dumps(sweep.as_dict())))
    assert again == sweep
    lines = summary(again)
    assert lines[0] == "real (5,000 vectors): exact 20000 q/s, p50 0.10 ms"
    assert "faiss-hnsw: recall@10 0.990 at faiss-hnsw M=32 ef=64: 50000 q/s = 2.5x exact" in lines[1]
    # A backend slower than exact keeps its ratio readable instead of rounding to 0.0x.
    assert "1000 q/s = 0.05x exact" in lines[2]
