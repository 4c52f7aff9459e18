"""``retrosearch mine-negatives`` and ``retrosearch train finetune``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from retrosearch.plugin import cli_options as opt
from retrosearch.plugin.collections import BeirCollection, CollectionError
from retrosearch.plugin.config import Settings
from retrosearch.plugin.encoder import ModelNotFoundError
from retrosearch.plugin.index import IndexMismatchError, load_index
from retrosearch.trainers import cli as train_cli
from retrosearch.trainers.finetune.config import FinetuneConfig, MiningConfig

RankStart = Annotated[int, typer.Option(help="First rank (1-based) negatives are drawn from.")]
RankEnd = Annotated[int, typer.Option(help="Last rank (inclusive) negatives are drawn from.")]
NumNegatives = Annotated[int, typer.Option(help="Negatives kept per query (sampled in the window).")]


@opt.with_settings(opt.ENCODER, opt.ENCODER_SPEC)
def mine_negatives(
    collection: Annotated[Path, typer.Option(help="BEIR collection folder (corpus, queries, qrels).")],
    out: Annotated[Path, typer.Option(help="JSONL training file to write (plus OUT.meta.json).")],
    split: Annotated[str, typer.Option(help="qrels split whose queries get negatives (never the test split).")] = "train",
    rank_start: RankStart = 30,
    rank_end: RankEnd = 200,
    num_negatives: NumNegatives = 7,
    seed: Annotated[int, typer.Option(help="Seed of the sampling in the window.")] = 0,
    index_dir: Annotated[
        Optional[Path], typer.Option("--index", help="Reuse a saved FAISS index of the corpus built with MODEL.")
    ] = None,
    save_index: Annotated[Optional[Path], typer.Option(help="Save the corpus index built here, for reuse.")] = None,
    quiet: opt.Quiet = False,
    settings: Settings = None,
) -> None:
    """Mine hard negatives: encode the corpus with MODEL, search each query of SPLIT, sample from a rank window.

    Known positives (and documents with the same text) are never negatives.
    """
    from retrosearch.plugin.encoder import Encoder
    from retrosearch.trainers.finetune.mining import mine_collection, mining_provenance, write_mined

    if quiet:
        settings.encoder.show_progress = False
    try:
        mining = MiningConfig(rank_start=rank_start, rank_end=rank_end, num_negatives=num_negatives, seed=seed)
        beir = BeirCollection(collection)
        beir.qrels(split)
        encoder = Encoder.load(settings.encoder)
        index = load_index(index_dir, settings) if index_dir else None
        result = mine_collection(beir, split, encoder, mining, settings, index=index)
    except (CollectionError, ModelNotFoundError, IndexMismatchError, FileNotFoundError, ValueError) as exc:
        raise opt.fail(str(exc)) from None
    meta = write_mined(out, result, mining_provenance(beir, split, encoder, mining))
    if save_index:
        result.index.save(save_index)
    stats = result.stats
    typer.echo(
        f"mined {stats['negatives']} negatives for {stats['queries']} queries of {beir.name}/{split} "
        f"(ranks {rank_start}-{rank_end}; {stats['positives_skipped_in_window']} positives skipped, "
        f"{stats['queries_short_of_negatives']} queries short) -> {out} ({meta.name})"
    )


def _steps_for(method: Any, train_fields: dict[str, Any], epochs: float) -> int:
    """Optimiser steps covering ``epochs`` passes over the training groups (loads them once)."""
    from retrosearch.trainers.harness.config import TrainConfig

    batch = train_fields.get("batch_size", TrainConfig.model_fields["batch_size"].default)
    return max(1, math.ceil(epochs * len(method.load_examples()) / batch))


def _evaluate(cfg: FinetuneConfig, out: Path, batch_size: int | None, threads: int | None, device: str) -> None:
    """The held-out evaluation ``retrosearch eval`` would run, written to ``OUT/eval-<split>.json``."""
    from retrosearch.benchmarks.evaluate import evaluate
    from retrosearch.benchmarks.report import print_result, write_json
    from retrosearch.plugin.config import EncoderSettings
    from retrosearch.plugin.encoder import Encoder

    assert cfg.collection is not None and cfg.eval_split is not None
    collection = BeirCollection(cfg.collection)
    encoder = Encoder.load(EncoderSettings(model=str(out), batch_size=batch_size, threads=threads, device=device))
    result = evaluate(collection, encoder, cfg.eval_backend, split=cfg.eval_split)
    print_result(result, f"{collection.name}/{cfg.eval_split} {out} {result.config['backend']}")
    write_json(out / f"eval-{cfg.eval_split}.json", result.as_dict())
    typer.echo(f"wrote {out / f'eval-{cfg.eval_split}.json'}")


def finetune(
    out: train_cli.Out,
    model: Annotated[
        Optional[str], typer.Option("--model", "-m", help="Starting checkpoint folder or packaged name. (default minilm)")
    ] = None,
    collection: Annotated[
        Optional[Path], typer.Option(help="BEIR folder: the training split's qrels, the corpus to mine, the eval.")
    ] = None,
    split: Annotated[Optional[str], typer.Option(help="qrels split to train on. (default train)")] = None,
    train_file: Annotated[
        Optional[Path], typer.Option(help="JSONL of {query, positives, negatives} (e.g. from mine-negatives).")
    ] = None,
    eval_split: Annotated[
        Optional[str], typer.Option(help="Held-out split evaluated at the end ('' to skip). (default test)")
    ] = None,
    eval_backend: Annotated[Optional[str], typer.Option(help="Backend of the final evaluation. (default faiss-flat)")] = None,
    mine: Annotated[
        Optional[bool], typer.Option("--mine/--no-mine", help="Mine negatives when no --train-file is given.")
    ] = None,
    rank_start: Annotated[Optional[int], typer.Option(help="First rank negatives are mined from. (default 30)")] = None,
    rank_end: Annotated[Optional[int], typer.Option(help="Last rank negatives are mined from. (default 200)")] = None,
    num_negatives: Annotated[Optional[int], typer.Option(help="Negatives mined per query. (default 7)")] = None,
    negatives_out: Annotated[
        Optional[Path], typer.Option(help="Where mined groups go. (default OUT.hard-negatives.jsonl)")
    ] = None,
    group_size: Annotated[
        Optional[int], typer.Option(help="Passages per query: 1 positive + N-1 hard negatives. (default 4)")
    ] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Softmax temperature. (default 0.05)")] = None,
    cross_device: Annotated[
        Optional[bool], typer.Option("--cross-device/--no-cross-device", help="Share negatives across workers.")
    ] = None,
    query_max_length: Annotated[Optional[int], typer.Option(help="Tokens per query in training. (default 64)")] = None,
    passage_max_length: Annotated[
        Optional[int], typer.Option(help="Tokens per passage in training. (default 256)")
    ] = None,
    pooling: opt.PoolingOpt = None,
    query_template: opt.QueryTemplate = None,
    passage_template: opt.PassageTemplate = None,
    lora: Annotated[
        Optional[bool], typer.Option("--lora/--no-lora", help="LoRA adapters (default: on for decoder LLMs).")
    ] = None,
    lora_r: Annotated[Optional[int], typer.Option(help="LoRA rank. (default 16)")] = None,
    lora_alpha: Annotated[Optional[int], typer.Option(help="LoRA alpha. (default 32)")] = None,
    lora_dropout: Annotated[Optional[float], typer.Option(help="LoRA dropout. (default 0.1)")] = None,
    lora_targets: Annotated[
        Optional[str], typer.Option(help="Comma-separated module names, or all-linear. (default all-linear)")
    ] = None,
    gradient_checkpointing: Annotated[
        Optional[bool], typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations in backward.")
    ] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Passes over the training queries (sets --steps).")] = None,
    steps: train_cli.Steps = None,
    workers: train_cli.Workers = None,
    use_gpu: train_cli.UseGpu = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Queries per step over all workers. (default 32)")] = None,
    grad_accum: train_cli.GradAccum = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate. (default 2e-5; ~1e-4 with LoRA)")] = None,
    warmup_ratio: train_cli.Warmup = None,
    scheduler: train_cli.Scheduler = None,
    precision: train_cli.Precision = None,
    seed: train_cli.Seed = None,
    checkpoint_every: train_cli.CheckpointEvery = None,
    log_every: train_cli.LogEvery = None,
    storage: train_cli.Storage = None,
    name: train_cli.Name = None,
    threads: opt.Threads = None,
    eval_batch_size: Annotated[Optional[int], typer.Option(help="Texts per forward pass in the evaluation (default: the runtime's).")] = None,
    eval_device: Annotated[str, typer.Option(help="Device of the evaluation (auto picks CUDA).")] = "auto",
    ray_address: train_cli.RayAddress = None,
    config: train_cli.ConfigFile = None,
) -> None:
    """Contrastive fine-tuning (InfoNCE, in-batch + mined hard negatives) of any encoder the runtime loads.

    Train from a BEIR split (--collection DIR --split train; negatives are mined with the starting
    model and saved) or from a JSONL file (--train-file). The held-out --eval-split is evaluated at
    the end. Re-running the same command resumes from the last checkpoint.
    """
    from retrosearch.trainers.finetune.method import FinetuneMethod
    from retrosearch.trainers.harness.config import TrainConfig

    try:
        sections = train_cli._read_config(config)
        section = sections.get("method", {})
        targets = lora_targets if lora_targets in (None, "all-linear") else lora_targets.split(",")
        method_fields = {
            **section,
            **train_cli._given(
                model=model, collection=collection, split=split, train_file=train_file, eval_backend=eval_backend,
                mine=mine, group_size=group_size, temperature=temperature, cross_device_negatives=cross_device,
                query_max_length=query_max_length, passage_max_length=passage_max_length, pooling=pooling,
                query_template=query_template, passage_template=passage_template, lora=lora,
                gradient_checkpointing=gradient_checkpointing,
            ),
            "mining": {
                **section.get("mining", {}),
                **train_cli._given(rank_start=rank_start, rank_end=rank_end, num_negatives=num_negatives),
            },
            "lora_config": {
                **section.get("lora_config", {}),
                **train_cli._given(r=lora_r, alpha=lora_alpha, dropout=lora_dropout, target_modules=targets),
            },
        }
        if eval_split is not None:
            method_fields["eval_split"] = eval_split or None
        if negatives_out is not None:
            method_fields["mined_file"] = negatives_out
        elif "mined_file" not in method_fields:
            method_fields["mined_file"] = out.with_name(out.name + ".hard-negatives.jsonl")
        train_fields = {"lr": 2e-5, **train_cli.train_fields(sections.get("train", {}), locals())}
        method = FinetuneMethod(FinetuneConfig.model_validate(method_fields))
        if epochs is not None:
            if steps is not None:
                raise ValueError("give --epochs or --steps, not both")
            train_fields["steps"] = _steps_for(method, train_fields, epochs)
        train = TrainConfig.model_validate(train_fields)
    except (CollectionError, ModelNotFoundError, ValueError, OSError) as exc:
        raise opt.fail(str(exc)) from None
    train_cli.run_training(method, train)
    cfg = method.config
    if cfg.collection is not None and cfg.eval_split:
        _evaluate(cfg, train.out, eval_batch_size, threads, eval_device)


def register(train_app: typer.Typer, app: typer.Typer) -> None:
    """Add ``retrosearch train finetune`` and ``retrosearch mine-negatives``."""
    train_app.command()(finetune)
    app.command("mine-negatives")(mine_negatives)
