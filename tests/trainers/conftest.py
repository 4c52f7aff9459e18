"""Trainer fixtures: real tokenizers (all-MiniLM's WordPiece, a byte-level BPE trained here), tiny
BERT / RoBERTa masked LMs built from configs, a small real corpus, and one local Ray per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import scifact_head
from tests.trainers.retromae.helpers import scifact_texts

# Tiny encoders: dropout off so that splitting a batch over workers changes nothing but float rounding.
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="session")
def bert_tokenizer_dir() -> Path:
    """all-MiniLM-L6-v2's folder: a real uncased WordPiece tokenizer."""
    from retrosearch.core.encoder import resolve_model_path

    return resolve_model_path("minilm")


def build_tiny_bert_encoder(folder: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """A 2-layer BERT *without* an MLM head (like sentence-embedding checkpoints) and a real tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, folder / name)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=30522, max_position_embeddings=128, **TINY)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_encoder(tmp_path_factory: pytest.TempPathFactory, bert_tokenizer_dir: Path) -> Path:
    return build_tiny_bert_encoder(tmp_path_factory.mktemp("tiny-bert-encoder"), bert_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer RoBERTa masked LM with a byte-level BPE vocabulary trained on SciFact text."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizer

    folder = tmp_path_factory.mktemp("tiny-roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        scifact_texts(300),
        vocab_size=800,
        min_frequency=2,
        show_progress=False,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=130,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        type_vocab_size=1,
        **TINY,
    )
    RobertaForMaskedLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 SciFact documents as a JSONL corpus."""
    return scifact_head(tmp_path_factory, 120, "corpus")


