"""The ONNX Runtime backend: the same vectors as torch through the same Encoder, cached exports, the CLI.

Every model kind the runtime loads is exported and compared with its torch forward pass on real
SciFact abstracts: the packaged all-MiniLM-L6-v2 (mean pooling), a tiny RetroMAE export (CLS), a
tiny fine-tuned export (CLS) and a tiny LLaRA export (decoder LM: last-token pooling, left padding).
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from retrosearch.core.config import EncoderSettings
from retrosearch.core.encoder import Encoder, resolve_model_path
from retrosearch.core.encoder import onnx_export
from retrosearch.core.encoder.device import resolve_runtime
from retrosearch.core.encoder.onnx_export import OnnxExportError, export_dir
from tests.conftest import DATA

# fp32 ONNX and torch differ by float rounding only.
PARITY_COSINE = 0.999
# int8 weights move every vector a little (all-MiniLM on SciFact, dynamic: min ~0.991, mean ~0.994).
INT8_MIN_COSINE, INT8_MEAN_COSINE = 0.98, 0.99


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    """A cache folder of this module's own, so every export here is made (and reused) here."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("retrosearch-cache")
        patch.setenv("RETROSEARCH_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def scifact_docs() -> list:
    """The first 200 SciFact abstracts."""
    corpus = DATA / "scifact" / "corpus.jsonl"
    if not corpus.exists():
        pytest.skip(f"shared data not found at {corpus}")
    from retrosearch.core.collections import read_corpus

    return list(itertools.islice(read_corpus(corpus), 200))


@pytest.fixture
def export_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The checkpoints exported during a test (the real export still runs)."""
    calls: list[Path] = []
    real = onnx_export.export_onnx

    def counting(path, spec, out):
        calls.append(path)
        return real(path, spec, out)

    monkeypatch.setattr(onnx_export, "export_onnx", counting)
    return calls


def _load(model: str | Path, **fields) -> Encoder:
    return Encoder.load(EncoderSettings(model=str(model), device="cpu", show_progress=False, **fields))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _assert_parity(model: str | Path, docs: list, **fields) -> tuple[np.ndarray, Encoder]:
    """Encode ``docs`` with torch and with ONNX fp32; every vector pair must agree. Returns torch's."""
    torch_encoder, onnx_encoder = _load(model, runtime="torch", **fields), _load(model, runtime="onnx", **fields)
    assert (torch_encoder.runtime, onnx_encoder.runtime) == ("torch", "onnx")
    assert onnx_encoder.index_meta() == torch_encoder.index_meta()  # the vectors are interchangeable
    expected, got = torch_encoder.encode_documents(docs), onnx_encoder.encode_documents(docs)
    cosines = _cosines(expected, got)
    assert cosines.min() >= PARITY_COSINE, f"{model}: worst cosine {cosines.min():.6f}"
    # The same batching and padding ran around both forward passes.
    assert onnx_encoder.stats.padded_tokens == torch_encoder.stats.padded_tokens
    return expected, onnx_encoder


# -- choosing the runtime ----------------------------------------------------------------------
def test_auto_picks_onnx_for_queries_on_a_cpu_and_torch_for_the_rest():
    assert resolve_runtime("auto", "none", "cpu", "mean", "queries") == "onnx"  # 2.2x per query, measured
    assert resolve_runtime("auto", "none", "cpu", "cls", "queries") == "onnx"
    assert resolve_runtime("auto", "none", "cpu", "mean", "bulk") == "torch"  # 1.2x over long passages
    assert resolve_runtime("auto", "none", "cpu", "last", "queries") == "torch"  # decoder LMs: not measured
    assert resolve_runtime("auto", "none") == "torch"  # bulk unless told otherwise
    assert resolve_runtime("auto", "int8") == "onnx"  # only the ONNX path has int8 weights
    assert resolve_runtime("onnx", "none", "cpu", "mean", "bulk") == "onnx"
    assert resolve_runtime("torch", "none", "cpu", "mean", "queries") == "torch"  # asked for: kept
    with pytest.raises(ValueError, match="--runtime onnx"):
        resolve_runtime("torch", "int8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_keeps_torch_on_a_gpu():
    assert resolve_runtime("auto", "none", "auto", "mean", "queries") == "torch"


def test_the_query_side_loads_onnx_by_default_on_a_cpu(tiny_bert: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("RETROSEARCH_CACHE", str(tmp_path))  # its own export, not the one other tests count
    settings = EncoderSettings(model=str(tiny_bert), device="cpu", show_progress=False)
    assert Encoder.load(settings, workload="queries").runtime == "onnx"
    assert Encoder.load(settings).runtime == "torch"


def test_onnx_refuses_half_precision(tiny_bert: Path, export_calls: list[Path]):
    with pytest.raises(ValueError, match="--runtime torch"):
        _load(tiny_bert, runtime="onnx", dtype="bfloat16")
    assert export_calls == []  # refused before any export


def test_bfloat16_on_cpu_stays_a_torch_choice(tiny_bert: Path):
    docs = ["dense vector retrieval of passages", "protein expression in tumor cells"]
    fp32 = _load(tiny_bert, runtime="torch").encode_formatted(docs)
    bf16 = _load(tiny_bert, runtime="torch", dtype="bfloat16").encode_formatted(docs)
    assert bf16.dtype == np.float32 and _cosines(fp32, bf16).min() > 0.98


# -- exports and their cache -------------------------------------------------------------------
def test_tiny_bert_matches_torch_and_exports_once(tiny_bert: Path, scifact_docs: list, export_calls: list[Path]):
    _, first = _assert_parity(tiny_bert, scifact_docs)
    folder = export_dir(first.fingerprint)
    model_file = folder / onnx_export.MODEL_FILE
    assert export_calls == [tiny_bert] and model_file.exists()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "a staging folder was left behind"
    stamp = model_file.stat().st_mtime_ns

    # Two more loads at once (as two Ray workers would): both reuse the export, nothing is rewritten.
    loaded: list[Encoder] = []
    threads = [threading.Thread(target=lambda: loaded.append(_load(tiny_bert, runtime="onnx"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loaded) == 2 and export_calls == [tiny_bert]
    assert model_file.stat().st_mtime_ns == stamp


def test_a_failed_export_names_the_model_and_leaves_no_cache(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import shutil

    import torch

    model = shutil.copytree(tiny_bert, tmp_path / "unexportable")
    (model / "retrosearch.json").write_text(json.dumps({"pooling": "mean"}))  # a fingerprint of its own

    def refuse(*args, **kwargs):
        raise RuntimeError("no ONNX translation for aten::strange_op\nsecond line")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(OnnxExportError, match="--runtime torch") as info:
        _load(model, runtime="onnx")
    assert str(model) in str(info.value) and "strange_op" in str(info.value)
    fingerprint = _load(model, runtime="torch").fingerprint
    assert not export_dir(fingerprint).exists()
    assert not [p for p in export_dir(fingerprint).parent.iterdir() if p.name.startswith(".")]


# -- every kind of checkpoint -----------------------------------------------------------------
def test_retromae_export_matches_torch(tmp_path: Path, scifact_docs: list):
    import torch

    from retrosearch.trainers.harness.method import RunInfo
    from retrosearch.trainers.retromae import RetroMAEConfig, RetroMAEMethod
    from tests.trainers.conftest import build_tiny_bert_encoder

    base = build_tiny_bert_encoder(tmp_path / "base", resolve_model_path("minilm"))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in scifact_docs))
    method = RetroMAEMethod(RetroMAEConfig(model=str(base), corpus=str(corpus)))
    torch.manual_seed(0)
    out = tmp_path / "retromae"
    method.export(method.build_model(), out, RunInfo(step=1, steps=1, workers=1, batch_size=8, seed=0, last_metrics={}))
    _, encoder = _assert_parity(out, scifact_docs)
    assert encoder.spec.method == "retromae" and encoder.spec.pooling == "cls"


def test_finetuned_export_matches_torch(tmp_path: Path, scifact_docs: list):
    from retrosearch.trainers.finetune.config import FinetuneConfig
    from retrosearch.trainers.finetune.export import export_checkpoint
    from retrosearch.trainers.finetune.model import load_trainable_encoder
    from tests.trainers.conftest import build_tiny_bert_encoder

    base = build_tiny_bert_encoder(tmp_path / "base", resolve_model_path("minilm"), seed=1)
    trainable = load_trainable_encoder(FinetuneConfig(model=str(base), train_file=Path("unused.jsonl")))
    out = export_checkpoint(
        trainable.model, trainable.tokenizer, tmp_path / "finetuned", str(base), trainable.base_path, trainable.spec, {}
    )
    _, encoder = _assert_parity(out, scifact_docs)
    assert encoder.spec.method == "finetune"


def test_llara_export_matches_torch(tmp_path: Path, scifact_docs: list):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from retrosearch.trainers.llara.export import export_llara
    from retrosearch.trainers.llara.prompt import PromptSet
    from tests.trainers.llara.conftest import build_tiny_causal_lm

    base = build_tiny_causal_lm(tmp_path / "llama", "llama")
    out = tmp_path / "llara"
    export_llara(
        AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base), out,
        PromptSet.named("paper"), max_length=512, provenance={},
    )
    expected, encoder = _assert_parity(out, scifact_docs)
    assert encoder.spec.pooling == "last" and encoder.spec.padding_side == "left"
    # Rows of different lengths really were left-padded in a shared batch.
    assert encoder.stats.padded_tokens > encoder.stats.tokens
    # Last-token pooling takes the weight-only int8 path (SmolLM2-135M: min cosine ~0.998).
    cosines = _cosines(expected, _load(out, runtime="onnx", quantize="int8").encode_documents(scifact_docs))
    assert cosines.min() >= INT8_MIN_COSINE and cosines.mean() >= INT8_MEAN_COSINE


# -- the real model: fp32 and int8 --------------------------------------------------------------
@pytest.mark.slow
def test_minilm_onnx_matches_torch_and_int8_stays_close(scifact_docs: list, export_calls: list[Path]):
    expected, fp32 = _assert_parity("minilm", scifact_docs)
    int8 = _load("minilm", runtime="onnx", quantize="int8")
    assert export_calls == [resolve_model_path("minilm")]  # int8 is quantized from the cached fp32 export
    assert export_dir(int8.fingerprint, "int8").is_dir() and export_dir(fp32.fingerprint).is_dir()
    cosines = _cosines(expected, int8.encode_documents(scifact_docs))
    assert cosines.min() >= INT8_MIN_COSINE and cosines.mean() >= INT8_MEAN_COSINE, (cosines.min(), cosines.mean())


# -- the command line ---------------------------------------------------------------------------
def _cli(*args: str) -> str:
    from retrosearch.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


@pytest.mark.slow
def test_cli_index_and_search_with_onnx_give_torch_top_ids(small_scifact: Path, tmp_path: Path):
    queries = [json.loads(line)["text"] for line in (small_scifact / "queries.jsonl").read_text().splitlines()[:8]]
    top: dict[str, list[list[str]]] = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / runtime
        _cli("index", "--collection", str(small_scifact), "--model", "minilm", "--out", str(out), "--quiet",
             "--runtime", runtime)
        hits = json.loads(_cli("search", "--index", str(out), "--json-out", "-", "-k", "5", "--runtime", runtime, *queries))
        top[runtime] = [[hit["id"] for hit in row["hits"]] for row in hits]
    assert top["onnx"] == top["torch"]
    # An index built with torch is searchable with ONNX queries (same fingerprint) and ranks alike.
    mixed = json.loads(_cli("search", "--index", str(tmp_path / "torch"), "--json-out", "-", "-k", "5", "--runtime", "onnx", *queries))
    assert [[hit["id"] for hit in row["hits"]] for row in mixed] == top["torch"]
