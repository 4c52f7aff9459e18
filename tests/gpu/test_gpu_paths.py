"""The GPU paths, on a machine with a CUDA GPU (skipped elsewhere; the CPU suite covers the code
that chooses devices): FAISS indexes searched on the GPU and saved for the CPU, GPU ingestion
with encoder actors on GPUs, and the encoder in half precision."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _docs(n: int):
    from retrosearch.core.collections import read_corpus
    from tests.conftest import DATA

    return list(itertools.islice(read_corpus(DATA / "scifact" / "corpus.jsonl"), n))


def test_encoder_runs_in_half_precision_on_the_gpu_and_agrees_with_cpu_fp32():
    from retrosearch.core.config import EncoderSettings
    from retrosearch.core.encoder import Encoder

    docs = _docs(200)
    gpu = Encoder.load(EncoderSettings(model="minilm", show_progress=False))
    cpu = Encoder.load(EncoderSettings(model="minilm", device="cpu", show_progress=False))
    assert gpu.device.type == "cuda" and next(gpu.model.parameters()).dtype in (torch.bfloat16, torch.float16)
    a, b = gpu.encode_documents(docs), cpu.encode_documents(docs)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.99


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_faiss_searches_on_the_gpu_and_saves_a_cpu_index(kind: str, tmp_path: Path):
    import faiss

    from retrosearch.core.config import FaissSettings
    from retrosearch.core.index.faiss_index import FaissIndex, gpu_count
    from retrosearch.core.vector_space import IndexMeta

    if gpu_count() == 0:
        pytest.fail("torch sees a GPU but FAISS does not: install the gpu extra (faiss-gpu-cu12) in place of faiss-cpu")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((20_000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    meta = IndexMeta(model_name="x", model_fingerprint="f" * 64, dim=64, similarity="cosine")
    ids = [str(i) for i in range(len(vectors))]
    on_gpu = FaissIndex(meta.model_copy(), kind, FaissSettings(use_gpu="auto"))
    on_cpu = FaissIndex(meta.model_copy(), kind, FaissSettings(use_gpu="never"))
    for index in (on_gpu, on_cpu):
        index.add(ids, vectors)
    assert on_gpu.on_gpu and not on_cpu.on_gpu
    gpu_hits, cpu_hits = on_gpu.search(vectors[:50], 10), on_cpu.search(vectors[:50], 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(gpu_hits.ids, cpu_hits.ids)])
    assert overlap >= (1.0 if kind == "flat" else 0.9)
    on_gpu.save(tmp_path / kind)
    saved = faiss.read_index(str(tmp_path / kind / "index.faiss"))
    assert "Gpu" not in type(saved).__name__  # loads on a machine without GPUs


def test_ingest_puts_encoder_actors_on_gpus(tmp_path: Path):
    from retrosearch.core.index import load_index
    from retrosearch.ingest.pipeline import IngestConfig, run_ingest

    corpus = tmp_path / "corpus.jsonl"
    docs = _docs(300)
    corpus.write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in docs))
    out = tmp_path / "index"
    summary = run_ingest(IngestConfig(inputs=[corpus], sink="faiss", out=out, gpus_per_worker=1))
    assert summary["rows_written"] == len(docs)
    index = load_index(out)
    assert index.count() == len(docs)
    cpu_out = tmp_path / "cpu-index"
    run_ingest(IngestConfig(inputs=[corpus], sink="faiss", out=cpu_out))
    gpu_rows = dict(zip(*index.stored_vectors()))
    cpu_rows = dict(zip(*load_index(cpu_out).stored_vectors()))
    assert gpu_rows.keys() == cpu_rows.keys() == {d.id for d in docs}
    cosine = [float(gpu_rows[i] @ cpu_rows[i]) for i in gpu_rows]  # unit vectors (the ids order may differ)
    assert min(cosine) >= 0.99
