"""Writing a pretrained RetroMAE model: an encoder folder every part of RetroSearch loads, plus the decoder.

``OUT/`` is a Hugging Face masked-LM folder (the MLM head kept, so pretraining can go on) with
the tokenizer, ``retrosearch.json`` (CLS pooling, method, provenance) and the
sentence-transformers files. ``OUT/decoder/`` holds the decoder layer, so
``retrosearch train retromae --model OUT`` continues with it instead of a fresh one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from retrosearch.core.config import EncoderSpec
from retrosearch.core.encoder import write_spec
from retrosearch.trainers.retromae.decoder import DecoderConfig, DecoderLayer

DECODER_DIR = "decoder"
DECODER_FORMAT = "retrosearch-retromae-decoder/1"
_CONFIG, _WEIGHTS = "config.json", "model.safetensors"


def save_decoder(decoder: DecoderLayer, folder: Path) -> None:
    """Write the decoder layer's shape and weights into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _CONFIG).write_text(
        json.dumps({"format": DECODER_FORMAT, **decoder.config.model_dump()}, indent=2) + "\n"
    )
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in decoder.state_dict().items()}, str(folder / _WEIGHTS)
    )


def load_decoder(folder: Path) -> DecoderLayer | None:
    """The decoder saved in ``folder``, or None when there is none."""
    if not (folder / _CONFIG).is_file():
        return None
    fields = json.loads((folder / _CONFIG).read_text())
    if fields.pop("format", None) != DECODER_FORMAT:
        raise ValueError(f"{folder / _CONFIG} is not a RetroMAE decoder of format {DECODER_FORMAT}")
    decoder = DecoderLayer(DecoderConfig.model_validate(fields))
    decoder.load_state_dict(load_file(str(folder / _WEIGHTS)))
    return decoder


def export_encoder(
    lm, tokenizer, out: Path, max_length: int, method: str, provenance: dict[str, Any]
) -> None:
    """Write the masked LM ``lm`` (head kept) with its tokenizer and a CLS-pooling spec to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    lm.save_pretrained(out)
    tokenizer.save_pretrained(out)
    spec = EncoderSpec(pooling="cls", max_length=max_length, method=method, provenance=provenance)
    write_spec(out, spec)


def export_model(
    model, tokenizer, out: Path, max_length: int, method: str, provenance: dict[str, Any]
) -> None:
    """Write ``model`` (a :class:`RetroMAEModel`) to ``out`` as described in the module docstring."""
    export_encoder(model.lm, tokenizer, out, max_length, method, provenance)
    save_decoder(model.decoder, out / DECODER_DIR)
