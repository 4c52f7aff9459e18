"""The encoder runtime: checkpoints, formatting, pooling and batched encoding.

Exports are resolved on first use (PEP 562), so ``from retrosearch.core.encoder import
ModelNotFoundError`` costs no torch import: commands that only name the error, and
``retrosearch --help``, start in a fraction of a second.
"""

from __future__ import annotations

from retrosearch.core.lazy import lazy_exports

_EXPORTS = {
    "ModelNotFoundError": "checkpoint",
    "read_spec": "checkpoint",
    "resolve_model_path": "checkpoint",
    "write_spec": "checkpoint",
    "EncoderModel": "model",
    "Encoder": "runtime",
    "EncodeStats": "runtime",
    "describe": "runtime",
    "position_limit": "runtime",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
