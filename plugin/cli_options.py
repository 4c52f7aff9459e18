"""Command-line options shared by every layer's commands, and how they become :class:`Settings`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from retrosearch.plugin.config import Settings

Model = Annotated[
    Optional[str], typer.Option("--model", "-m", help="Checkpoint folder or packaged model name. (default minilm)")
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")]
Dtype = Annotated[str, typer.Option(help="auto (bf16/fp16 on GPU, fp32 on CPU), float32, float16, bfloat16.")]
BatchSize = Annotated[Optional[int], typer.Option(help="Texts per forward pass (default 16 on CPU, 128 on GPU).")]
Threads = Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: torch's choice).")]
Runtime = Annotated[
    Optional[str],
    typer.Option(help="torch, or onnx (ONNX Runtime, exported once, cached). (default auto: torch)"),
]
Quantize = Annotated[
    Optional[str], typer.Option(help="none, or int8 (int8 weights, ONNX Runtime). (default none)")
]
PoolingOpt = Annotated[Optional[str], typer.Option("--pooling", help="Override pooling: cls, mean or last.")]
MaxLength = Annotated[Optional[int], typer.Option(help="Override the max tokens per text.")]
QueryTemplate = Annotated[Optional[str], typer.Option(help="Override the query template, e.g. 'query: {text}'.")]
PassageTemplate = Annotated[Optional[str], typer.Option(help="Override the passage template, e.g. 'passage: {text}'.")]
Backend = Annotated[str, typer.Option("--backend", "-b", help="faiss-flat, faiss-hnsw, faiss-ivfpq or opensearch.")]
OpenSearchUrl = Annotated[
    Optional[str], typer.Option("--opensearch-url", help="OpenSearch URL (credentials come from the environment).")
]
IndexName = Annotated[Optional[str], typer.Option("--index-name", help="OpenSearch index name.")]
SearchModeOpt = Annotated[
    str,
    typer.Option("--mode", help="dense (our vectors, any backend); with OpenSearch also neural (OpenSearch embeds the "
                 "query with our connected model), bm25 or hybrid (bm25 + dense)."),
]
HybridNormalization = Annotated[
    Optional[str],
    typer.Option("--hybrid-normalization", help="How each part of a hybrid score is normalised per query: min_max or "
                 "l2. (default min_max)"),
]
HybridWeight = Annotated[
    Optional[float], typer.Option("--hybrid-weight", help="Share of the dense part in a hybrid score, 0..1. (default 0.5)")
]
Engine = Annotated[Optional[str], typer.Option(help="k-NN engine: lucene (default), faiss, nmslib.")]
SpaceType = Annotated[Optional[str], typer.Option(help="k-NN space: innerproduct (default), cosinesimil, l2.")]
Shards = Annotated[Optional[int], typer.Option(help="OpenSearch primary shards.")]
Replicas = Annotated[Optional[int], typer.Option(help="OpenSearch replicas (restored after the load).")]
ForceMerge = Annotated[Optional[bool], typer.Option("--force-merge/--no-force-merge", help="Force-merge to one segment after loading.")]
HnswM = Annotated[Optional[int], typer.Option(help="HNSW graph degree M. (default 32)")]
EfConstruction = Annotated[Optional[int], typer.Option(help="HNSW efConstruction. (default 200)")]
EfSearch = Annotated[Optional[int], typer.Option(help="HNSW efSearch. (default 256)")]
Nlist = Annotated[Optional[int], typer.Option(help="IVF lists (default about 4*sqrt(N)).")]
Nprobe = Annotated[Optional[int], typer.Option(help="IVF lists probed per query. (default 16)")]
PqM = Annotated[Optional[int], typer.Option(help="PQ sub-quantizers (default dim/8).")]
ConfigFile = Annotated[
    Optional[Path], typer.Option("--config", help="JSON file with Settings; command-line options win over it.")
]
JsonOut = Annotated[Optional[Path], typer.Option("--json", help="Also write the figures to this JSON file.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def build_settings(config: Path | None = None, **options: Any) -> Settings:
    """Settings from an optional JSON file, overridden by the options given on the command line.

    Each option is applied to every settings group that has a field of that name (so ``hnsw_m``
    sets M for FAISS and OpenSearch alike); ``None`` means "not given", which is why every
    option's default is None: a value from the file is kept unless the command line names one.
    """
    try:
        base = Settings.model_validate(json.loads(config.read_text())) if config else Settings()
    except (OSError, ValueError) as exc:  # unreadable file, bad JSON, unknown key, wrong type
        raise fail(f"--config {config}: {exc}") from None
    groups = {name: type(getattr(base, name)) for name in Settings.model_fields}
    known = {field for model in groups.values() for field in model.model_fields}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    merged = {}
    for name, model in groups.items():
        given = {k: v for k, v in options.items() if k in model.model_fields and v is not None}
        try:
            merged[name] = model.model_validate({**getattr(base, name).model_dump(), **given})
        except ValueError as exc:
            raise fail(f"bad option value: {exc}") from None
    return Settings(**merged)


def domain_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the user's input or setup is wrong", not a bug.

    Each names the file, field, model or server at fault in its message, so a command reports
    it as one line and exit status 2, never as a traceback.
    """
    from retrosearch.plugin.collections.errors import CollectionError
    from retrosearch.plugin.encoder.checkpoint import ModelNotFoundError
    from retrosearch.plugin.encoder.onnx_export import OnnxExportError
    from retrosearch.plugin.index.base import IndexMismatchError, UnsupportedSearchOption
    from retrosearch.plugin.opensearch.client import OpenSearchUnavailable
    from retrosearch.plugin.opensearch.ml_model import ConnectError, RemoteModelError

    return (
        CollectionError, ModelNotFoundError, OnnxExportError, IndexMismatchError, UnsupportedSearchOption,
        OpenSearchUnavailable, ConnectError, RemoteModelError, FileNotFoundError, NotADirectoryError, PermissionError,
        ValueError,
    )


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn :func:`domain_errors` raised inside the block into a one-line error and exit 2."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        if isinstance(exc, domain_errors()):
            raise fail(str(exc)) from None
        raise


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error (no traceback) and return the exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)
