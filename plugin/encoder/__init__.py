"""The encoder runtime: checkpoints, formatting, pooling and batched encoding."""

from retrosearch.plugin.encoder.checkpoint import ModelNotFoundError, read_spec, resolve_model_path, write_spec
from retrosearch.plugin.encoder.model import EncoderModel
from retrosearch.plugin.encoder.runtime import Encoder, EncodeStats, describe, position_limit

__all__ = [
    "EncodeStats",
    "Encoder",
    "EncoderModel",
    "ModelNotFoundError",
    "describe",
    "position_limit",
    "read_spec",
    "resolve_model_path",
    "write_spec",
]
