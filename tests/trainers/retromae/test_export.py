"""The export: an encoder folder the runtime loads with CLS pooling, and a decoder training picks up."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from retrosearch.core.config import EncoderSettings
from retrosearch.core.encoder import Encoder
from retrosearch.trainers.harness.method import RunInfo
from retrosearch.trainers.retromae import RetroMAEConfig, RetroMAEMethod, RetroMAEModel


def test_export_loads_in_the_runtime_and_continues_training(tmp_path, tiny_bert_encoder, small_corpus):
    method = RetroMAEMethod(RetroMAEConfig(model=str(tiny_bert_encoder), corpus=str(small_corpus)))
    torch.manual_seed(3)
    model = method.build_model()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.normal_()  # recognisable decoder weights
    out = tmp_path / "export"
    method.export(
        model, out, RunInfo(step=5, steps=5, workers=2, batch_size=8, seed=1, last_metrics={"loss": 1.5})
    )

    encoder = Encoder.load(EncoderSettings(model=str(out), show_progress=False))
    assert encoder.spec.pooling == "cls" and encoder.spec.method == "retromae"
    assert encoder.spec.provenance["steps"] == 5 and encoder.spec.provenance["workers"] == 2
    assert encoder.spec.max_length == 128  # the tiny model's positions cap it
    texts = ["dense retrieval with a sentence embedding", "protein expression in tumor cells"]
    vectors = encoder.encode_formatted(texts)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(str(out))(
            **tokenizer(texts, padding=True, return_tensors="pt")
        ).last_hidden_state
    torch.testing.assert_close(
        torch.from_numpy(vectors), F.normalize(hidden[:, 0], dim=-1), rtol=1e-4, atol=1e-5
    )

    # Continued pretraining: --model OUT restores the encoder with its MLM head and the decoder.
    again = RetroMAEMethod(RetroMAEConfig(model=str(out), corpus=str(small_corpus))).build_model()
    for (name, saved), restored in zip(model.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(restored, saved, rtol=0, atol=0, msg=name)
    fresh = RetroMAEModel.from_pretrained(tiny_bert_encoder, method.config)
    assert not torch.equal(fresh.decoder.query.weight, again.decoder.query.weight)
