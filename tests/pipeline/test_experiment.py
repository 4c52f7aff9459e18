"""Experiments: variants x seeds x collections from pipeline files, shared stages, the held-out split,
the summary over seeds and the report; and one tiny experiment run for real."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from retrosearch.cli import app
from retrosearch.pipeline import experiment as experiment_module
from retrosearch.pipeline.config import Holdout, PipelineConfigError
from retrosearch.pipeline.experiment import (
    ExperimentConfig,
    expand,
    load_experiment,
    run_experiment,
    summarise,
)
from retrosearch.pipeline.experiment_report import block_markers, loss_curves, loss_plot, write_report
from retrosearch.pipeline.holdout import divide, write_divided
from tests.conftest import DATA
from tests.pipeline.conftest import tiny_pipeline, write_pipeline

REPO = Path(__file__).resolve().parents[2]


def _experiment(tmp_path: Path, pipeline_file: Path, **extra) -> Path:
    data = {
        "name": "tiny", "work_dir": str(tmp_path / "runs"), "out": str(tmp_path / "out"), "seeds": [1, 2],
        "collections": {"tiny": str(pipeline_file)},
        "overrides": {"stages": {"mine": {"model": "start"}, "evaluate": {"after_pretrain": False},
                                 "ingest": {"enabled": False}, "serve": {"enabled": False}}},
        "variants": {
            "zero-shot": {"stages": {"pretrain": {"method": "none"}, "mine": {"enabled": False},
                                     "finetune": {"enabled": False}}},
            "finetune": {"label": "fine-tune only", "stages": {"pretrain": {"method": "none"}}},
        },
        **extra,
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_runs_are_variants_times_seeds_and_untrained_variants_run_once(tmp_path):
    base = tiny_pipeline(tmp_path / "collection", tmp_path / "model", tmp_path / "ignored")
    pipeline_file = write_pipeline(tmp_path / "tiny.yaml", base)
    path = _experiment(tmp_path, pipeline_file, variants={
        "zero-shot": {"stages": {"pretrain": {"method": "none"}, "mine": {"enabled": False},
                                 "finetune": {"enabled": False}}},
        "retromae": {"stages": {"pretrain": {"method": "retromae"}}},
        "dupmae": {"stages": {"pretrain": {"method": "dupmae", "decoder_mask_ratio": 0.4}}},
    })
    runs = expand(load_experiment(path), str(path))
    # in rounds of seeds: a stopped experiment has every variant on the same seeds
    assert [r.label for r in runs] == ["tiny/zero-shot", "tiny/retromae/seed-1", "tiny/dupmae/seed-1",
                                       "tiny/retromae/seed-2", "tiny/dupmae/seed-2"]
    zero, retro1, dup1, retro2, _ = (r.pipeline for r in runs)
    assert zero.stages.pretrain.method == "none" and not zero.stages.finetune.enabled
    assert zero.work_dir == tmp_path / "runs" / "tiny" / "zero-shot"
    assert (retro1.stages.pretrain.seed, retro1.stages.finetune.seed) == (1, 1)
    assert (retro2.stages.pretrain.seed, retro2.stages.finetune.seed) == (2, 2)
    assert retro1.work_dir == tmp_path / "runs" / "tiny" / "retromae" / "seed-1"
    # retromae -> dupmae keeps the file's pretraining settings; the variant's own win
    assert dup1.stages.pretrain.method == "dupmae" and dup1.stages.pretrain.steps == base["stages"]["pretrain"]["steps"]
    assert dup1.stages.pretrain.decoder_mask_ratio == 0.4 and retro1.stages.pretrain.decoder_mask_ratio != 0.4
    # the overrides reach every run
    assert all(r.pipeline.stages.mine.model == "start" and not r.pipeline.stages.ingest.enabled for r in runs)


def test_a_variant_can_run_on_some_collections_and_seeds_only(tmp_path):
    base = tiny_pipeline(tmp_path / "collection", tmp_path / "model", tmp_path / "ignored")
    first = write_pipeline(tmp_path / "first.yaml", base)
    second = write_pipeline(tmp_path / "second.yaml", base)
    path = _experiment(tmp_path, first, seeds=[1, 2, 3], collections={"a": str(first), "b": str(second)}, variants={
        "finetune": {"stages": {"pretrain": {"method": "none"}}},
        "long": {"stages": {"pretrain": {"method": "retromae", "steps": 7}}, "collections": ["b"], "seeds": [3, 1]},
    })
    runs = expand(load_experiment(path), str(path))
    # the costly arm runs where and as often as asked, still in the rounds of the experiment's seeds
    assert [r.label for r in runs] == ["a/finetune/seed-1", "b/finetune/seed-1", "b/long/seed-1",
                                       "a/finetune/seed-2", "b/finetune/seed-2",
                                       "a/finetune/seed-3", "b/finetune/seed-3", "b/long/seed-3"]
    assert {r.pipeline.stages.pretrain.steps for r in runs if r.variant == "long"} == {7}
    # a summary row counts the seeds it has
    results = [{"collection": r.collection, "variant": r.variant, "seed": r.seed,
                "figures": {"ndcg@10": 0.5, "mrr@10": 0.5, "recall@100": 0.5}} for r in runs]
    rows = {(row["collection"], row["variant"]): row["n"] for row in summarise(results, load_experiment(path))}
    assert rows == {("a", "finetune"): 3, ("b", "finetune"): 3, ("b", "long"): 2}


def test_only_selects_runs_by_their_label(tmp_path):
    from retrosearch.pipeline.experiment import select

    pipeline_file = write_pipeline(tmp_path / "tiny.yaml", tiny_pipeline(tmp_path / "c", tmp_path / "e", tmp_path / "w"))
    runs = expand(load_experiment(_experiment(tmp_path, pipeline_file)))
    labels = [r.label for r in runs]
    assert labels == ["tiny/zero-shot", "tiny/finetune/seed-1", "tiny/finetune/seed-2"]
    assert [r.label for r in select(runs, [])] == labels
    assert [r.label for r in select(runs, ["*/seed-2"])] == ["tiny/finetune/seed-2"]
    assert [r.label for r in select(runs, ["tiny/zero-shot", "*/seed-1"])] == labels[:2]
    with pytest.raises(PipelineConfigError, match=r"--only \*/seed-9: no run's label matches"):
        select(runs, ["*/seed-1", "*/seed-9"])


def test_bad_experiments_name_the_file_and_key(tmp_path):
    pipeline_file = write_pipeline(tmp_path / "tiny.yaml", tiny_pipeline(tmp_path, tmp_path, tmp_path))
    path = _experiment(tmp_path, pipeline_file, seeds=[1, 1])
    with pytest.raises(PipelineConfigError, match=r"experiment\.yaml: seeds: seeds must differ"):
        load_experiment(path)
    path = _experiment(tmp_path, pipeline_file, variants={"x": {"stages": {"finetune": {"steps": 0}}}})
    with pytest.raises(PipelineConfigError, match=r"collections\.tiny x variants\.x: stages\.finetune\.steps"):
        expand(load_experiment(path), str(path))
    path = _experiment(tmp_path, pipeline_file, variants={"x": {"collections": ["tiny", "other"]}})
    with pytest.raises(PipelineConfigError, match=r"variants\.x\.collections: other not among the collections \(tiny\)"):
        load_experiment(path)
    path = _experiment(tmp_path, pipeline_file, variants={"x": {"seeds": [2, 5]}})
    with pytest.raises(PipelineConfigError, match=r"variants\.x\.seeds: 5 not among the experiment's seeds \(1, 2\)"):
        load_experiment(path)
    path = _experiment(tmp_path, pipeline_file, baseline="fine-tune")
    with pytest.raises(PipelineConfigError, match=r"baseline: fine-tune is not a variant \(zero-shot, finetune\)"):
        load_experiment(path)
    path = _experiment(tmp_path, pipeline_file, variant={})
    with pytest.raises(PipelineConfigError, match=r"experiment\.yaml: variant: Extra inputs"):
        load_experiment(path)


def test_the_example_experiment_expands_to_valid_pipelines():
    config = load_experiment(REPO / "examples" / "pretraining.yaml")
    runs = expand(config)
    planned = sum(1 if name == "zero-shot" else len(variant.seeds or config.seeds)  # zero-shot runs once
                  for collection in config.collections for name, variant in config.variants.items()
                  if collection in (variant.collections or config.collections))
    assert len(runs) == planned
    assert {r.pipeline.stages.pretrain.method for r in runs} == {"none", "retromae", "dupmae"}
    cranfield = next(r.pipeline for r in runs if r.collection == "cranfield")
    assert cranfield.holdout is not None and cranfield.collection_dir() == (cranfield.work_dir / "collection").resolve()


def test_the_from_scratch_experiment_compares_objectives_on_the_same_start_and_tokens():
    from retrosearch.pipeline.stages import EvaluateStage, PretrainStage

    config = load_experiment(REPO / "examples" / "pretraining-from-scratch.yaml")
    runs = expand(config)
    assert len(runs) == 4 * 2 * 3 * 2  # arms x readouts x seeds x collections: every arm trains
    assert {r.pipeline.stages.pretrain.method for r in runs} == {"none", "mlm", "retromae", "dupmae"}
    assert config.baseline == "mlm-mean"
    for run in runs:  # each seed its own initial weights, the same for every arm of that seed
        assert run.pipeline.model == f"random:bert-small@{run.seed}"
        assert run.pipeline.stages.mine.model == "minilm"
        assert run.pipeline.stages.finetune.pooling == run.variant.rsplit("-", 1)[1]  # cls | mean
        # scored before fine-tuning too (the pretrained arms), read as its fine-tuning reads it
        evaluate = EvaluateStage(run.pipeline)
        expected = run.pipeline.stages.finetune.pooling if run.pipeline.stages.pretrain.method != "none" else None
        assert evaluate.pretrained_pooling() == expected
    pretrained = [r for r in runs if r.pipeline.stages.pretrain.method != "none"]
    corpora = {tuple(PretrainStage(r.pipeline).corpora()) for r in pretrained}
    assert len(corpora) == 1 and len(next(iter(corpora))) == 4  # every shared collection's passages
    assert all(p.name == "corpus.jsonl" for p in next(iter(corpora)))
    # the same pretraining tokens: blocks, batch, steps and order (seed) differ in nothing but the method
    same = ("steps", "batch_size", "max_length", "max_blocks", "min_tokens", "masking", "seed")
    for seed in config.seeds:
        sections = [r.pipeline.stages.pretrain for r in pretrained if r.seed == seed]
        assert len({tuple(getattr(s, k) for k in same) for s in sections}) == 1
    # one pretraining per objective and seed: both collections and both readouts share its key
    keys = {}
    for run in pretrained:
        stage = PretrainStage(run.pipeline)
        keys.setdefault((run.pipeline.stages.pretrain.method, run.seed), set()).add(
            json.dumps(stage.settings(), sort_keys=True))
    assert all(len(k) == 1 for k in keys.values()) and len(keys) == 9
    # fine-tuning as the committed experiment's: SciFact's train split, Cranfield's held-out half
    assert {r.pipeline.stages.finetune.split for r in runs} == {"train"}
    assert all(r.pipeline.holdout is not None for r in runs if r.collection == "cranfield")


def test_the_llara_experiment_adapts_or_not_before_the_same_fine_tuning():
    from retrosearch.pipeline.stages import EvaluateStage

    config = load_experiment(REPO / "examples" / "llara-cranfield.yaml")
    runs = expand(config)
    assert [(r.variant, r.seed) for r in runs] == [("zero-shot", None)] + [
        (v, s) for s in (1, 2, 3) for v in ("finetune", "llara")]
    assert all(r.pipeline.model == "smollm2" and r.pipeline.stages.mine.model == "minilm" for r in runs)
    # LLaRA's adapted model is scored before fine-tuning too; the raw LM's start is the zero-shot row
    assert [EvaluateStage(r.pipeline).scores_pretrain() for r in runs] == [False] + [False, True] * 3
    llara = next(r.pipeline.stages.pretrain for r in runs if r.variant == "llara")
    # switching the collection file's RetroMAE section to LLaRA keeps what LLaRA has (steps, rate, length)
    # and drops what it has not (max_blocks); the experiment's own settings stand
    assert (llara.method, llara.steps, llara.max_length, llara.max_pairs) == ("llara", 20, 64, 2000)
    assert {r.pipeline.stages.finetune.steps for r in runs} == {30}


def test_holdout_divides_the_queries_the_same_way_every_time(tmp_path):
    ids = [str(i) for i in range(1, 226)]
    train, test = divide(ids, Holdout(test_fraction=0.5, seed=0))
    assert not train & test and train | test == set(ids) and len(test) == 112
    assert divide(list(reversed(ids)), Holdout(test_fraction=0.5, seed=0)) == (train, test)
    assert divide(ids, Holdout(test_fraction=0.5, seed=1)) != (train, test)
    with pytest.raises(ValueError, match="at least 2 judged queries"):
        divide(["1"], Holdout())

    source = DATA / "cranfield"
    if not source.exists():
        pytest.skip(f"shared data not found at {source}")
    folder = write_divided(source, tmp_path / "cranfield", Holdout(test_fraction=0.5, seed=0))
    from retrosearch.core.collections import BeirCollection

    divided, original = BeirCollection(folder), BeirCollection(source)
    train_q, test_q = divided.qrels("train"), divided.qrels("test")
    assert not set(train_q) & set(test_q)
    assert {**train_q, **test_q} == original.qrels("test")
    assert len(divided.corpus) == len(original.corpus)
    with pytest.raises(ValueError, match="holdout.split 'dev'"):
        write_divided(source, tmp_path / "x", Holdout(split="dev"))


def _result(variant: str, seed: int | None, ndcg: float) -> dict:
    figures = {"ndcg@10": ndcg, "mrr@10": ndcg + 0.1, "recall@100": 0.9}
    if seed is not None:
        figures["finetune"] = {"steps": 30, "step_s": 3.0, "tokens_per_s": 2000.0, "loss": 0.5}
    return {"collection": "c", "variant": variant, "seed": seed, "figures": figures}


def test_summary_is_the_mean_and_sample_sd_over_seeds_and_the_report_shows_it(tmp_path, capsys):
    config = ExperimentConfig.model_validate({
        "work_dir": "w", "out": str(tmp_path / "out"), "seeds": [1, 2, 3], "collections": {"c": "c.yaml"},
        "variants": {"zero": {}, "ft": {"label": "fine-tune only"}, "pt": {}}, "baseline": "ft",
    })
    results = [_result("zero", None, 0.5), _result("ft", 1, 0.6), _result("ft", 2, 0.7), _result("ft", 3, 0.8),
               _result("pt", 2, 0.72), _result("pt", 1, 0.65), _result("pt", 3, 0.86)]
    for run, cosine in zip(results[4:], (0.3, 0.2, 0.4)):  # pt's spread, after and before fine-tuning
        run["figures"]["query_cosine"] = cosine
        run["figures"]["pretrained"] = {"ndcg@10": 0.1, "query_cosine": cosine + 0.5}
    rows = summarise(results, config)
    zero, ft, pt = rows
    assert zero["n"] == 1 and zero["ndcg@10"] == 0.5 and zero["ndcg@10 sd"] is None
    assert ft["n"] == 3 and ft["ndcg@10"] == pytest.approx(0.7) and ft["ndcg@10 sd"] == pytest.approx(0.1)
    assert ft["finetune"] == {"steps": 30, "step_s": 3.0, "tokens_per_s": 2000.0}
    # against the baseline, seed by seed: pt gains 0.05, 0.02, 0.06 (whatever order the runs come in);
    # zero-shot, trained once, is compared with every seed
    assert "baseline" not in ft
    assert pt["baseline"]["mean"] == pytest.approx(0.13 / 3) and pt["baseline"]["n"] == 3
    assert pt["baseline"]["sd"] == pytest.approx(0.0208167, abs=1e-6)  # sd of the differences, not of the arms
    assert zero["baseline"]["mean"] == pytest.approx(-0.2) and zero["baseline"]["sd"] == pytest.approx(0.1)
    assert pt["query_cosine"] == pytest.approx(0.3) and pt["pretrained query_cosine"] == pytest.approx(0.8)
    assert pt["pretrained ndcg@10"] == pytest.approx(0.1) and "query_cosine" not in ft

    for run in results:  # the pretrained arm's loss curves, read from its events in a real run
        if run["variant"] == "pt":
            run["curves"] = {"pretrain": [{"step": s, "loss": 10.0 - s / 10, "loss/encoder_mlm": 9.0 - s / 20}
                                          for s in range(10, 110, 10)]}
    payload = {"experiment": config.model_dump(mode="json"), "runs": results, "summary": rows,
               "settings": {"c/ft": {"finetune": {"steps": 30}}, "c/zero": {}},
               "planned": [f"run-{i}" for i in range(len(results))]}
    out = tmp_path / "out"
    out.mkdir()
    docs_page = tmp_path / "docs" / "benchmarks" / "pretraining.md"
    docs_page.parent.mkdir(parents=True)
    start, end = block_markers("experiment")
    docs_page.write_text(f"# x\n\n{start}\nold\n{end}\n\ntail\n")
    page = write_report(payload, out, "retrosearch pipeline experiment e.yaml", docs_page)
    text = page.read_text()
    assert "| c | fine-tune only | 3 | 0.7000 ± 0.1000 |" in text and "30 steps x 3.00 s, 2000 tok/s" in text
    assert "| ndcg@10 vs fine-tune only | mrr@10 vs fine-tune only | recall@100 vs fine-tune only |" in text
    # every metric paired by seed: MRR@10 moves with NDCG@10 here, Recall@100 not at all
    assert "| 0.9000 ± 0.0000 | +0.0433 ± 0.0208 | +0.0433 ± 0.0208 | +0.0000 ± 0.0000 |" in text
    assert "- c/zero: no training" in text
    # the spread columns, shown because a run has them; "-" where a run did not measure them
    assert "| query cos | NDCG@10 before FT | query cos before FT | pretraining |" in text
    assert "| +0.0433 ± 0.0208 | +0.0000 ± 0.0000 | 0.3000 | 0.1000 | 0.8000 |" in text
    assert "| c | pt | 1 | 0.6500 | 0.7500 | 0.9000 | 0.2000 | 0.1000 | 0.7000 |" in text
    assert "| c | ft | 1 | 0.6000 | 0.7000 | 0.9000 | - | - | - |" in text
    assert (out / "ndcg.png").stat().st_size > 10_000
    assert (out / "pretraining-loss.png").stat().st_size > 10_000
    assert list(loss_curves(payload)) == [("pt", 2), ("pt", 1), ("pt", 3)]
    assert "![Pretraining loss](pretraining-loss.png)" in text
    first = docs_page.read_text()
    assert "old" not in first and first.endswith("\n\ntail\n") and "| c | zero | 1 | 0.5000 |" in first
    # links relative to the page, so the plot renders on GitHub and in the site alike
    assert "![NDCG@10 per variant](../../out/ndcg.png)" in first
    assert "![Pretraining loss](../../out/pretraining-loss.png)" in first
    assert "[summary.md](../../out/summary.md)" in first
    write_report(payload, out, "retrosearch pipeline experiment e.yaml", docs_page)
    assert docs_page.read_text() == first  # idempotent
    payload["planned"].append("c/ft/seed-4")  # a run still to do: the report says the figures are partial
    write_report(payload, out, "cmd", docs_page)
    assert "Partial: 7 of 8 runs finished" in page.read_text() and "Partial: 7 of 8" in docs_page.read_text()
    docs_page.write_text("no markers\n")
    with pytest.raises(typer.Exit):
        write_report(payload, out, "cmd", docs_page)
    assert "needs the lines" in capsys.readouterr().err and docs_page.read_text() == "no markers\n"


def test_variants_sharing_a_pretraining_share_one_loss_line():
    """Two readouts of one pretraining (the same pretrain settings) are one curve per seed, named for
    both; another pretraining keeps its own."""
    mlm = {"method": "mlm"}
    variants = {
        "mlm-cls": {"label": "MLM (CLS)", "stages": {"pretrain": mlm, "finetune": {"pooling": "cls"}}},
        "mlm-mean": {"label": "MLM (mean)", "stages": {"pretrain": mlm, "finetune": {"pooling": "mean"}}},
        "rmae": {"stages": {"pretrain": {"method": "retromae"}}},
        "none": {},
    }
    curve = [{"step": 1, "loss": 9.0}]
    runs = [{"variant": v, "seed": seed, "curves": {"pretrain": curve}}
            for seed in (1, 2) for v in ("mlm-cls", "mlm-mean", "rmae")] + [{"variant": "none", "seed": 1}]
    curves = loss_curves({"experiment": {"variants": variants}, "runs": runs})
    shared = "MLM (CLS) / MLM (mean)"
    assert sorted(curves) == [(shared, 1), (shared, 2), ("rmae", 1), ("rmae", 2)]


def test_the_loss_plot_has_the_shared_mlm_panel_only_where_a_method_has_that_term(tmp_path):
    """MLM, RetroMAE and DupMAE share the encoder's MLM term (a second panel); LLaRA has none, so its
    plot is the total alone, not beside an empty panel."""
    import matplotlib.image

    def width(curve: list[dict[str, float]], name: str) -> int:
        payload = {"experiment": {"variants": {"pt": {"stages": {"pretrain": {"method": "x"}}}}},
                   "runs": [{"variant": "pt", "seed": 1, "curves": {"pretrain": curve}}]}
        return matplotlib.image.imread(loss_plot(payload, tmp_path / name)).shape[1]

    two = width([{"step": s, "loss": 9.0 - s, "loss/encoder_mlm": 8.0 - s} for s in (1, 2)], "mlm.png")
    one = width([{"step": s, "loss": 9.0 - s, "loss/ebae": 4.0} for s in (1, 2)], "llara.png")
    assert two == 2 * one


def test_a_tiny_experiment_shares_mining_and_reports(tmp_path, train_test_collection, tiny_encoder, ray_local,
                                                     monkeypatch):
    base = tiny_pipeline(train_test_collection, tiny_encoder, tmp_path / "ignored")
    base["holdout"] = {"split": "train", "test_fraction": 0.5, "seed": 0}  # 6 train, 6 test queries
    base["stages"]["evaluate"]["split"] = "test"
    pipeline_file = write_pipeline(tmp_path / "tiny.yaml", base)
    path = _experiment(tmp_path, pipeline_file)
    config = load_experiment(path)
    early = CliRunner().invoke(app, ["pipeline", "experiment", str(path), "--report-only",
                                     "--readme", str(tmp_path / "README.md")])
    assert early.exit_code == 2 and "no run has finished yet" in early.output
    # the option's old name, kept for one release
    assert "warning: --readme is deprecated and will be removed; use --docs-page" in early.output
    lines: list[str] = []
    payload = run_experiment(config, expand(config, str(path)), lines.append)

    assert [(r["variant"], r["seed"]) for r in payload["runs"]] == [("zero-shot", None), ("finetune", 1), ("finetune", 2)]
    first, second = payload["runs"][1], payload["runs"][2]
    assert first["stages"]["mine"]["status"] == "ran"
    assert second["stages"]["mine"]["status"] == "skipped"  # the same key: taken from seed 1's folder
    assert any("mine: skipped (done in " in line for line in lines), lines
    models = {Path(r["work_dir"]) / "finetune" / "model" for r in payload["runs"][1:]}
    assert all((m / "retrosearch.json").is_file() for m in models) and len(models) == 2
    assert first["figures"]["finetune"]["steps"] == base["stages"]["finetune"]["steps"]
    assert first["figures"]["finetune"]["tokens_per_s"] > 0
    assert -1.0 <= first["figures"]["query_cosine"] <= 1.0  # the spread of the fine-tuned model's queries
    held_out = (Path(first["work_dir"]) / "collection" / "qrels" / "test.tsv").read_text()
    assert len({line.split("\t")[0] for line in held_out.splitlines()[1:]}) == 6
    rows = {r["variant"]: r for r in payload["summary"]}
    assert rows["zero-shot"]["n"] == 1 and rows["finetune"]["n"] == 2 and rows["finetune"]["ndcg@10 sd"] is not None
    assert json.loads((config.out / "results.json").read_text())["summary"] == payload["summary"]

    # the command: every run is kept from the record (same recipe), nothing runs, the report is written
    result = CliRunner().invoke(app, ["pipeline", "experiment", str(path)])
    assert result.exit_code == 0, result.output
    assert "running" not in result.output and (config.out / "summary.md").is_file()
    assert result.output.count("kept from") == 3, result.output
    assert (config.out / "ndcg.png").is_file()
    again = json.loads((config.out / "results.json").read_text())
    assert again["runs"] == payload["runs"] and again["summary"] == payload["summary"]
    # the report alone takes each run from the record, as it ran (seed 1 mined, seed 2 took its negatives)
    kept = CliRunner().invoke(app, ["pipeline", "experiment", str(path), "--report-only"])
    assert kept.exit_code == 0, kept.output
    assert json.loads((config.out / "results.json").read_text())["runs"] == payload["runs"]
    # the record outlives the work dir: with every run folder gone, the report still has all three
    shutil.rmtree(config.work_dir)
    rebuilt = CliRunner().invoke(app, ["pipeline", "experiment", str(path), "--report-only"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert json.loads((config.out / "results.json").read_text())["runs"] == payload["runs"]
    # a run recorded with another recipe is not taken from the record: with its folder gone, it is not finished
    record = json.loads((config.out / "results.json").read_text())
    record["runs"][2]["key"] = "another recipe"
    (config.out / "results.json").write_text(json.dumps(record))
    (config.out / "summary.md").unlink()
    rebuilt = CliRunner().invoke(app, ["pipeline", "experiment", str(path), "--report-only"])
    assert rebuilt.exit_code == 0, rebuilt.output
    partial = json.loads((config.out / "results.json").read_text())
    assert [r["seed"] for r in partial["runs"]] == [None, 1] and partial["runs"][1] == payload["runs"][1]
    assert "Partial: 2 of 3 runs finished" in (config.out / "summary.md").read_text()
    # a part of the grid: the run left out is not run, and the record keeps every other cell
    part = CliRunner().invoke(app, ["pipeline", "experiment", str(path), "--only", "tiny/zero-shot"])
    assert part.exit_code == 0, part.output
    assert "tiny/finetune/seed-2: not selected (--only): left for another time" in part.output
    assert not (config.work_dir / "tiny" / "finetune" / "seed-2" / "finetune").exists()  # nothing trained
    assert json.loads((config.out / "results.json").read_text())["runs"] == partial["runs"]
    # a run that must run again comes first: every write keeps the records of the runs after it
    record = json.loads((config.out / "results.json").read_text())
    record["runs"] = [{**payload["runs"][0], "key": "another recipe"}, *payload["runs"][1:]]
    (config.out / "results.json").write_text(json.dumps(record))
    writes: list[int] = []
    write = experiment_module.write_results
    monkeypatch.setattr(experiment_module, "write_results",
                        lambda e, p: writes.append(len(p["runs"])) or write(e, p))
    again = CliRunner().invoke(app, ["pipeline", "experiment", str(path), "--only", "tiny/zero-shot"])
    assert again.exit_code == 0, again.output
    assert writes == [3, 3]  # after the zero-shot run and at the end
    kept = json.loads((config.out / "results.json").read_text())["runs"]
    assert kept[1:] == payload["runs"][1:] and kept[0]["key"] == payload["runs"][0]["key"]
