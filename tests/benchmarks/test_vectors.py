"""`bench vectors`: its rows, targets, resumable store, table and plot, and one small real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrosearch.benchmarks.vectors import (
    BASE,
    Cell,
    CellStore,
    Setting,
    best_saving,
    dimension_settings,
    finetune_command,
    markdown,
    plot,
    quantization_settings,
    run_collection,
    summary,
    target_verdict,
)
from retrosearch.core.config import Settings

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _cell(setting: Setting, ndcg: float, memory: float, rescore: float = 0.0, collection: str = "c") -> Cell:
    return Cell(collection, setting, ndcg, ndcg + 0.2, 1000.0, memory, rescore, 10, 100)


def test_quantization_rows_cover_each_kind_without_and_with_rescoring():
    labels = [s.label() for s in quantization_settings((1, 4))]
    assert labels == ["float32", "int8 rescore=no", "int8 oversample=1", "int8 oversample=4",
                      "binary rescore=no", "binary oversample=1", "binary oversample=4", "ivfpq"]
    assert {s.backend for s in quantization_settings((1,))} == {"faiss-flat", "faiss-int8", "faiss-binary",
                                                                "faiss-ivfpq"}


def test_dimension_rows_pair_matryoshka_and_truncation_per_seed():
    rows = dimension_settings((1, 2), (384, 64))
    assert len(rows) == 8
    assert rows[0] == Setting("matryoshka", "matryoshka-seed1", dim=384, seed=1)
    assert rows[2].label() == "truncation dim=384 seed=1" and rows[2].encoder == "plain-seed1"
    assert finetune_command(Path("/c"), Path("/o"), True, 2, 50, "minilm", (384, 64))[-2:] == [
        "--matryoshka-dims", "384,64"]
    plain = finetune_command(Path("/c"), Path("/o"), False, 2, 50, "minilm", (384, 64))
    assert "--matryoshka-dims" not in plain and plain[plain.index("--seed") + 1] == "2"
    assert plain[plain.index("--steps") + 1] == "50"


def test_targets_are_checked_against_float32():
    float32 = _cell(Setting("float32"), 0.650, 1536)
    int8, binary = Setting("int8", oversample=4.0), Setting("binary", oversample=10.0)
    assert target_verdict(_cell(int8, 0.6485, 384, 1536), float32).startswith("met (loss +0.0015")
    assert target_verdict(_cell(int8, 0.6470, 384, 1536), float32).startswith("missed")
    assert target_verdict(_cell(binary, 0.641, 48, 384), float32).startswith("met")
    assert target_verdict(_cell(Setting("binary"), 0.5, 48, 384), float32) == ""  # codes only: no target


def test_summary_names_the_best_saving_within_001_and_each_target():
    cells = [_cell(Setting("float32"), 0.650, 1536), _cell(Setting("int8", oversample=1.0), 0.645, 384, 1536),
             _cell(Setting("int8", oversample=4.0), 0.6495, 384, 1536),
             _cell(Setting("binary", oversample=10.0), 0.642, 48, 384),
             _cell(Setting("binary"), 0.55, 48, 384), _cell(Setting("ivfpq"), 0.58, 50)]
    assert best_saving(cells).setting.label() == "binary oversample=10"
    lines = summary({"c": cells})
    assert "32x less" in lines[0] and "rescoring store 384 B/vector" in lines[0]
    assert lines[1] == "c: int8 with rescoring within 0.002 NDCG@10 of float32: met from oversample 4"
    assert lines[2] == "c: binary with rescoring within 0.01 NDCG@10 of float32: met from oversample 10"


def test_store_resumes_and_the_table_and_plot_are_drawn(tmp_path):
    store = CellStore(tmp_path / "vectors.json", about={"model": "m"})
    store.add(_cell(Setting("float32"), 0.65, 1536))
    for seed, (mrl, plain) in zip((1, 2), ((0.60, 0.55), (0.62, 0.53))):
        store.add(_cell(Setting("matryoshka", f"matryoshka-seed{seed}", dim=64, seed=seed), mrl, 256))
        store.add(_cell(Setting("truncation", f"plain-seed{seed}", dim=64, seed=seed), plain, 256))
    again = CellStore(tmp_path / "vectors.json")
    assert again.about == {"model": "m"} and set(again.cells) == set(store.cells)
    assert again.cells["c | float32"] == store.cells["c | float32"]
    assert "c | matryoshka dim=64 seed=2" in again
    table = markdown(again.by_collection())
    # the gap paired by seed (+0.05, +0.09): its spread, not each arm's, says how sure it is
    assert "| 64 | 256 | 0.6100 ± 0.0141 | 0.5400 ± 0.0141 | +0.0700 ± 0.0283 |" in table
    # the seeded rows are summarised over seeds, never the headline
    assert best_saving(list(again.cells.values())).setting.label() == "float32"
    plot(again.by_collection(), tmp_path / "vectors.png")
    assert (tmp_path / "vectors.png").stat().st_size > 0
    assert not (tmp_path / "vectors.json.partial").exists()


@pytest.fixture(scope="module")
def tiny_collection(tmp_path_factory) -> Path:
    """SciFact's first 10 judged test queries; their relevant abstracts and others, 100 in all."""
    source = DATA / "scifact"
    if not (source / "corpus.jsonl").exists():
        pytest.skip(f"shared data not found at {source}")
    root = tmp_path_factory.mktemp("tiny-scifact")
    lines = (source / "qrels" / "test.tsv").read_text().splitlines()
    judged = [line.split("\t") for line in lines[1:]]
    queries = list(dict.fromkeys(q for q, _, _ in judged))[:10]
    kept = [row for row in judged if row[0] in queries]
    relevant = {d for _, d, _ in kept}
    with (source / "corpus.jsonl").open() as handle:
        docs = [json.loads(line) for line in handle]
    chosen = [d for d in docs if d["_id"] in relevant]
    chosen += [d for d in docs if d["_id"] not in relevant][: 100 - len(chosen)]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in chosen))
    with (source / "queries.jsonl").open() as handle:
        texts = [json.loads(line) for line in handle]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in texts if q["_id"] in queries))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text(lines[0] + "\n" + "".join("\t".join(r) + "\n" for r in kept))
    return root


def test_a_real_run_resumes_and_full_width_rescoring_is_exact_search(tiny_collection, tmp_path, monkeypatch):
    monkeypatch.setenv("RETROSEARCH_CACHE", str(tmp_path / "cache"))
    settings = Settings()
    settings.encoder.model, settings.encoder.max_length, settings.encoder.show_progress = "minilm", 128, False
    rows = quantization_settings((1, 100))
    store = CellStore(tmp_path / "out" / "vectors.json")
    messages: list[str] = []
    run_collection(tiny_collection, settings, rows, store, progress=messages.append)
    name = tiny_collection.name
    cells = {c.setting.label(): c for c in store.cells.values()}
    assert "ivfpq" not in cells and any("ivfpq skipped" in m for m in messages)  # 100 documents: too few
    exact = cells["float32"]
    assert exact.num_docs == 100 and exact.num_queries == 10 and exact.memory_bytes_per_vector >= 1536
    # every document a candidate: float32 rescoring is exact search, the binary kind's int8 store close to it
    assert cells["int8 oversample=100"].ndcg_at_10 == pytest.approx(exact.ndcg_at_10, abs=1e-9)
    assert cells["binary oversample=100"].ndcg_at_10 == pytest.approx(exact.ndcg_at_10, abs=0.02)
    # the codes, plus FAISS's header and trained ranges spread over only 100 vectors
    assert 384 <= cells["int8 oversample=1"].memory_bytes_per_vector < 450
    assert cells["int8 oversample=1"].rescore_bytes_per_vector == 1536
    assert 48 <= cells["binary oversample=1"].memory_bytes_per_vector < 60
    assert cells["binary oversample=1"].rescore_bytes_per_vector == 384
    again: list[str] = []
    run_collection(tiny_collection, settings, rows, CellStore(store.path), progress=again.append)
    assert again[-1] == f"{name}: every cell done" and len(again) == 2  # after the ivfpq line
    assert json.loads(store.path.read_text())["cells"][f"{name} | float32"]["setting"]["encoder"] == BASE


def test_the_benchmark_report_has_a_vectors_section_when_asked(tmp_path):
    from retrosearch.benchmarks.report_markdown import DEFAULT_PARTS, build_report, part_commands
    from retrosearch.benchmarks.vectors import write_outputs

    store = CellStore(tmp_path / "vectors.json", about={"model": "minilm", "split": "test"})
    store.add(_cell(Setting("float32"), 0.65, 1536, collection="scifact"))
    store.add(_cell(Setting("binary", oversample=10.0), 0.645, 48, 384, collection="scifact"))
    write_outputs(store, tmp_path)
    about = {"cpu": "c", "cores": 2, "memory_gib": 24, "gpu": "none", "platform": "p", "commit": "x",
             "versions": {}}
    report = build_report(tmp_path, ("vectors",), about)
    assert "## Quality against memory per vector" in report
    assert "| binary oversample=10 | 48 | 384 |" in report
    assert "- scifact: binary oversample=10 keeps NDCG@10 0.6450" in report
    assert "![NDCG@10 against bytes per vector](vectors.png)" in report
    assert "vectors" not in DEFAULT_PARTS  # fine-tunes and sweeps: a report includes them when asked
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "corpus.jsonl").write_text("{}\n")
    command = part_commands(tmp_path, [tmp_path / "c"], None, None, 0)["vectors"]
    assert command == ["vectors", "--collection", str(tmp_path / "c"), "--out", str(tmp_path)]


def test_dimension_rows_cut_each_models_vectors(tiny_collection, tmp_path, monkeypatch):
    """The dimension rows on real vectors (the packaged model standing in for both fine-tunes): the
    full dimension is exact search's figure, a cut one costs 4 bytes per dimension kept."""
    monkeypatch.setenv("RETROSEARCH_CACHE", str(tmp_path / "cache"))
    settings = Settings()
    settings.encoder.max_length, settings.encoder.show_progress = 128, False
    rows = [Setting("float32"), *dimension_settings((1,), (384, 64))]
    store = CellStore(tmp_path / "vectors.json")
    models = {"matryoshka-seed1": Path("minilm"), "plain-seed1": Path("minilm")}
    run_collection(tiny_collection, settings, rows, store, models=models, progress=lambda _: None)
    cells = {c.setting.label(): c for c in store.cells.values()}
    full = cells["matryoshka dim=384 seed=1"]
    assert full.ndcg_at_10 == pytest.approx(cells["float32"].ndcg_at_10, abs=1e-9)
    cut = cells["truncation dim=64 seed=1"]
    assert 256 <= cut.memory_bytes_per_vector < 260 and cut.ndcg_at_10 != cells["float32"].ndcg_at_10
    assert cut.ndcg_at_10 == pytest.approx(cells["matryoshka dim=64 seed=1"].ndcg_at_10)  # the same model
    assert "| 64 | 256 |" in markdown(store.by_collection())


def test_the_finetune_arguments_parse_as_the_train_finetune_command():
    """What `bench vectors` runs in a subprocess is a valid `retrosearch train finetune` line."""
    import typer.main

    from retrosearch.cli import app

    command = finetune_command(Path("/data/scifact"), Path("/out/m"), True, 3, 200, "minilm", (384, 128),
                               threads=2)
    assert command[:2] == ["train", "finetune"]
    finetune = typer.main.get_command(app).commands["train"].commands["finetune"]
    context = finetune.make_context("finetune", command[2:])
    assert context.params["steps"] == 200 and context.params["seed"] == 3
    assert context.params["matryoshka_dimensions"] == "384,128" and context.params["eval_split"] == ""
    assert context.params["threads"] == 2
    assert "--threads" not in finetune_command(Path("/c"), Path("/o"), False, 3, 200, "minilm", (384,))


def test_the_command_trains_seed_by_seed_and_never_again_for_recorded_cells(tiny_collection, tmp_path, monkeypatch):
    """The packaged model stands in for the fine-tunes (their training is `train finetune`'s own test)."""
    from typer.testing import CliRunner

    from retrosearch.benchmarks import vectors
    from retrosearch.cli import app

    monkeypatch.setenv("RETROSEARCH_CACHE", str(tmp_path / "cache"))
    trained: list[list[int]] = []

    def fake_finetunes(_collection, _out, seeds, *_args, threads=None, **_kwargs):
        trained.append(list(seeds))
        assert threads == 2  # --threads reaches the fine-tunes
        return {vectors.finetune_name(m, s): Path("minilm") for s in seeds for m in (True, False)}

    monkeypatch.setattr(vectors, "ensure_finetunes", fake_finetunes)
    command = ["bench", "vectors", "--collection", str(tiny_collection), "--out", str(tmp_path / "out"),
               "--oversample", "1", "--finetune-steps", "1", "--train-collection", str(tiny_collection),
               "--seed", "1", "--seed", "2", "--matryoshka-dims", "384,64", "--threads", "2"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert trained == [[1], [2]]  # one seed at a time
    cells = json.loads((tmp_path / "out" / "vectors.json").read_text())["cells"]
    assert {c["setting"]["seed"] for c in cells.values()} == {None, 1, 2} and len(cells) == 5 + 2 * 4  # ivfpq: too few documents
    # every cell recorded: a rerun (its models gone, say) trains nothing
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert trained == [[1], [2]]
