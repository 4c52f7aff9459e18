"""LLaRA fixtures: tiny LLaMA (rotary positions, a BOS prefix) and GPT-2 (learned positions, no prefix)
causal LMs with a byte-level BPE vocabulary trained here on SciFact text.

A BPE learnt from the corpus covers the two families' tokenizer shapes (a BOS prefix or none) and
tokenizes the paper's prompt words into distinct pieces, so SELF and NEXT really differ.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainers.retromae.helpers import scifact_texts

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def build_bpe_tokenizer(folder: Path, bos_prefix: bool):
    """A 1,000-token byte-level BPE with <pad>/<s>/</s>; ``bos_prefix`` puts <s> before every text."""
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        scifact_texts(300), vocab_size=1000, min_frequency=2, show_progress=False, special_tokens=SPECIALS
    )
    if bos_prefix:
        bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_tiny_causal_lm(folder: Path, family: str, seed: int = 0) -> Path:
    """A 2-layer, 32-wide causal LM of ``family`` ("llama" or "gpt2") without dropout."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_bpe_tokenizer(folder, bos_prefix=family == "llama")
    ids = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    if family == "llama":
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=512,
            **ids,
        )
        LlamaForCausalLM(config).save_pretrained(folder)
    else:
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=512,
            n_embd=32,
            n_layer=2,
            n_head=2,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        )
        GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def llama_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("llara-llama"), "llama")


@pytest.fixture(scope="session")
def gpt2_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("llara-gpt2"), "gpt2")
