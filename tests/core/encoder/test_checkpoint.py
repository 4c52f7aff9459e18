"""Resolving models, reading and writing the spec, formatting, fingerprints."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from retrosearch.core.config import EncoderSettings, EncoderSpec
from retrosearch.core.encoder import Encoder, ModelNotFoundError, read_spec, resolve_model_path, write_spec
from retrosearch.core.encoder.checkpoint import fingerprint
from retrosearch.core.encoder.formatting import Formatter


def test_packaged_short_name_resolves_offline():
    path = resolve_model_path("minilm")
    assert (path / "config.json").exists() and (path / "modules.json").exists()
    spec = read_spec(path)
    assert spec.pooling == "mean" and spec.normalize and spec.max_length == 256 and spec.similarity == "cosine"


def test_hub_names_and_non_models_are_refused_at_once(tmp_path):
    with pytest.raises(ModelNotFoundError, match="never downloaded"):
        resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(ModelNotFoundError, match="holds no config.json"):
        resolve_model_path(tmp_path)


def test_plain_hf_folders_get_pooling_by_architecture(tiny_bert, tiny_llama):
    assert read_spec(tiny_bert).pooling == "cls"
    decoder = read_spec(tiny_llama)
    assert decoder.pooling == "last" and decoder.padding_side == "left" and "{eos}" in decoder.passage_template
    assert read_spec(tiny_bert, EncoderSettings(pooling="mean", max_length=32)).max_length == 32


def test_written_spec_round_trips_and_loads_in_sentence_transformers(tiny_bert, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_bert, folder)
    spec = EncoderSpec(pooling="cls", query_template="query: {text}", passage_template="passage: {text}", max_length=64)
    write_spec(folder, spec)
    assert read_spec(folder) == spec
    from sentence_transformers import SentenceTransformer

    ours = Encoder.load(EncoderSettings(model=str(folder), device="cpu"))
    theirs = SentenceTransformer(str(folder), device="cpu")
    texts = ["query: the protein", "query: flow over a wing surface"]
    np.testing.assert_allclose(ours.encode_formatted(texts), theirs.encode(texts), atol=1e-5)
    assert ours.encode_queries(["the protein"]) == pytest.approx(ours.encode_formatted(["query: the protein"]))


def test_templates_need_a_text_slot_and_fill_special_tokens():
    with pytest.raises(ValueError, match="no '{text}' placeholder"):
        EncoderSpec(query_template="query:")
    spec = EncoderSpec(query_template='"{text}" The next sentence:{eos}', passage_template="{bos}{text}")
    fmt = Formatter(spec, bos="<s>", eos="</s>")
    assert fmt.query("a {b} c") == '"a {b} c" The next sentence:</s>'
    assert fmt.passage("body", title="Head") == "<s>Head body"
    assert fmt.passage("body") == "<s>body"


def test_fingerprint_changes_with_weights_and_vector_fields(tiny_bert, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_bert, folder)
    spec = read_spec(folder)
    base = fingerprint(folder, spec)
    assert fingerprint(folder, spec.model_copy(update={"provenance": {"note": "x"}})) == base
    assert fingerprint(folder, spec.model_copy(update={"pooling": "mean"})) != base
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert fingerprint(folder, spec) != base


def test_encoder_stats_and_order_are_kept(tiny_bert):
    encoder = Encoder.load(EncoderSettings(model=str(tiny_bert), batch_size=2, device="cpu"))
    texts = ["flow", "the cell protein expression", "a", "study of cancer"]
    together = encoder.encode_formatted(texts)
    alone = np.stack([encoder.encode_formatted([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    stats = encoder.stats.as_dict()
    assert stats["texts"] == 8 and 0.0 <= stats["padding_ratio"] < 0.5
    assert json.dumps(stats)


@pytest.mark.slow
def test_smollm2_is_converted_once_into_a_plain_hf_folder():
    # The first call dequantizes the packaged GGUF (minutes on 2 cores); later calls find the folder.
    path = resolve_model_path("smollm2")
    assert path.name == "smollm2" and (path / "model.safetensors").exists()
    assert not list(path.parent.glob(".smollm2-*")), "no staging folder is left behind"
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert resolve_model_path("smollm2") == path
    spec = read_spec(path)
    assert spec.pooling == "last" and spec.padding_side == "left"
    encoder = Encoder.load(EncoderSettings(model="smollm2", device="cpu", show_progress=False))
    vectors = encoder.encode_queries(["boundary layer flow", "protein expression in cells"])
    assert vectors.shape == (2, 576) and not np.allclose(vectors[0], vectors[1])
