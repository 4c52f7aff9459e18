"""Fine-tuning fixtures: a small SciFact cut from its *train* split and a tiny LLaMA whose tokenizer works.

Ray and the tiny BERT encoder come from ``tests/trainers/conftest.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import DATA, cut_collection


def _with_word_tokenizer(source: Path, dest: Path) -> Path:
    """A copy of a tiny decoder whose tokenizer really holds the words of ``vocab.txt``.

    The shared builders pass ``vocab_file=`` to the tokenizer, which transformers 5 ignores: the
    saved tokenizer knows only the 5 special tokens and maps every word to [UNK], so every text
    would get the same embedding and contrastive training would have nothing to learn from.
    """
    from transformers import BertTokenizer

    shutil.copytree(source, dest)
    words = (source / "vocab.txt").read_text().split()
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(dict.fromkeys(words))}, do_lower_case=True)
    tokenizer.bos_token, tokenizer.eos_token = "[CLS]", "[SEP]"
    tokenizer.save_pretrained(dest)
    return dest


@pytest.fixture(scope="session")
def word_llama(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny LLaMA with a working word-level tokenizer (BOS [CLS], EOS [SEP])."""
    return _with_word_tokenizer(tiny_llama, tmp_path_factory.mktemp("word-llama") / "model")


@pytest.fixture(scope="session")
def scifact_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 SciFact training queries, their relevant abstracts and 40 distractors (train qrels only)."""
    source = DATA / "scifact"
    if not source.exists():
        pytest.skip(f"shared data not found at {source}")
    return cut_collection(source, tmp_path_factory.mktemp("scifact-train"), num_queries=12, distractors=40, split="train")
