"""The encoder's forward pass in ONNX Runtime, called exactly like :class:`EncoderModel`.

``model(input_ids=..., attention_mask=...)`` takes the runtime's padded batch and returns the
pooled (and, as the spec says, normalised) vectors, so the runtime's ``Encoder`` tokenizes,
batches, pads and reports the same way whichever runtime computes them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from transformers import AutoConfig

from retrosearch.core.config import EncoderSettings, EncoderSpec
from retrosearch.core.encoder.onnx_export import INPUT_NAMES, OUTPUT_NAME, exported_model

log = logging.getLogger(__name__)

_CPU, _CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


class OnnxEncoderModel:
    """An ONNX Runtime session over a checkpoint's exported encoder."""

    runtime = "onnx"

    def __init__(
        self, session: Any, spec: EncoderSpec, config: Any, device: torch.device, quantize: str
    ) -> None:
        self.session = session
        self.spec = spec
        self.config = config
        self.device = device
        self.quantize = quantize

    @classmethod
    def load(
        cls, path: Path, spec: EncoderSpec, settings: EncoderSettings, model_fingerprint: str
    ) -> "OnnxEncoderModel":
        """Open the cached export of the checkpoint at ``path`` (exporting it on first use)."""
        if settings.dtype not in ("auto", "float32"):
            raise ValueError(
                f"--runtime onnx runs float32 (or --quantize int8), not --dtype {settings.dtype}; "
                "use --runtime torch for half precision"
            )
        providers, device = onnx_providers(settings.device, ort.get_available_providers())
        model_file = exported_model(path, spec, model_fingerprint, settings.quantize)
        options = session_options(settings.threads)
        session = ort.InferenceSession(str(model_file), sess_options=options, providers=providers)
        return cls(session, spec, AutoConfig.from_pretrained(str(path)), device, settings.quantize)

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.config.hidden_size)

    def eval(self) -> "OnnxEncoderModel":
        """A no-op, as for the torch module: the exported graph is already in inference mode."""
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Vectors ``[batch, dim]`` (float32, on the CPU) of one padded batch."""
        feed = dict(zip(INPUT_NAMES, (_as_int64(input_ids), _as_int64(attention_mask)), strict=True))
        (vectors,) = self.session.run([OUTPUT_NAME], feed)
        return torch.from_numpy(vectors)


def session_options(threads: int | None) -> Any:
    """Session options: every graph optimisation (fusions, constant folding) and the thread limit."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # An encoder is one chain of layers: operators run in sequence, inter-op threads would idle.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    return options


def onnx_providers(requested: str, available: list[str]) -> tuple[list[Any], torch.device]:
    """ONNX Runtime's execution providers for a ``--device`` and the device the vectors come from.

    ``auto`` takes CUDA when this onnxruntime build has it (``onnxruntime-gpu``) and a GPU is
    present, else the CPU. An explicit device the build cannot run on is refused.
    """
    if requested == "auto":
        gpu = _CUDA in available and torch.cuda.is_available()
        if torch.cuda.is_available() and not gpu:
            log.warning("onnxruntime has no CUDA provider here: the ONNX encoder runs on the CPU")
        requested = "cuda" if gpu else "cpu"
    device = torch.device(requested)
    if device.type == "cpu":
        return [_CPU], device
    if device.type == "cuda" and _CUDA in available:
        return [(_CUDA, {"device_id": device.index or 0}), _CPU], device
    raise ValueError(
        f"--runtime onnx cannot run on device {requested!r}: this onnxruntime offers "
        f"{', '.join(available)}; use --device cpu or --runtime torch"
    )


def _as_int64(tensor: torch.Tensor | np.ndarray) -> np.ndarray:
    array = tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    return array.astype(np.int64, copy=False)
