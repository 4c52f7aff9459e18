"""Writing a LLaRA model as a folder the encoder runtime (and sentence-transformers) loads.

``OUT/`` holds the causal-LM weights (``AutoModel`` takes the backbone out of them, so training
can also continue from the folder), the tokenizer, and ``retrosearch.json``: last-token pooling,
left padding, the EBAE (SELF) prompt for passages and the EBAR (NEXT) prompt for queries, as the
paper uses them. LoRA adapters are merged into the weights, or saved as an adapter folder
(``adapter=True``) beside a plain copy of the config, for large bases one does not want twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retrosearch.core.config import EncoderSpec
from retrosearch.core.encoder import write_spec
from retrosearch.trainers.llara.prompt import PromptSet

METHOD = "llara"


def encoder_spec(prompts: PromptSet, max_length: int, provenance: dict[str, Any]) -> EncoderSpec:
    """The spec of a LLaRA encoder: the summary token's state of the SELF / NEXT prompt."""
    return EncoderSpec(
        pooling="last",
        padding_side="left",
        passage_template=prompts.passage_template(),
        query_template=prompts.query_template(),
        max_length=max_length,
        method=METHOD,
        provenance=provenance,
    )


def save_tokenizer(tokenizer, out: Path) -> None:
    """Save ``tokenizer`` set up for prompt-final pooling.

    The runtime cuts over-long texts itself and keeps the prompt (``TextTokenizer``). Tools that
    truncate the templated string with the tokenizer (sentence-transformers) cut from the left
    here, so that they too keep the prompt and the token whose state is the embedding.
    """
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    tokenizer.save_pretrained(out)
    # transformers 5 does not write the sides it was given, but reads them back from the file.
    config_file = out / "tokenizer_config.json"
    fields = json.loads(config_file.read_text())
    fields.update(padding_side="left", truncation_side="left")
    config_file.write_text(json.dumps(fields, indent=2) + "\n")


def export_llara(
    lm,
    tokenizer,
    out: Path,
    prompts: PromptSet,
    max_length: int,
    provenance: dict[str, Any],
    adapter: bool = False,
) -> None:
    """Write ``lm`` (a causal LM, possibly a ``peft`` model) to ``out`` as the module docstring says."""
    out.mkdir(parents=True, exist_ok=True)
    is_peft = hasattr(lm, "peft_config")
    if is_peft and adapter:
        lm.save_pretrained(out)  # adapter_config.json + adapter weights; the base is named in it
        lm.get_base_model().config.save_pretrained(out)
    else:
        if is_peft:
            lm = lm.merge_and_unload()
        lm.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    if prompts.summary > 1:
        provenance = {
            **provenance,
            "note": f"trained on the mean of {prompts.summary} summary tokens; the runtime pools the last one",
        }
    write_spec(out, encoder_spec(prompts, max_length, provenance))
