"""Exporting a checkpoint's encoder (backbone, pooling, normalisation) to ONNX, once per checkpoint.

The graph is :class:`~retrosearch.core.encoder.model.EncoderModel` itself, traced by
``torch.onnx.export`` (the ``torch.export``-based exporter) with a dynamic batch and sequence
axis, so ONNX Runtime computes exactly what the torch path computes: the left-padding position
ids, the pooling and the normalisation are inside the graph.

Exports are cached under ``$RETROSEARCH_CACHE/onnx/<fingerprint>-v<format>-<precision>/``
(the checkpoint fingerprint covers the weights and every spec field that changes the vectors).
A folder appears by an atomic rename of a finished temporary folder, and a file lock makes
concurrent first uses (Ray workers) export once, so nobody ever loads a half-written model.
The int8 model is quantized from the fp32 export and cached in its own folder (see
:func:`quantize_int8` for the two ways, chosen by the kind of model).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from retrosearch.core.config import EncoderSpec, cache_dir
from retrosearch.core.errors import UserError

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "embeddings"
# The backbone-only graph's output (see export_token_states): one state per token, before pooling.
TOKEN_OUTPUT_NAME = "token_embeddings"
# Bump when the exported graph changes (exporter options, wrapper), so old caches are not reused.
EXPORT_FORMAT = 1
# The sample batch the exporter traces: two rows (a size-1 axis would be specialised away), one padded.
_SAMPLE_ROWS, _SAMPLE_LENGTH = 2, 16
# Protobuf caps one file at 2 GiB: quantizing an fp32 export larger than this keeps the int8 weights
# in a file beside the graph (the quantizer's intermediate copies are fp32-sized).
_EXTERNAL_DATA_BYTES = 1 << 30


class OnnxExportError(UserError, RuntimeError):
    """A checkpoint could not be exported to (or quantized as) ONNX; the message names the model."""


def export_dir(model_fingerprint: str, quantize: str = "none") -> Path:
    """The cache folder of a checkpoint's ONNX model in one precision (``none`` = fp32, ``int8``)."""
    precision = "fp32" if quantize == "none" else quantize
    return cache_dir() / "onnx" / f"{model_fingerprint[:32]}-v{EXPORT_FORMAT}-{precision}"


def exported_model(path: Path, spec: EncoderSpec, model_fingerprint: str, quantize: str = "none") -> Path:
    """The cached ``model.onnx`` of the checkpoint at ``path``, exported (and quantized) on first use."""
    fp32 = publish_folder(
        export_dir(model_fingerprint), lambda staging: export_onnx(path, spec, staging / MODEL_FILE)
    )
    if quantize == "none":
        return fp32 / MODEL_FILE
    if quantize != "int8":
        raise ValueError(f"quantize {quantize!r} is not one of none, int8")
    int8 = publish_folder(
        export_dir(model_fingerprint, quantize),
        lambda staging: quantize_int8(fp32 / MODEL_FILE, staging / MODEL_FILE, spec, name=str(path)),
    )
    return int8 / MODEL_FILE


def export_onnx(path: Path, spec: EncoderSpec, out: Path) -> None:
    """Write the fp32 encoder of the checkpoint at ``path`` to ``out`` (weights beside it as ``.data``)."""
    # lazy: keeps torch, transformers out of importing this module
    import torch

    from retrosearch.core.encoder.model import EncoderModel

    model = EncoderModel.from_pretrained(path, spec, dtype=torch.float32).eval()
    input_ids, attention_mask = _sample_inputs(model, spec)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    _export(model, model.backbone, path, inputs, [OUTPUT_NAME], out)


def export_token_states(path: Path, spec: EncoderSpec, out: Path, token_type_ids: bool = False,
                        hint: str = "use --runtime torch for this model", opset: int | None = None) -> None:
    """Write the checkpoint's backbone alone to ``out``; its first output is the token embeddings.

    For runtimes that pool and normalise themselves (OpenSearch ml-commons' local models); with
    ``token_type_ids`` the graph takes that third input (ml-commons feeds it to BERT models);
    ``opset`` pins the ONNX opset for runtimes older than the exporter's default.
    """
    # lazy: keeps torch, transformers out of importing this module
    import torch

    from retrosearch.core.encoder.model import EncoderModel, TokenStates

    model = EncoderModel.from_pretrained(path, spec, dtype=torch.float32).eval()
    input_ids, attention_mask = _sample_inputs(model, spec)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids:
        inputs["token_type_ids"] = torch.zeros_like(input_ids)
    _export(TokenStates(model).eval(), model.backbone, path, inputs, [TOKEN_OUTPUT_NAME], out, hint, opset)


def _export(module, backbone, path: Path, inputs: dict, output_names: list[str], out: Path,
            hint: str = "use --runtime torch for this model", opset: int | None = None) -> None:
    """``torch.onnx.export`` of ``module(*inputs.values())``, every input with a dynamic batch and length."""
    import torch  # lazy: keeps torch out of importing this module

    if getattr(backbone.config, "use_cache", None):
        backbone.config.use_cache = False  # a KV cache output has no use in an encoder graph
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    axes = {0: batch, 1: sequence}
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # Known and harmless with torch 2.13: one name per axis for both inputs is reported as
            # "not used", and torch's own pytree raises a deprecation warning while exporting.
            warnings.filterwarnings("ignore", message=".*will not be used, since it shares the same shape")
            warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
            torch.onnx.export(
                module,
                tuple(inputs.values()),
                str(out),
                input_names=list(inputs),
                output_names=output_names,
                dynamic_shapes=tuple(axes for _ in inputs),
                dynamo=True,
                external_data=True,
                verbose=False,
                **({"opset_version": opset} if opset else {}),
            )
    except Exception as exc:  # the exporter raises many types; each means "this model does not export"
        raise OnnxExportError(
            f"model {path} ({type(backbone).__name__}) could not be exported to ONNX: "
            f"{type(exc).__name__}: {_first_line(exc)}; {hint}"
        ) from exc


def quantize_int8(source: Path, out: Path, spec: EncoderSpec, name: str) -> None:
    """Write an int8 quantization of the ONNX model ``source`` to ``out``.

    Encoders with ``cls`` / ``mean`` pooling (BERT-like) get dynamic quantization: int8 weights
    per output channel and int8 activations, so matrix products run as int8 GEMMs. Per tensor,
    all-MiniLM-L6-v2 on SciFact passages fell to a cosine of 0.90 against fp32; per channel its
    worst is 0.99. Last-token pooling (decoder LMs: LLaRA, fine-tuned LLMs) gets weight-only int8
    (blocks of 128, activations stay fp32): decoder hidden states carry outlier features that
    per-tensor activation quantization crushes (SmolLM2-135M's last-token vectors fell to a
    cosine of 0.41; weight-only keeps 0.997).
    """
    try:
        if spec.pooling == "last":
            _quantize_weights_only(source, out)
        else:
            _quantize_dynamic(source, out)
    except Exception as exc:  # as in export_onnx: any failure means "this model does not quantize"
        raise OnnxExportError(
            f"model {name} could not be quantized to int8: {type(exc).__name__}: {_first_line(exc)}; "
            "use --quantize none"
        ) from exc


def _quantize_dynamic(source: Path, out: Path) -> None:
    # lazy: keeps onnxruntime out of importing this module
    from onnxruntime.quantization import QuantType, quantize_dynamic

    large = sum(p.stat().st_size for p in source.parent.iterdir()) > _EXTERNAL_DATA_BYTES
    quantize_dynamic(
        source, out, weight_type=QuantType.QInt8, per_channel=True, use_external_data_format=large
    )


def _quantize_weights_only(source: Path, out: Path) -> None:
    # lazy: keeps onnxruntime, onnx out of importing this module
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    # The quantizer logs every node it skips at INFO level.
    logging.getLogger(nbits.__name__).setLevel(logging.WARNING)
    shape = dict(bits=8, block_size=128, is_symmetric=True)
    config = nbits.DefaultWeightOnlyQuantConfig(**shape)
    quantizer = nbits.MatMulNBitsQuantizer(onnx.load(str(source)), algo_config=config, **shape)
    quantizer.process()
    quantizer.model.save_model_to_file(str(out), use_external_data_format=True)


def _sample_inputs(model, spec: EncoderSpec):
    """A traced batch inside the vocabulary, its second row padded on the spec's side."""
    import torch  # lazy: keeps torch out of importing this module

    vocab = int(getattr(model.backbone.config, "vocab_size", 0) or 100)
    input_ids = torch.arange(_SAMPLE_ROWS * _SAMPLE_LENGTH).reshape(_SAMPLE_ROWS, _SAMPLE_LENGTH) % vocab
    attention_mask = torch.ones_like(input_ids)
    pad = _SAMPLE_LENGTH // 4
    if spec.padding_side == "left":
        attention_mask[1, :pad] = 0
    else:
        attention_mask[1, -pad:] = 0
    return input_ids, attention_mask


def publish_folder(target: Path, build: Callable[[Path], None]) -> Path:
    """``target``, built by ``build(staging)`` into a temporary folder renamed into place once.

    The lock keeps concurrent processes from building the same folder twice; the rename keeps a
    reader from ever seeing a partial one (the lock file is only advisory, the rename is atomic).
    """
    if (target / MODEL_FILE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / MODEL_FILE).exists():
            return target
        log.info("exporting the encoder to ONNX in %s (once per checkpoint)", target)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            build(staging)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
