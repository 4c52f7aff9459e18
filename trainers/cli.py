"""``retrosearch train <method>``: one command per trainer, all run on the shared Ray Train harness."""

from __future__ import annotations

import typer

from retrosearch.plugin import cli_options as opt
from retrosearch.trainers.harness.config import TrainConfig
from retrosearch.trainers.options import FieldOption, empty_is_none, with_train_config
from retrosearch.trainers.retromae.config import RetroMAEConfig

train_app = typer.Typer(
    help="Train encoders: RetroMAE/DupMAE pretraining, LLaRA adaptation of LLMs, contrastive fine-tuning.",
    no_args_is_help=True,
)


def run_training(method, train: TrainConfig) -> None:
    """Fit, then print where the model went; failures become one-line errors."""
    from ray.train import TrainingFailedError

    from retrosearch.trainers.harness.runner import fit, run_dir

    with opt.user_errors():
        try:
            result = fit(method, train)
        except TrainingFailedError as exc:
            raise opt.fail(
                f"training failed: {exc}\nre-run the same command to resume from the last checkpoint in "
                f"{run_dir(method, train)}"
            ) from None
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k.startswith("loss"))
    typer.echo(f"trained model written to {result.out} ({losses})")
    typer.echo(f"checkpoints and log: {result.run_dir}")
    typer.echo(f"evaluate: retrosearch eval --collection DIR --model {result.out}")


RETROMAE_OPTIONS = (
    FieldOption("model", ("--model", "-m"), "Starting checkpoint folder or packaged name; an earlier export "
                "continues with its decoder"),
    FieldOption("corpus", help="JSONL/Parquet corpus, BEIR folder or save_to_disk dataset", required=True),
    FieldOption("max_length", help="Tokens per block, specials included"),
    FieldOption("encoder_mask_ratio", help="Encoder MLM ratio"),
    FieldOption("decoder_mask_ratio", help="Decoder mask ratio"),
    FieldOption("masking"),
    FieldOption("dupmae", ("--dupmae/--no-dupmae",), "Add DupMAE's bag-of-words loss"),
    FieldOption("bow_weight", help="Weight of the bag-of-words loss"),
    FieldOption("text_field", help="Field holding the text"),
    FieldOption("title_field", help="Field holding the title ('' for none)", parse=empty_is_none),
    FieldOption("max_blocks"),
)


@train_app.command()
@with_train_config(RetroMAEConfig, RETROMAE_OPTIONS)
def retromae(train: TrainConfig, method: RetroMAEConfig) -> None:
    """RetroMAE (or --dupmae) pretraining; writes an encoder folder with CLS pooling and its decoder.

    Re-running the same command resumes from the last checkpoint; --model pointing at an earlier
    export continues pretraining with its decoder.
    """
    from retrosearch.trainers.retromae import RetroMAEMethod

    run_training(RetroMAEMethod(method), train)


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
