"""MLM as a harness method: RetroMAE's corpus blocks in, an exported encoder (CLS pooling) out."""

from __future__ import annotations

from pathlib import Path

from retrosearch.trainers.harness.method import RunInfo
from retrosearch.trainers.mlm.config import MLMConfig
from retrosearch.trainers.mlm.data import MLMCollator
from retrosearch.trainers.mlm.model import MLMModel
from retrosearch.trainers.retromae.export import export_encoder
from retrosearch.trainers.retromae.method import MaskedPretrainMethod


class MLMMethod(MaskedPretrainMethod):
    """BERT's masked-language-model pretraining of a BERT- or RoBERTa-family encoder."""

    name = "mlm"
    config: MLMConfig

    def build_model(self) -> MLMModel:
        """The masked LM of the starting checkpoint."""
        return MLMModel.from_pretrained(self.model_path)

    def build_collator(self) -> MLMCollator:
        """Masks per example; see :class:`MLMCollator`."""
        return MLMCollator(self.tokenizer, self.config)

    def export(self, model: MLMModel, out: Path, info: RunInfo) -> None:
        """The encoder folder with its MLM head and CLS pooling recorded (as RetroMAE's exports do, so
        the methods are fine-tuned alike)."""
        provenance = self.provenance(info, mask_ratio=self.config.mask_ratio)
        export_encoder(model.lm, self.tokenizer, out, self.export_max_length(model.lm), "mlm", provenance)
