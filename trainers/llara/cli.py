"""``retrosearch train llara``: LLaRA post-training of a causal LM on the shared Ray Train harness."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from retrosearch.plugin import cli_options as opt
from retrosearch.trainers import cli as train_cli


def llara(
    corpus: Annotated[Path, typer.Option(help="JSONL/Parquet corpus, BEIR folder or save_to_disk dataset.")],
    out: train_cli.Out,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Causal-LM checkpoint folder or packaged name. (default smollm2)"),
    ] = None,
    steps: train_cli.Steps = None,
    workers: train_cli.Workers = None,
    use_gpu: train_cli.UseGpu = None,
    batch_size: train_cli.BatchSize = None,
    grad_accum: train_cli.GradAccum = None,
    lr: train_cli.Lr = None,
    warmup_ratio: train_cli.Warmup = None,
    scheduler: train_cli.Scheduler = None,
    precision: train_cli.Precision = None,
    seed: train_cli.Seed = None,
    max_length: Annotated[
        int | None, typer.Option(help="Tokens of the text and of each target. (default 128)")
    ] = None,
    pairs: Annotated[
        str | None,
        typer.Option(help="passages or sentences: what a (text, next) pair is. (default passages)"),
    ] = None,
    prompt: Annotated[
        str | None, typer.Option(help="paper (one </s> per prompt) or reference (8 summary tokens).")
    ] = None,
    self_weight: Annotated[float | None, typer.Option(help="Weight of EBAE. (default 1)")] = None,
    next_weight: Annotated[float | None, typer.Option(help="Weight of EBAR. (default 1)")] = None,
    lm_weight: Annotated[
        float | None, typer.Option(help="Weight of next-token loss on the text. (default 0)")
    ] = None,
    lora: Annotated[
        bool | None, typer.Option("--lora/--no-lora", help="Train LoRA adapters only.")
    ] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank. (default 16)")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha. (default 32)")] = None,
    lora_export: Annotated[str | None, typer.Option(help="merge (default) or adapter.")] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")
    ] = None,
    text_field: Annotated[str | None, typer.Option(help="Field holding the text. (default text)")] = None,
    title_field: Annotated[str | None, typer.Option(help="Field holding the title ('' for none).")] = None,
    max_pairs: Annotated[int | None, typer.Option(help="Train on at most this many pairs.")] = None,
    checkpoint_every: train_cli.CheckpointEvery = None,
    log_every: train_cli.LogEvery = None,
    storage: train_cli.Storage = None,
    name: train_cli.Name = None,
    threads: opt.Threads = None,
    ray_address: train_cli.RayAddress = None,
    config: train_cli.ConfigFile = None,
) -> None:
    """LLaRA (EBAE + EBAR) post-training; writes an encoder folder with last-token pooling and the prompts.

    Passages are embedded under the EBAE prompt, queries under the EBAR prompt. Re-running the same
    command resumes from the last checkpoint.
    """
    from retrosearch.trainers.harness.config import TrainConfig
    from retrosearch.trainers.llara.config import LLaRAConfig
    from retrosearch.trainers.llara.method import LLaRAMethod

    try:
        sections = train_cli._read_config(config)
        method_fields = {
            **sections.get("method", {}),
            **train_cli._given(
                model=model,
                corpus=str(corpus),
                max_length=max_length,
                pairs=pairs,
                prompt=prompt,
                self_weight=self_weight,
                next_weight=next_weight,
                lm_weight=lm_weight,
                lora=lora,
                lora_r=lora_r,
                lora_alpha=lora_alpha,
                lora_export=lora_export,
                gradient_checkpointing=gradient_checkpointing,
                text_field=text_field,
                max_pairs=max_pairs,
            ),
        }
        if title_field is not None:
            method_fields["title_field"] = title_field or None
        train_fields = train_cli.train_fields(sections.get("train", {}), locals())
        method = LLaRAMethod(LLaRAConfig.model_validate(method_fields))
        train = TrainConfig.model_validate(train_fields)
    except (ValueError, OSError) as exc:
        raise opt.fail(str(exc)) from None
    train_cli.run_training(method, train)


def register(train_app: typer.Typer) -> None:
    """Add ``retrosearch train llara``."""
    train_app.command()(llara)
