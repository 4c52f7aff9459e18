"""``retrosearch mine-negatives`` and ``retrosearch train finetune``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from retrosearch.core import cli_options as opt
from retrosearch.core.collections import BeirCollection
from retrosearch.core.config import EncoderSettings, Settings
from retrosearch.core.index import load_index
from retrosearch.core.retrieval.report import print_result, write_json
from retrosearch.trainers import launch
from retrosearch.trainers.finetune.config import FinetuneConfig, MiningConfig
from retrosearch.trainers.harness.config import TrainConfig
from retrosearch.trainers.options import FieldOption, comma_list, empty_is_none, with_train_config


@opt.with_settings(opt.ENCODER, opt.ENCODER_SPEC)
def mine_negatives(
    collection: Annotated[Path, typer.Option(help="BEIR collection folder (corpus, queries, qrels).")],
    out: Annotated[Path, typer.Option(help="JSONL training file to write (plus OUT.meta.json).")],
    split: Annotated[str, typer.Option(help="qrels split whose queries get negatives (never the test split).")] = "train",
    rank_start: Annotated[int, typer.Option(help="First rank (1-based) negatives are drawn from.")] = 30,
    rank_end: Annotated[int, typer.Option(help="Last rank (inclusive) negatives are drawn from.")] = 200,
    num_negatives: Annotated[int, typer.Option(help="Negatives kept per query (sampled in the window).")] = 7,
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
    # lazy: keeps torch, faiss, transformers out of CLI start-up
    from retrosearch.core.encoder import Encoder
    from retrosearch.trainers.finetune.mining import mine_collection, mining_provenance, write_mined

    if quiet:
        settings.encoder.show_progress = False
    with opt.user_errors():
        mining = MiningConfig(rank_start=rank_start, rank_end=rank_end, num_negatives=num_negatives, seed=seed)
        beir = BeirCollection(collection)
        beir.qrels(split)
        encoder = Encoder.load(settings.encoder)
        index = load_index(index_dir, settings) if index_dir else None
        result = mine_collection(beir, split, encoder, mining, settings, index=index)
    meta = write_mined(out, result, mining_provenance(beir, split, encoder, mining))
    if save_index:
        result.index.save(save_index)
    stats = result.stats
    typer.echo(
        f"mined {stats['negatives']} negatives for {stats['queries']} queries of {beir.name}/{split} "
        f"(ranks {rank_start}-{rank_end}; {stats['positives_skipped_in_window']} positives skipped, "
        f"{stats['queries_short_of_negatives']} queries short) -> {out} ({meta.name})"
    )


def _evaluate(cfg: FinetuneConfig, out: Path, batch_size: int | None, threads: int | None, device: str) -> None:
    """The held-out evaluation ``retrosearch eval`` would run, written to ``OUT/eval-<split>.json``."""
    # lazy: keeps torch, faiss, transformers out of CLI start-up
    from retrosearch.core.encoder import Encoder
    from retrosearch.core.retrieval import evaluate

    assert cfg.collection is not None and cfg.eval_split is not None
    collection = BeirCollection(cfg.collection)
    encoder = Encoder.load(EncoderSettings(model=str(out), batch_size=batch_size, threads=threads, device=device))
    result = evaluate(collection, encoder, cfg.eval_backend, split=cfg.eval_split)
    print_result(result, f"{collection.name}/{cfg.eval_split} {out} {result.config['backend']}")
    write_json(out / f"eval-{cfg.eval_split}.json", result.as_dict())
    typer.echo(f"wrote {out / f'eval-{cfg.eval_split}.json'}")


FINETUNE_OPTIONS = (
    FieldOption("model", ("--model", "-m"), "Starting checkpoint folder or packaged name"),
    FieldOption("collection"),
    FieldOption("split", help="qrels split to train on"),
    FieldOption("train_file"),
    FieldOption("eval_split", help="Held-out split evaluated at the end ('' to skip)", parse=empty_is_none),
    FieldOption("eval_backend", help="Backend of the final evaluation"),
    FieldOption("mine", ("--mine/--no-mine",), "Mine negatives when no --train-file is given"),
    FieldOption("mining.rank_start", help="First rank (1-based) negatives are mined from"),
    FieldOption("mining.rank_end", help="Last rank (inclusive) negatives are mined from"),
    FieldOption("mining.num_negatives", help="Negatives mined per query"),
    FieldOption("mined_file", ("--negatives-out",), "Where mined groups go [default: OUT.hard-negatives.jsonl]"),
    FieldOption("group_size"),
    FieldOption("temperature", help="Softmax temperature"),
    FieldOption("cross_device_negatives", ("--cross-device/--no-cross-device",), "Share negatives across workers"),
    FieldOption("matryoshka_dimensions", ("--matryoshka-dims",),
                "Matryoshka: comma-separated dimensions the loss is summed over, e.g. 384,256,128,64",
                type=str, parse=comma_list),
    FieldOption("query_max_length", help="Tokens per query in training"),
    FieldOption("passage_max_length", help="Tokens per passage in training"),
    *(FieldOption(name, help=opt.setting_help(name)) for name in ("pooling", "query_template", "passage_template")),
    FieldOption("lora", ("--lora/--no-lora",), "LoRA adapters [default: on for decoder LLMs]", type=bool),
    FieldOption("lora_config.r", ("--lora-r",), "LoRA rank"),
    FieldOption("lora_config.alpha", ("--lora-alpha",), "LoRA alpha"),
    FieldOption("lora_config.dropout", ("--lora-dropout",), "LoRA dropout"),
    FieldOption("lora_config.target_modules", ("--lora-targets",), "Comma-separated module names, or all-linear",
                type=str, parse=comma_list),
    FieldOption("gradient_checkpointing", ("--gradient-checkpointing/--no-gradient-checkpointing",),
                "Recompute activations in backward"),
)


@with_train_config(FinetuneConfig, FINETUNE_OPTIONS, run_defaults={"lr": 2e-5})
def finetune(
    train: TrainConfig,
    method: FinetuneConfig,
    eval_batch_size: Annotated[Optional[int], typer.Option(help="Texts per forward pass in the evaluation.", show_default="the runtime's")] = None,
    eval_device: Annotated[str, typer.Option(help="Device of the evaluation (auto picks CUDA).")] = "auto",
) -> None:
    """Contrastive fine-tuning (InfoNCE, in-batch + mined hard negatives) of any encoder the runtime loads.

    Train from a BEIR split (--collection DIR --split train; negatives are mined with the starting
    model and saved) or from a JSONL file (--train-file). The held-out --eval-split is evaluated at
    the end. Re-running the same command resumes from the last checkpoint.
    """
    # lazy: keeps torch, faiss out of CLI start-up
    from retrosearch.trainers.finetune.method import FinetuneMethod

    if method.mined_file is None:
        method = method.model_copy(update={"mined_file": train.out.with_name(train.out.name + ".hard-negatives.jsonl")})
    launch.run_training(FinetuneMethod(method), train)
    if method.collection is not None and method.eval_split:
        _evaluate(method, train.out, eval_batch_size, train.threads, eval_device)


def register(train_app: typer.Typer, app: typer.Typer) -> None:
    """Add ``retrosearch train finetune`` and ``retrosearch mine-negatives``."""
    train_app.command()(finetune)
    app.command("mine-negatives")(mine_negatives)
