"""Randomly initialised backbones: the same name gives the same weights, another seed other weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from retrosearch.core.encoder import resolve_model_path
from retrosearch.core.encoder.random_init import RandomModelError, parse, with_seed


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RETROSEARCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_same_seed_same_weights_other_seed_other_weights(cache, tmp_path, monkeypatch):
    first = resolve_model_path("random:bert-tiny@1")
    again_cache = tmp_path / "another-cache"
    monkeypatch.setenv("RETROSEARCH_CACHE", str(again_cache))
    rebuilt = resolve_model_path("random:bert-tiny@1")  # drawn anew in another cache
    other = resolve_model_path("random:bert-tiny@2")
    assert rebuilt != first and rebuilt.is_relative_to(again_cache)
    a, b, c = _weights(first), _weights(rebuilt), _weights(other)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    embeddings = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(a[embeddings], c[embeddings])
    assert not torch.equal(a["bert.encoder.layer.0.attention.self.query.weight"],
                           c["bert.encoder.layer.0.attention.self.query.weight"])


def test_the_backbone_is_a_bert_with_minilms_vocabulary_and_cls_pooling(cache):
    from transformers import AutoTokenizer

    folder = resolve_model_path("random:bert-small")
    config = json.loads((folder / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
            config["intermediate_size"]) == (4, 256, 4, 1024)
    minilm = AutoTokenizer.from_pretrained(str(resolve_model_path("minilm")))
    assert AutoTokenizer.from_pretrained(str(folder)).get_vocab() == minilm.get_vocab()
    assert config["vocab_size"] == len(minilm)
    spec = json.loads((folder / "retrosearch.json").read_text())
    assert spec["pooling"] == "cls" and spec["provenance"]["seed"] == 0 and spec["max_length"] == 128
    assert folder.name.startswith("bert-small-seed-0-")  # no seed given: seed 0


def test_the_weights_load_as_an_encoder_and_differ_from_minilm(cache):
    from retrosearch.core.config import EncoderSettings
    from retrosearch.core.encoder import Encoder

    encoder = Encoder.load(EncoderSettings(model="random:bert-tiny@3", device="cpu"))
    vectors = encoder.encode_queries(["what is retrieval", "what is retrieval", "another text"])
    assert torch.allclose(torch.as_tensor(vectors[0]), torch.as_tensor(vectors[1]))
    assert not torch.allclose(torch.as_tensor(vectors[0]), torch.as_tensor(vectors[2]))


def test_names_parse_and_take_a_seed():
    assert parse("random:bert-small@7") == ("bert-small", 7)
    assert parse("random:bert-small") == ("bert-small", None)
    assert with_seed("random:bert-small", 3) == "random:bert-small@3"
    assert with_seed("random:bert-small@7", 3) == "random:bert-small@7"  # a seed given stays
    with pytest.raises(RandomModelError, match="random:<architecture>"):
        parse("random:gpt-huge")
    with pytest.raises(RandomModelError, match="bert-small"):
        resolve_model_path("random:bert-small@x")
