"""``retrosearch train <method>``: one command per trainer, all run on the shared Ray Train harness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from retrosearch.plugin import cli_options as opt
from retrosearch.plugin.collections import CollectionError
from retrosearch.plugin.encoder import ModelNotFoundError
from retrosearch.trainers.harness.config import TrainConfig

train_app = typer.Typer(
    help="Train encoders: RetroMAE/DupMAE pretraining (more methods to come).", no_args_is_help=True
)

# Options every trainer takes (they map one-to-one onto TrainConfig fields).
Out = Annotated[Path, typer.Option(help="Folder to write the trained model to.")]
StartModel = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Starting checkpoint folder or packaged name. (default minilm)"),
]
Steps = Annotated[Optional[int], typer.Option(help="Optimiser steps in total. (default 1000)")]
Workers = Annotated[Optional[int], typer.Option(help="Ray Train workers (DDP). (default 1)")]
UseGpu = Annotated[
    Optional[bool], typer.Option("--use-gpu/--no-gpu", help="One GPU per worker (nccl, mixed precision).")
]
BatchSize = Annotated[Optional[int], typer.Option(help="Examples per step over all workers. (default 16)")]
GradAccum = Annotated[Optional[int], typer.Option(help="Micro-batches per worker and step. (default 1)")]
Lr = Annotated[Optional[float], typer.Option(help="Peak learning rate. (default 1e-4)")]
Warmup = Annotated[Optional[float], typer.Option(help="Share of steps warming up. (default 0.1)")]
Scheduler = Annotated[
    Optional[str], typer.Option(help="linear, cosine, constant_with_warmup, ... (default linear)")
]
Precision = Annotated[
    Optional[str], typer.Option(help="auto (bf16/fp16 on GPU, fp32 on CPU), fp32, bf16, fp16.")
]
Seed = Annotated[Optional[int], typer.Option(help="Seed of the data order and of every mask. (default 42)")]
CheckpointEvery = Annotated[Optional[int], typer.Option(help="Steps between checkpoints. (default 100)")]
LogEvery = Annotated[Optional[int], typer.Option(help="Steps between progress lines. (default 10)")]
Storage = Annotated[Optional[Path], typer.Option(help="Checkpoint storage folder. (default OUT.train)")]
Name = Annotated[Optional[str], typer.Option(help="Run name in the storage folder (re-run it to resume).")]
RayAddress = opt.RayAddress
ConfigFile = Annotated[
    Optional[Path],
    typer.Option(
        "--config", help="JSON or YAML with 'train' and 'method' sections; command-line options win."
    ),
]


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    unknown = set(data) - {"train", "method"}
    if unknown:
        raise ValueError(f"{path}: unknown sections {sorted(unknown)} (expected 'train' and 'method')")
    return data


def _given(**options: Any) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


# The options every ``train`` command shares: command-line parameter -> TrainConfig field.
_TRAIN_OPTIONS = {
    **{name: name for name in ("out", "steps", "workers", "use_gpu", "batch_size", "grad_accum", "lr", "warmup_ratio")},
    **{name: name for name in ("scheduler", "precision", "seed", "checkpoint_every", "log_every", "name", "threads")},
    "storage": "storage_path",
    "ray_address": "ray_address",
}


def train_fields(section: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The config file's ``train`` section overlaid with the shared options given on the command line.

    ``options`` is the command's parameters (its ``locals()``); only those of :data:`_TRAIN_OPTIONS` are read.
    """
    return {**section, **_given(**{field: options[name] for name, field in _TRAIN_OPTIONS.items()})}


def run_training(method, train: TrainConfig) -> None:
    """Fit, then print where the model went; failures become one-line errors."""
    from ray.train import TrainingFailedError

    from retrosearch.trainers.harness.runner import fit, run_dir

    try:
        result = fit(method, train)
    except (CollectionError, ModelNotFoundError, ValueError) as exc:
        raise opt.fail(str(exc)) from None
    except TrainingFailedError as exc:
        raise opt.fail(
            f"training failed: {exc}\nre-run the same command to resume from the last checkpoint in "
            f"{run_dir(method, train)}"
        ) from None
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k.startswith("loss"))
    typer.echo(f"trained model written to {result.out} ({losses})")
    typer.echo(f"checkpoints and log: {result.run_dir}")
    typer.echo(f"evaluate: retrosearch eval --collection DIR --model {result.out}")


@train_app.command()
def retromae(
    corpus: Annotated[Path, typer.Option(help="JSONL/Parquet corpus, BEIR folder or save_to_disk dataset.")],
    out: Out,
    model: StartModel = None,
    steps: Steps = None,
    workers: Workers = None,
    use_gpu: UseGpu = None,
    batch_size: BatchSize = None,
    grad_accum: GradAccum = None,
    lr: Lr = None,
    warmup_ratio: Warmup = None,
    scheduler: Scheduler = None,
    precision: Precision = None,
    seed: Seed = None,
    max_length: Annotated[Optional[int], typer.Option(help="Tokens per block. (default 128)")] = None,
    encoder_mask_ratio: Annotated[
        Optional[float], typer.Option(help="Encoder MLM ratio. (default 0.3)")
    ] = None,
    decoder_mask_ratio: Annotated[
        Optional[float], typer.Option(help="Decoder mask ratio. (default 0.5)")
    ] = None,
    masking: Annotated[Optional[str], typer.Option(help="auto, whole_word or token. (default auto)")] = None,
    dupmae: Annotated[
        Optional[bool], typer.Option("--dupmae/--no-dupmae", help="Add DupMAE's bag-of-words loss.")
    ] = None,
    bow_weight: Annotated[
        Optional[float], typer.Option(help="Weight of the bag-of-words loss. (default 0.1)")
    ] = None,
    text_field: Annotated[Optional[str], typer.Option(help="Field holding the text. (default text)")] = None,
    title_field: Annotated[Optional[str], typer.Option(help="Field holding the title ('' for none).")] = None,
    max_blocks: Annotated[Optional[int], typer.Option(help="Train on at most this many blocks.")] = None,
    checkpoint_every: CheckpointEvery = None,
    log_every: LogEvery = None,
    storage: Storage = None,
    name: Name = None,
    threads: opt.Threads = None,
    ray_address: RayAddress = None,
    config: ConfigFile = None,
) -> None:
    """RetroMAE (or --dupmae) pretraining; writes an encoder folder with CLS pooling and its decoder.

    Re-running the same command resumes from the last checkpoint; --model pointing at an earlier
    export continues pretraining with its decoder.
    """
    from retrosearch.trainers.retromae import RetroMAEConfig, RetroMAEMethod

    try:
        sections = _read_config(config)
        method_fields = {
            **sections.get("method", {}),
            **_given(
                model=model,
                corpus=str(corpus),
                max_length=max_length,
                encoder_mask_ratio=encoder_mask_ratio,
                decoder_mask_ratio=decoder_mask_ratio,
                masking=masking,
                dupmae=dupmae,
                bow_weight=bow_weight,
                text_field=text_field,
                max_blocks=max_blocks,
            ),
        }
        if title_field is not None:
            method_fields["title_field"] = title_field or None
        fields = train_fields(sections.get("train", {}), locals())
        method = RetroMAEMethod(RetroMAEConfig.model_validate(method_fields))
        train = TrainConfig.model_validate(fields)
    except (ValueError, OSError) as exc:
        raise opt.fail(str(exc)) from None
    run_training(method, train)


def register(app: typer.Typer) -> None:
    """Add ``retrosearch train ...`` to the ``retrosearch`` app."""
    app.add_typer(train_app, name="train")
    register_finetune(train_app, app)
    register_llara(train_app)


def register_finetune(train_app: typer.Typer, app: typer.Typer) -> None:
    """``retrosearch train finetune`` and ``retrosearch mine-negatives`` (imported here: they use this module's options)."""
    from retrosearch.trainers.finetune.cli import register as register_commands

    register_commands(train_app, app)


def register_llara(train_app: typer.Typer) -> None:
    """``retrosearch train llara`` (imported here: it uses this module's options)."""
    from retrosearch.trainers.llara.cli import register as register_command

    register_command(train_app)
