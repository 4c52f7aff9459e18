"""A checkpoint as an ml-commons local text-embedding model: the zip and the ``model_config``.

ml-commons runs the ONNX graph, then pools and normalises the first output itself, so the graph
here is the backbone alone (:func:`~retrosearch.core.encoder.onnx_export.export_token_states`)
and the ``model_config`` carries the rest of our encoder: pooling, normalisation, embedding
dimension. The tokenizer travels as ``tokenizer.json`` with the encoder's own max length and no
padding (with a shorter truncation, long texts embed differently; with padding, mean pooling
counts pad tokens).

Query and passage templates: ml-commons 2.19 has ``query_prefix`` / ``passage_prefix``, but such an
"asymmetric" model answers only requests that name a content type, and neural-search's ``neural``
query names none (it fails: "The embedding model chosen is asymmetric"). So a checkpoint whose
templates differ becomes two models, as ``connect`` makes two of a service: one per template,
each with its prefix's tokens written into the tokenizer's post-processor (after ``[CLS]``, so
truncation keeps them, exactly as our tokenizer keeps a template's prefix).

What ml-commons cannot reproduce is refused before anything is exported: last-token pooling
(decoder LMs), templates with text after ``{text}``, left padding.

Packages are cached per checkpoint fingerprint under ``$RETROSEARCH_CACHE/opensearch-ml/``.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrosearch.core.config import EncoderSpec, cache_dir
from retrosearch.core.encoder.checkpoint import PACKAGED_MODELS, fingerprint, read_spec, resolve_model_path
from retrosearch.core.encoder.onnx_export import MODEL_FILE, export_token_states, publish_folder
from retrosearch.plugin.opensearch.errors import LocalModelError

ZIP_FILE = "model.zip"
TOKENIZER_FILE = "tokenizer.json"  # inside the zip only
# Bump when the package layout or model_config changes, so cached packages are rebuilt.
PACKAGE_FORMAT = 3
# ml-commons 2.19 runs ONNX Runtime 1.16, which reads IR version 9 and opsets up to 19 (torch's
# exporter writes IR 10, opset 20, whose Gelu ORT 1.16 lacks); 18 is the exporter's own baseline.
ONNX_OPSET, ONNX_IR_VERSION = 18, 9
# ml-commons feeds token_type_ids to the graph only for this model_type.
_TOKEN_TYPE_MODEL = "bert"
_POOLING = {"mean": "MEAN", "cls": "CLS"}


# Which texts a package embeds: both (one template for all), or one of the two templates.
Role = str
BOTH, QUERY, PASSAGE = "both", "query", "passage"
# The post-processor entry that stands for a template's prefix.
_PREFIX_TOKEN = "[retrosearch-prefix]"


@dataclass
class ModelPackage:
    """A checkpoint exported for ml-commons (for one role): the zip, its hash, and how to register it."""

    checkpoint: Path
    name: str
    fingerprint: str
    spec: EncoderSpec
    dim: int
    max_length: int
    zip_path: Path
    model_config: dict[str, Any]
    role: Role = BOTH
    prefix: str = ""

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.zip_path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    @property
    def size(self) -> int:
        return self.zip_path.stat().st_size

    @property
    def roles(self) -> tuple[str, ...]:
        """The templates this package's vectors are for: ``query``, ``passage`` or both."""
        return (QUERY, PASSAGE) if self.role == BOTH else (self.role,)


def template_prefix(template: str, field: str) -> str:
    """The text a template puts before ``{text}``; refused when it puts anything after it."""
    before, _, after = template.partition("{text}")
    if after or "{eos}" in before or "{bos}" in before:
        raise LocalModelError(
            f"the {field} {template!r} puts text after {{text}} or names special tokens, which ml-commons "
            "cannot reproduce (it only prefixes); use `retrosearch opensearch connect` with a running service"
        )
    return before


def check_supported(spec: EncoderSpec, name: str) -> None:
    """Refuse, in one line, an encoder ml-commons cannot compute exactly."""
    if spec.pooling not in _POOLING:
        raise LocalModelError(
            f"model {name} pools the {spec.pooling} token (a decoder LM encoder); ml-commons local models "
            "pool only mean or cls: use `retrosearch opensearch connect` with a running `retrosearch serve`"
        )
    if spec.padding_side != "right":
        raise LocalModelError(
            f"model {name} pads on the {spec.padding_side}; ml-commons local models need right "
            "padding: use `retrosearch opensearch connect` with a running service"
        )
    template_prefix(spec.query_template, "query template")
    template_prefix(spec.passage_template, "passage template")


def model_config(spec: EncoderSpec, hf_config: dict[str, Any], dim: int) -> dict[str, Any]:
    """ml-commons' ``model_config`` reproducing ``spec`` on top of the exported token states."""
    return {
        "model_type": str(hf_config.get("model_type") or "bert"),
        "embedding_dimension": dim,
        "framework_type": "sentence_transformers",
        "pooling_mode": _POOLING[spec.pooling],
        "normalize_result": spec.unit_vectors,
        "all_config": json.dumps(hf_config, sort_keys=True),
    }


def tokenizer_json(tokenizer: Any, max_length: int, prefix: str = "") -> str:
    """The fast tokenizer's JSON with truncation at ``max_length``, padding off, and ``prefix``'s tokens
    placed before every text by the post-processor."""
    backend = tokenizer.backend_tokenizer
    backend.enable_truncation(max_length)
    backend.no_padding()
    data = json.loads(backend.to_str())
    if prefix:
        data["post_processor"] = _with_prefix(data.get("post_processor"), tokenizer, prefix)
    return json.dumps(data, ensure_ascii=False)


def _with_prefix(processor: dict[str, Any] | None, tokenizer: Any, prefix: str) -> dict[str, Any]:
    if processor and processor.get("type") == "BertProcessing":
        (cls_token, cls_id), (sep_token, sep_id) = processor["cls"], processor["sep"]
        processor = {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": cls_token, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": sep_token, "type_id": 0}},
            ],
            "pair": [],
            "special_tokens": {
                cls_token: {"id": cls_token, "ids": [cls_id], "tokens": [cls_token]},
                sep_token: {"id": sep_token, "ids": [sep_id], "tokens": [sep_token]},
            },
        }
    if not processor or processor.get("type") != "TemplateProcessing":
        kind = (processor or {}).get("type", "none")
        raise LocalModelError(
            f"the tokenizer's post-processor ({kind}) cannot carry the template prefix {prefix!r}; "
            "use `retrosearch opensearch connect` with a running service"
        )
    ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    special = {
        **processor["special_tokens"],
        _PREFIX_TOKEN: {"id": _PREFIX_TOKEN, "ids": ids, "tokens": tokenizer.convert_ids_to_tokens(ids)},
    }
    return {
        **processor,
        "single": _before_text(processor["single"]),
        "pair": _before_text(processor.get("pair") or []),
        "special_tokens": special,
    }


def _before_text(template: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``template`` with the prefix entry before its first sequence."""
    at = next((i for i, part in enumerate(template) if "Sequence" in part), None)
    if at is None:
        return template
    return [*template[:at], {"SpecialToken": {"id": _PREFIX_TOKEN, "type_id": 0}}, *template[at:]]


def build_packages(model: str) -> list[ModelPackage]:
    """Export ``model`` (a checkpoint folder or packaged name) for ml-commons, once per fingerprint: one
    package when queries and passages share a template, else one per template."""
    path = resolve_model_path(model)
    try:
        spec = read_spec(path)
    except ValueError as exc:
        raise LocalModelError(f"model {path}: its encoder spec is unreadable: {exc}") from None
    check_supported(spec, str(path))
    # torch and transformers load only for a checkpoint that can be deployed (a refusal stays quick).
    # lazy: keeps torch, transformers out of importing this module
    from retrosearch.core.encoder.runtime import position_limit, prepare_tokenizer

    fp = fingerprint(path, spec)
    hf_config = json.loads((path / "config.json").read_text())
    try:
        tokenizer = prepare_tokenizer(path, spec)
    except (OSError, ValueError) as exc:
        raise _unexportable(path, exc) from None
    if not tokenizer.is_fast:
        raise LocalModelError(f"model {path} has no fast tokenizer (tokenizer.json), which ml-commons needs")
    max_length = min(spec.max_length, position_limit(_Config(hf_config), tokenizer))
    dim = int(hf_config.get("hidden_size") or 0)
    target = cache_dir() / "opensearch-ml" / f"{fp[:32]}-v{PACKAGE_FORMAT}"
    query, passage = (
        template_prefix(spec.query_template, "query template"),
        template_prefix(spec.passage_template, "passage template"),
    )
    roles = {BOTH: query} if query == passage else {QUERY: query, PASSAGE: passage}

    def build(staging: Path) -> None:
        import onnx  # lazy: keeps onnx out of importing this module

        graph = staging / "graph"
        graph.mkdir()
        export_token_states(
            path,
            spec,
            graph / MODEL_FILE,
            token_type_ids=hf_config.get("model_type") == _TOKEN_TYPE_MODEL,
            hint="it cannot run as an OpenSearch local model; use `retrosearch opensearch connect`",
            opset=ONNX_OPSET,
        )
        # ml-commons loads exactly one .onnx file from the zip: the weights go inside the graph.
        proto = onnx.load(str(graph / MODEL_FILE))
        proto.ir_version = min(proto.ir_version, ONNX_IR_VERSION)
        onnx.save_model(proto, str(staging / MODEL_FILE), save_as_external_data=False)
        for role, prefix in roles.items():
            with zipfile.ZipFile(staging / _zip_name(role), "w", zipfile.ZIP_DEFLATED) as zf:
                zf.write(staging / MODEL_FILE, MODEL_FILE)
                zf.writestr(TOKENIZER_FILE, tokenizer_json(tokenizer, max_length, prefix))
        for leftover in graph.iterdir():
            leftover.unlink()
        graph.rmdir()

    try:
        folder = publish_folder(target, build)
    except (OSError, ValueError) as exc:  # unreadable weights: the export never started
        raise _unexportable(path, exc) from None
    config = model_config(spec, hf_config, dim)
    return [
        ModelPackage(
            checkpoint=path,
            name=_model_name(model, path),
            fingerprint=fp,
            spec=spec,
            dim=dim,
            max_length=max_length,
            zip_path=folder / _zip_name(role),
            model_config=config,
            role=role,
            prefix=prefix,
        )
        for role, prefix in roles.items()
    ]


def _zip_name(role: Role) -> str:
    return ZIP_FILE if role == BOTH else f"model-{role}.zip"


def _unexportable(path: Path, exc: Exception) -> LocalModelError:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else "(no message)"
    return LocalModelError(
        f"model {path} could not be exported for OpenSearch: {type(exc).__name__}: {first}"
    )


class _Config:
    """The attributes :func:`position_limit` reads, from a checkpoint's config.json."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _model_name(model: str, path: Path) -> str:
    return model if model in PACKAGED_MODELS else path.name
