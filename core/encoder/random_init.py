"""Randomly initialised backbones, named ``random:<architecture>[@<seed>]`` wherever a model is named.

Pretraining objectives are compared from the same untrained weights: ``random:bert-small@3`` is a
4-layer BERT with all-MiniLM-L6-v2's uncased WordPiece tokenizer and vocabulary, its weights drawn
from seed 3 (seed 0 when none is given). :func:`retrosearch.core.encoder.checkpoint.random_model_path`
writes the folder once under the cache, so every process (a Ray worker, the evaluation after
training) loads the same weights; the same name gives the same weights wherever torch draws the
same numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from retrosearch.core.config import EncoderSpec
from retrosearch.core.errors import UserError

PREFIX = "random:"
#: Architectures by name: the fields of a Hugging Face ``BertConfig`` besides the vocabulary's.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "bert-small": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
    "bert-tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
}
TOKENIZER_MODEL = "minilm"  # the tokenizer and vocabulary every architecture here uses
# Tokens per text the spec records: what short pretraining and fine-tuning runs teach positions for
# (the positions beyond stay untrained); pretraining on longer blocks raises it in the export.
SPEC_MAX_LENGTH = 128
_NAME = re.compile(r"^random:(?P<arch>[a-z0-9-]+)(?:@(?P<seed>\d+))?$")


class RandomModelError(UserError, ValueError):
    """A ``random:`` name that does not parse or names no known architecture."""


def is_random(name: str) -> bool:
    """Whether ``name`` asks for a randomly initialised backbone."""
    return str(name).startswith(PREFIX)


def parse(name: str) -> tuple[str, int | None]:
    """``random:bert-small@3`` -> ("bert-small", 3); the seed is None when the name gives none."""
    match = _NAME.match(str(name))
    if match is None or match["arch"] not in ARCHITECTURES:
        raise RandomModelError(
            f"model {name!r}: expected random:<architecture>[@<seed>] with an architecture among "
            f"{', '.join(ARCHITECTURES)}"
        )
    return match["arch"], None if match["seed"] is None else int(match["seed"])


def with_seed(name: str, seed: int) -> str:
    """``name`` with ``seed`` when it gives none (``random:bert-small`` -> ``random:bert-small@seed``)."""
    arch, given = parse(name)
    return f"{PREFIX}{arch}@{seed if given is None else given}"


def folder_name(arch: str, seed: int) -> str:
    """The cache folder of ``arch`` drawn from ``seed``, with a digest of the recipe (shape, tokenizer,
    spec), so a changed recipe is built anew instead of read from an older cache."""
    recipe = json.dumps([ARCHITECTURES[arch], TOKENIZER_MODEL, SPEC_MAX_LENGTH], sort_keys=True)
    return f"{arch}-seed-{seed}-{hashlib.sha256(recipe.encode()).hexdigest()[:8]}"


def build(arch: str, seed: int, folder: Path, tokenizer_dir: Path) -> EncoderSpec:
    """Write the masked LM ``arch`` drawn from ``seed`` and the tokenizer of ``tokenizer_dir`` to
    ``folder``; returns its spec (CLS pooling, :data:`SPEC_MAX_LENGTH` tokens) for the caller to write.

    The masked-LM head comes with the encoder (tied to the word embeddings, as BERT's is), so
    MLM and RetroMAE pretraining and plain fine-tuning all start from the same encoder weights.
    """
    # lazy: keeps torch, transformers out of CLI start-up
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    fields = {"max_position_embeddings": 512, **ARCHITECTURES[arch]}
    config = BertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **fields)
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(seed)
        model = BertForMaskedLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return EncoderSpec(
        pooling="cls", max_length=min(SPEC_MAX_LENGTH, config.max_position_embeddings), method="random-init",
        provenance={"architecture": arch, "seed": seed, "tokenizer": TOKENIZER_MODEL, **fields},
    )
