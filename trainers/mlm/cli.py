"""``retrosearch train mlm``: BERT's masked-language-model pretraining on the shared harness."""

from __future__ import annotations

import typer

from retrosearch.trainers import launch
from retrosearch.trainers.harness.config import TrainConfig
from retrosearch.trainers.mlm.config import MLMConfig
from retrosearch.trainers.options import FieldOption, with_train_config
from retrosearch.trainers.retromae.cli import CORPUS_OPTIONS

MLM_OPTIONS = (
    FieldOption("model", ("--model", "-m"), "Starting checkpoint folder, packaged name or "
                "random:<architecture>"),
    *CORPUS_OPTIONS,
    FieldOption("mask_ratio", help="Share of the tokens masked and predicted"),
)


@with_train_config(MLMConfig, MLM_OPTIONS)
def mlm(train: TrainConfig, method: MLMConfig) -> None:
    """BERT's MLM pretraining (the baseline of RetroMAE); writes an encoder folder with CLS pooling.

    Re-running the same command resumes from the last checkpoint.
    """
    # lazy: keeps torch, transformers out of CLI start-up
    from retrosearch.trainers.mlm import MLMMethod

    launch.run_training(MLMMethod(method), train)


def register(train_app: typer.Typer) -> None:
    """Add ``retrosearch train mlm``."""
    train_app.command()(mlm)
