"""The encoder runtime: checkpoints, formatting, pooling and batched encoding.

Exports are resolved on first use (PEP 562), so ``from retrosearch.plugin.encoder import
ModelNotFoundError`` costs no torch import: commands that only name the error, and
``retrosearch --help``, start in a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
