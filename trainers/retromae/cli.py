"""``retrosearch train retromae``: RetroMAE / DupMAE pretraining on the shared harness."""

from __future__ import annotations

import typer

from retrosearch.trainers import launch
from retrosearch.trainers.harness.config import TrainConfig
from retrosearch.trainers.options import FieldOption, empty_is_none, with_train_config
from retrosearch.trainers.retromae.config import RetroMAEConfig

#: What every masked-LM pretraining reads (RetroMAE's and MLM's commands alike).
CORPUS_OPTIONS = (
    # Repeated for several, read in turn (as the --config file's method.corpus list is): a flag
    # given twice must not silently keep only its last value.
    FieldOption("corpus", help="JSONL/Parquet corpus, BEIR folder or save_to_disk dataset; repeat for "
                "several, read in turn", type=list[str], required=True),
    FieldOption("max_length", help="Tokens per block, specials included"),
    FieldOption("masking"),
    FieldOption("text_field", help="Field holding the text"),
    FieldOption("title_field", help="Field holding the title ('' for none)", parse=empty_is_none),
    FieldOption("max_blocks"),
)

RETROMAE_OPTIONS = (
    FieldOption("model", ("--model", "-m"), "Starting checkpoint folder, packaged name or "
                "random:<architecture>; an earlier export continues with its decoder"),
    *CORPUS_OPTIONS,
    FieldOption("encoder_mask_ratio", help="Encoder MLM ratio"),
    FieldOption("decoder_mask_ratio", help="Decoder mask ratio"),
    FieldOption("dupmae", ("--dupmae/--no-dupmae",), "Add DupMAE's bag-of-words loss"),
    FieldOption("bow_weight", help="Weight of the bag-of-words loss"),
)


@with_train_config(RetroMAEConfig, RETROMAE_OPTIONS)
def retromae(train: TrainConfig, method: RetroMAEConfig) -> None:
    """RetroMAE (or --dupmae) pretraining; writes an encoder folder with CLS pooling and its decoder.

    Re-running the same command resumes from the last checkpoint; --model pointing at an earlier
    export continues pretraining with its decoder.
    """
    # lazy: keeps torch, transformers out of CLI start-up
    from retrosearch.trainers.retromae import RetroMAEMethod

    launch.run_training(RetroMAEMethod(method), train)


def register(train_app: typer.Typer) -> None:
    """Add ``retrosearch train retromae``."""
    train_app.command()(retromae)
