"""``retrosearch train <method>``: one command per trainer, all run on the shared Ray Train harness.

Each method's package holds its own command (``retromae/cli.py``, ``mlm/cli.py``, ``llara/cli.py``,
``finetune/cli.py``); this module only gathers them under ``train``.
"""

from __future__ import annotations

import typer

from retrosearch.trainers.finetune import cli as finetune_cli
from retrosearch.trainers.llara import cli as llara_cli
from retrosearch.trainers.mlm import cli as mlm_cli
from retrosearch.trainers.retromae import cli as retromae_cli

train_app = typer.Typer(
    help="Train encoders: RetroMAE/DupMAE and MLM pretraining, LLaRA adaptation of LLMs, contrastive "
    "fine-tuning.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``retrosearch train ...`` (and ``retrosearch mine-negatives``) to the ``retrosearch`` app."""
    app.add_typer(train_app, name="train")
    retromae_cli.register(train_app)
    mlm_cli.register(train_app)
    finetune_cli.register(train_app, app)
    llara_cli.register(train_app)
