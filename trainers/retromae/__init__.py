"""RetroMAE (EMNLP 2022) and DupMAE (RetroMAE v2) pretraining on the shared harness."""

from retrosearch.core.lazy import lazy_exports

# Resolved on first use: `retrosearch --help` reads the config model without importing torch.
_EXPORTS = {
    "RetroMAEConfig": "config",
    "RetroMAECollator": "data",
    "DecoderConfig": "decoder",
    "DecoderLayer": "decoder",
    "export_model": "export",
    "load_decoder": "export",
    "save_decoder": "export",
    "VocabTables": "mask",
    "decoder_visibility": "mask",
    "sample_word_masks": "mask",
    "word_index": "mask",
    "RetroMAEMethod": "method",
    "RetroMAEModel": "model",
    "load_masked_lm": "model",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
