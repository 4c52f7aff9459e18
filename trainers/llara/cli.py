"""``retrosearch train llara``: LLaRA adaptation of a decoder LLM into an embedder."""

from __future__ import annotations

import typer

from retrosearch.trainers import launch
from retrosearch.trainers.harness.config import TrainConfig
from retrosearch.trainers.llara.config import LLaRAConfig
from retrosearch.trainers.options import FieldOption, comma_list, empty_is_none, with_train_config

LLARA_OPTIONS = (
    FieldOption("model", ("--model", "-m")),
    FieldOption("corpus", help="JSONL/Parquet corpus, BEIR folder or save_to_disk dataset", required=True),
    FieldOption("max_length"),
    FieldOption("pairs"),
    FieldOption("prompt", help="paper (one </s> per prompt) or reference (8 summary tokens)"),
    FieldOption("self_weight"),
    FieldOption("next_weight"),
    FieldOption("lm_weight"),
    FieldOption("lora", ("--lora/--no-lora",), "Train LoRA adapters instead of every weight"),
    FieldOption("lora_r", help="LoRA rank"),
    FieldOption("lora_alpha", help="LoRA alpha"),
    FieldOption("lora_dropout", help="LoRA dropout"),
    FieldOption("lora_targets", help="Comma-separated module names [default: every linear layer but the LM head]",
                type=str, parse=comma_list),
    FieldOption("lora_export", help="merge (weights folded in) or adapter"),
    FieldOption("gradient_checkpointing", ("--gradient-checkpointing/--no-gradient-checkpointing",),
                "Recompute activations in backward (less memory)"),
    FieldOption("text_field", help="Field holding the text"),
    FieldOption("title_field", help="Field holding the title ('' for none)", parse=empty_is_none),
    FieldOption("max_pairs"),
)


@with_train_config(LLaRAConfig, LLARA_OPTIONS)
def llara(train: TrainConfig, method: LLaRAConfig) -> None:
    """LLaRA (EBAE + EBAR) post-training; writes an encoder folder with last-token pooling and the prompts.

    Passages are embedded under the EBAE prompt, queries under the EBAR prompt. Re-running the same
    command resumes from the last checkpoint.
    """
    # lazy: keeps torch, transformers out of CLI start-up
    from retrosearch.trainers.llara.method import LLaRAMethod

    launch.run_training(LLaRAMethod(method), train)


def register(train_app: typer.Typer) -> None:
    """Add ``retrosearch train llara``."""
    train_app.command()(llara)
