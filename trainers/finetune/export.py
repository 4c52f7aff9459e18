"""Writing a fine-tuned encoder as a checkpoint folder the runtime (and sentence-transformers) loads.

LoRA adapters are merged into the base weights first, so the folder is a plain Hugging Face model
that needs no ``peft`` to load; ``retrosearch.json`` records ``method="finetune"`` and where the
weights came from.
"""

from __future__ import annotations

import datetime as dt
from importlib import metadata
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from retrosearch.core.config import EncoderSpec
from retrosearch.core.encoder.checkpoint import fingerprint, write_spec
from retrosearch.core.encoder.model import EncoderModel


def merged_backbone(backbone: nn.Module) -> nn.Module:
    """The backbone with any LoRA adapters folded into its weights (a no-op without adapters).

    Merging modifies the module in place, so this is for the end of training.
    """
    try:
        from peft import PeftModel  # lazy: optional here (ImportError handled)
    except ImportError:  # pragma: no cover - peft is a dependency, but the export must not need it
        return backbone
    if isinstance(backbone, PeftModel):
        return backbone.merge_and_unload()
    return backbone


def _versions() -> dict[str, str]:
    found = {}
    for name in ("retrosearch", "torch", "transformers", "peft", "ray"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def export_checkpoint(
    model: EncoderModel,
    tokenizer: PreTrainedTokenizerBase,
    out: str | Path,
    base_model: str,
    base_path: Path,
    base_spec: EncoderSpec,
    provenance: dict[str, Any],
    matryoshka_dimensions: list[int] | None = None,
) -> Path:
    """Save ``model`` to ``out`` with its tokenizer and a spec marked ``method="finetune"``.

    ``provenance`` (settings, data, steps, final metrics) is stored in ``retrosearch.json`` together
    with the base model's name, fingerprint and method; ``matryoshka_dimensions``, the dimensions a
    Matryoshka loss trained the vectors to be cut to, as the spec's field of that name.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backbone = merged_backbone(model.backbone)
    model.backbone = backbone
    backbone.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {
        "base_model": base_model,
        "base_path": str(base_path),
        "base_fingerprint": fingerprint(base_path, base_spec),
        "base_method": base_spec.method,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        **provenance,
    }
    spec = model.spec.model_copy(
        update={"method": "finetune", "provenance": record, "matryoshka_dimensions": matryoshka_dimensions}
    )
    write_spec(out, spec)
    return out
