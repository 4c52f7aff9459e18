"""The one settings model of RetroSearch.

Two kinds of configuration live here:

* :class:`EncoderSpec` travels *with a model* (``retrosearch.json`` beside the weights): how text
  is formatted, pooled and compared. Whoever loads the model gets the same vectors.
* :class:`Settings` and its parts are *run-time choices* (device, batch size, index parameters,
  server URLs) that can change without changing the vectors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Pooling = Literal["cls", "mean", "last"]
Similarity = Literal["cosine", "dot"]

SPEC_FILENAME = "retrosearch.json"


def cache_dir() -> Path:
    """Where RetroSearch keeps what it can reuse (``$RETROSEARCH_CACHE``, else ~/.cache/retrosearch)."""
    return Path(os.environ.get("RETROSEARCH_CACHE") or Path.home() / ".cache" / "retrosearch")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EncoderSpec(_Strict):
    """How a checkpoint turns text into vectors; saved as ``retrosearch.json`` with the weights.

    Templates place the text with ``{text}``; ``{eos}`` and ``{bos}`` stand for the tokenizer's
    own special tokens (decoder models such as LLaRA need a literal end-of-sequence token).
    Passages are ``title + title_separator + text`` before templating when a title exists.
    """

    format_version: int = 1
    pooling: Pooling = "mean"
    normalize: bool = True
    similarity: Similarity = "cosine"
    query_template: str = "{text}"
    passage_template: str = "{text}"
    title_separator: str = " "
    max_length: int = Field(256, gt=0)
    padding_side: Literal["right", "left"] = "right"
    method: str = "pretrained"
    provenance: dict[str, Any] = Field(default_factory=dict)
    # Recorded by a Matryoshka fine-tune: the leading dimensions the loss was summed over (vectors
    # cut to any of them were trained to retrieve). Describes the weights; not part of the fingerprint.
    matryoshka_dimensions: list[int] | None = None

    @field_validator("query_template", "passage_template")
    @classmethod
    def _has_text_slot(cls, value: str) -> str:
        if "{text}" not in value:
            raise ValueError(f"template {value!r} has no '{{text}}' placeholder")
        return value

    @property
    def unit_vectors(self) -> bool:
        """True when every vector the encoder emits has unit length (so dot == cosine)."""
        return self.normalize or self.similarity == "cosine"


class EncoderSettings(_Strict):
    """Run-time choices for the encoder runtime; none of them changes the vectors' meaning, except
    ``dimensions``, which cuts them (and so gives them another fingerprint)."""

    model: str = Field("minilm", description="checkpoint folder or packaged model name")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, mps")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: bf16 (or fp16) on GPUs, fp32 on the CPU"
    )
    # What runs the forward pass; "auto" is decided by encoder.device.resolve_runtime.
    runtime: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="torch, or onnx (ONNX Runtime, exported once and cached); auto: onnx for queries on "
        "a CPU (the service, search), torch otherwise"
    )
    # int8: dynamic int8 weights in the ONNX export (ONNX Runtime only; vectors close, not equal).
    quantize: Literal["none", "int8"] = Field("none", description="int8: int8 weights (ONNX Runtime only)")
    batch_size: int | None = Field(None, gt=0, description="texts per forward pass [default: 16 on CPU, 128 on GPU]")
    max_batch_tokens: int | None = Field(
        None, gt=0, description="padded positions per forward pass (rows x longest); none: rows only"
    )
    threads: int | None = Field(None, gt=0, description="CPU threads for torch [default: torch's choice]")
    dimensions: int | None = Field(
        None, gt=0, description="cut vectors to their first N dimensions, renormalised (for Matryoshka-"
        "trained models) [default: the model's own]"
    )
    show_progress: bool = True
    # Overrides of the checkpoint's own spec, for plain HF folders that carry none.
    pooling: Pooling | None = Field(None, description="override the checkpoint's pooling")
    max_length: int | None = Field(None, gt=0, description="override the checkpoint's max tokens per text")
    query_template: str | None = Field(None, description="override the query template, e.g. 'query: {text}'")
    passage_template: str | None = Field(None, description="override the passage template, e.g. 'passage: {text}'")


class FaissSettings(_Strict):
    """Parameters of the FAISS backends (``faiss-flat``, ``faiss-hnsw``, ``faiss-ivfpq`` and the quantized
    ``faiss-int8``, ``faiss-int8-hnsw``, ``faiss-binary``, ``faiss-binary-hnsw``)."""

    hnsw_m: int = Field(32, gt=1, description="HNSW graph degree M (FAISS and OpenSearch)")
    hnsw_ef_construction: int = Field(200, gt=0, description="HNSW efConstruction (FAISS and OpenSearch)")
    hnsw_ef_search: int = Field(256, gt=0, description="HNSW efSearch (FAISS and OpenSearch)")
    ivf_nlist: int | None = Field(None, gt=0, description="IVF lists [default: about 4*sqrt(N)]")
    ivf_nprobe: int = Field(16, gt=0, description="IVF lists probed per query")
    pq_m: int | None = Field(None, gt=0, description="PQ sub-quantizers [default: dimension/8]")
    pq_nbits: int = Field(8, gt=0, le=16)
    # Search-time, like efSearch: a saved quantized index is searched with the value in effect.
    oversample: float = Field(
        4.0, ge=1, description="quantized indices: candidates per hit (k x oversample) rescored against the "
        "stored vectors"
    )
    rescore: bool = Field(
        True, description="quantized indices: rescore candidates (off: the codes' own ranking)"
    )
    use_gpu: Literal["auto", "never"] = "auto"


class OpenSearchSettings(_Strict):
    """Where the OpenSearch backend connects and how it builds and loads k-NN indices.

    ``url`` names one node or several, comma-separated (all are given to the client, so one dead
    node is not an outage). Credentials and TLS files are read from the environment
    (``RETROSEARCH_OPENSEARCH_USER``, ``RETROSEARCH_OPENSEARCH_PASSWORD``, or the files
    ``RETROSEARCH_OPENSEARCH_USER_FILE`` / ``RETROSEARCH_OPENSEARCH_PASSWORD_FILE`` name,
    ``RETROSEARCH_OPENSEARCH_CA_CERTS``, ``RETROSEARCH_OPENSEARCH_VERIFY_CERTS``), never from
    settings files or the command line.
    """

    url: str = Field(
        "http://127.0.0.1:9250",
        description="OpenSearch URL; several nodes comma-separated or the option repeated "
        "(credentials come from the environment)",
    )
    index: str | None = Field(None, description="OpenSearch index name")
    vector_field: str = "embedding"
    # The Maven Central k-NN build has no native libraries; faiss needs a full distribution.
    engine: Literal["lucene", "faiss", "nmslib"] = Field("lucene", description="k-NN engine")
    space_type: Literal["innerproduct", "cosinesimil", "l2"] | None = Field(
        None, description="k-NN space (the encoder's similarity on its own vectors) [default: innerproduct]"
    )
    hnsw_m: int = Field(32, gt=1)
    hnsw_ef_construction: int = Field(200, gt=0)
    hnsw_ef_search: int | None = Field(256, gt=0)
    # sq: Lucene's scalar quantizer (7-bit codes in the HNSW graph; k-NN 2.16+); int8 / binary: byte or
    # binary k-NN fields holding our own codes (the FAISS kinds' names). Each scores candidates with
    # the codes only, so searches rescore them with the float vectors kept beside the codes.
    knn_encoder: Literal["none", "sq", "int8", "binary"] = Field(
        "none", description="quantized k-NN vectors, candidates rescored with the stored float vectors: sq "
        "(Lucene scalar quantization, engine lucene), int8 (byte vectors) or binary (sign bits, Hamming)"
    )
    # The same names as FaissSettings': one command-line option sets both.
    oversample: float = Field(4.0, ge=1)
    rescore: bool = True
    shards: int = Field(1, gt=0, description="OpenSearch primary shards")
    replicas: int = Field(1, ge=0, description="OpenSearch replicas (restored after the load)")
    request_timeout_s: float = Field(120.0, gt=0)
    bulk_docs: int = Field(500, gt=0)
    bulk_bytes: int = Field(10 * 1024 * 1024, gt=0)
    bulk_retries: int = Field(8, ge=0)
    bulk_initial_backoff_s: float = Field(1.0, gt=0)
    bulk_max_backoff_s: float = Field(60.0, gt=0)
    force_merge: bool = Field(False, description="force-merge to one segment after loading")
    search_batch: int = Field(64, gt=0, description="knn queries per _msearch request")
    hybrid_dense_weight: float = Field(
        0.5, ge=0, le=1, description="share of the dense part in a hybrid score (the rest is BM25's)"
    )
    hybrid_normalization: Literal["min_max", "l2"] = Field(
        "min_max", description="how each part's scores are normalised per query before they are combined"
    )


class ServeSettings(_Strict):
    """How the query service listens, batches, limits requests and (with Ray Serve) scales.

    The API key itself is never a setting: ``api_key_env`` names the environment variable that
    holds it, so it stays out of files, command lines and logs.
    """

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, lt=65536, description="HTTP port")
    max_batch_size: int = Field(32, gt=0, description="texts per forward pass of the batcher")
    max_batch_tokens: int = Field(
        8192, gt=0, description="padded positions (texts x longest) per batch of the batcher; a longer text "
        "goes alone (also caps the encoder's own micro-batches)"
    )
    max_wait_ms: float = Field(
        2.0, ge=0, description="longest a batch waits to fill under concurrent load"
    )
    max_queued_texts: int = Field(
        1024, gt=0, description="texts a replica holds (waiting or encoding) before it answers 429 with "
        "Retry-After"
    )
    max_queued_tokens: int = Field(
        131_072, gt=0, description="tokens a replica holds (waiting or encoding) before it answers 429 with "
        "Retry-After"
    )
    max_texts: int = Field(256, gt=0, description="texts or queries per request; more is 413")
    max_chars: int = Field(20_000, gt=0, description="characters per text; more is 413")
    max_k: int = Field(1000, gt=0, description="largest k a search may ask for")
    embeddings_mode: Literal["query", "passage"] = Field(
        "query", description="template of /v1/embeddings"
    )
    api_key_env: str | None = Field(
        None, description="environment variable holding the API key (requests need 'Authorization: Bearer <key>')"
    )
    search_threads: int = Field(4, gt=0, description="threads running index searches")
    ray: bool = Field(False, description="run as a Ray Serve application")
    ray_address: str | None = Field(None, description="Ray cluster to run on, e.g. ray://head:10001 or auto "
                                                      "[default: a local Ray]")
    num_replicas: int = Field(1, gt=0, description="Ray Serve replicas, unless autoscaling")
    min_replicas: int | None = Field(None, ge=0, description="autoscale from this many replicas (with --max-replicas)")
    max_replicas: int | None = Field(None, gt=0, description="autoscale up to this many replicas")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (Ray Serve)")
    num_cpus: float = Field(1.0, gt=0, description="CPUs per replica (Ray Serve)")
    max_replicas_per_node: int | None = Field(
        None, gt=0, description="at most this many replicas on one node (Ray Serve; 1 spreads them over nodes)"
    )
    proxy_location: Literal["EveryNode", "HeadOnly"] = Field(
        "EveryNode",
        description="which nodes run Ray Serve's HTTP proxy; HeadOnly where several nodes share one host "
        "(their proxies would all bind the same port)",
    )
    ray_ingress: Literal["haproxy", "proxy"] = Field(
        "haproxy",
        description="what carries HTTP requests to the replicas of a local Ray: Ray's HAProxy ingress (straight "
        "to each replica's own HTTP server) or Ray's Python proxy actor; on a cluster its RAY_SERVE_* "
        "environment decides",
    )


class Settings(_Strict):
    """Everything a command may be configured with."""

    encoder: EncoderSettings = Field(default_factory=EncoderSettings)
    faiss: FaissSettings = Field(default_factory=FaissSettings)
    opensearch: OpenSearchSettings = Field(default_factory=OpenSearchSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
