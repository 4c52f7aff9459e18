"""BERT's masked-language-model pretraining on the shared harness: the baseline of RetroMAE."""

from retrosearch.core.lazy import lazy_exports

# Resolved on first use: `retrosearch --help` reads the config model without importing torch.
_EXPORTS = {
    "MLMConfig": "config",
    "MLMCollator": "data",
    "MLMMethod": "method",
    "MLMModel": "model",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
