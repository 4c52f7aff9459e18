"""Command-line options shared by every layer's commands, and how they become :class:`Settings`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from retrosearch.plugin.config import Settings

Model = Annotated[str, typer.Option("--model", "-m", help="Checkpoint folder or packaged model name (minilm).")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")]
Dtype = Annotated[str, typer.Option(help="auto (bf16/fp16 on GPU, fp32 on CPU), float32, float16, bfloat16.")]
BatchSize = Annotated[Optional[int], typer.Option(help="Texts per forward pass (default 16 on CPU, 128 on GPU).")]
Threads = Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: torch's choice).")]
PoolingOpt = Annotated[Optional[str], typer.Option("--pooling", help="Override pooling: cls, mean or last.")]
MaxLength = Annotated[Optional[int], typer.Option(help="Override the max tokens per text.")]
QueryTemplate = Annotated[Optional[str], typer.Option(help="Override the query template, e.g. 'query: {text}'.")]
PassageTemplate = Annotated[Optional[str], typer.Option(help="Override the passage template, e.g. 'passage: {text}'.")]
Backend = Annotated[str, typer.Option("--backend", "-b", help="faiss-flat, faiss-hnsw, faiss-ivfpq or opensearch.")]
OpenSearchUrl = Annotated[
    Optional[str], typer.Option("--opensearch-url", help="OpenSearch URL (credentials come from the environment).")
]
IndexName = Annotated[Optional[str], typer.Option("--index-name", help="OpenSearch index name.")]
Engine = Annotated[Optional[str], typer.Option(help="k-NN engine: lucene (default), faiss, nmslib.")]
SpaceType = Annotated[Optional[str], typer.Option(help="k-NN space: innerproduct (default), cosinesimil, l2.")]
Shards = Annotated[Optional[int], typer.Option(help="OpenSearch primary shards.")]
Replicas = Annotated[Optional[int], typer.Option(help="OpenSearch replicas (restored after the load).")]
ForceMerge = Annotated[bool, typer.Option(help="Force-merge to one segment after loading.")]
HnswM = Annotated[int, typer.Option(help="HNSW graph degree M.")]
EfConstruction = Annotated[int, typer.Option(help="HNSW efConstruction.")]
EfSearch = Annotated[int, typer.Option(help="HNSW efSearch.")]
Nlist = Annotated[Optional[int], typer.Option(help="IVF lists (default about 4*sqrt(N)).")]
Nprobe = Annotated[int, typer.Option(help="IVF lists probed per query.")]
PqM = Annotated[Optional[int], typer.Option(help="PQ sub-quantizers (default dim/8).")]
ConfigFile = Annotated[
    Optional[Path], typer.Option("--config", help="JSON file with Settings; command-line options win over it.")
]
JsonOut = Annotated[Optional[Path], typer.Option("--json", help="Also write the figures to this JSON file.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def build_settings(config: Path | None = None, **options: Any) -> Settings:
    """Settings from an optional JSON file, overridden by the options given on the command line.

    Each option is applied to every settings group that has a field of that name (so ``hnsw_m``
    sets M for FAISS and OpenSearch alike); ``None`` means "not given".
    """
    base = Settings.model_validate(json.loads(config.read_text())) if config else Settings()
    groups = {name: type(getattr(base, name)) for name in Settings.model_fields}
    known = {field for model in groups.values() for field in model.model_fields}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    merged = {}
    for name, model in groups.items():
        given = {k: v for k, v in options.items() if k in model.model_fields and v is not None}
        merged[name] = model.model_validate({**getattr(base, name).model_dump(), **given})
    return Settings(**merged)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error (no traceback) and return the exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)
