"""The command line's vocabulary: every option name, its one meaning, the commands that take it and its
old spellings.

:data:`MEANINGS` is the written part (one meaning per name); everything else is read from the
``retrosearch`` Typer app, so the page ``docs/reference/options.md`` and the test that checks the
commands against it (``tests/test_cli_vocabulary.py``) cannot drift from the commands:

    python -m retrosearch.cli_vocabulary            # rewrite docs/reference/options.md
    python -m retrosearch.cli_vocabulary --check    # exit 1 when it is out of date
"""

from __future__ import annotations

import enum
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer.main

from retrosearch.cli import app

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "options.md"

#: One meaning per option name, whichever command takes it (the commands' own help says the detail).
MEANINGS: dict[str, str] = {
    # What to read: one word per kind of input.
    "--collection": "A BEIR collection folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).",
    "--corpus": "The documents alone: a JSONL/Parquet file, a folder of them, a saved HF dataset, or a BEIR "
                "folder's corpus.",
    "--train-file": "Training data: a JSONL file of {query, positives, negatives} groups.",
    "--split": "A qrels split of the collection (the queries judged in qrels/<split>.tsv).",
    "--eval-split": "The held-out qrels split evaluated after training ('' to skip).",
    "--index": "A FAISS index folder (written by `index` or `ingest`).",
    "--index-name": "An OpenSearch index name.",
    "--config": "A JSON or YAML settings file, one section per settings group; command-line options win "
                "over it.",
    "--id-field": "The record field holding the document id.",
    "--title-field": "The record field holding the title ('' for none).",
    "--text-field": "The record field holding the text.",
    "--keep-field": "An extra record field stored with each document (repeatable).",
    "--field": "A stored document field returned with each hit (repeatable; OpenSearch).",
    "--filter": "An OpenSearch filter clause, as JSON.",
    "--limit": "Use only the first N documents.",
    # What to write.
    "--out": "Where the command writes its result: an index, model, training file or report folder.",
    "--json-out": "Also write the command's result as JSON to this file; '-' writes it to stdout instead of "
                  "the tables.",
    "--save-index": "Also save the index built on the way, for reuse.",
    "--negatives-out": "Where mined hard negatives are written.",
    "--rejects": "Where records refused as bad input are written.",
    "--state-dir": "Where a resumable job keeps its progress.",
    "--docs-page": "Also rewrite this documentation page's generated block (between its marker lines).",
    "--quiet": "No progress bars.",
    # The encoder.
    "--model": "An encoder: a checkpoint folder, a packaged model name, or random:<architecture>[@<seed>] "
               "(untrained weights drawn from the seed).",
    "--device": "Where the model runs: auto, cpu, cuda, cuda:N, mps.",
    "--dtype": "The encoder's floating-point type.",
    "--batch-size": "Texts per forward pass of the encoder.",
    "--eval-batch-size": "Texts per forward pass of the encoder in the evaluation after training.",
    "--eval-device": "Where the encoder of the evaluation after training runs.",
    "--threads": "CPU threads for torch.",
    "--runtime": "What runs the encoder's forward pass: torch or ONNX Runtime.",
    "--quantize": "Weight quantisation of the ONNX export.",
    "--pooling": "How token vectors become one vector (overrides the checkpoint's).",
    "--max-length": "Tokens per text.",
    "--query-template": "The text around each query before it is embedded ({text} marks it).",
    "--passage-template": "The text around each passage before it is embedded ({text} marks it).",
    "--dimensions": "Cut the encoder's vectors to their first N dimensions, renormalised (Matryoshka models).",
    # Index build and search.
    "--backend": "The index backend, by the index registry's names.",
    "--faiss-backend": "The FAISS index kind (a FAISS backend name).",
    "--eval-backend": "The index backend of the evaluation after training.",
    "--mode": "The search mode: dense, neural, bm25 or hybrid (the last three on OpenSearch).",
    "-k": "Hits per query.",
    "--top-k": "Hits retrieved per query for the evaluation.",
    "--hnsw-m": "HNSW graph degree M (FAISS and OpenSearch).",
    "--ef-construction": "HNSW efConstruction (FAISS and OpenSearch).",
    "--ef-search": "HNSW efSearch (FAISS and OpenSearch).",
    "--nlist": "IVF lists.",
    "--nprobe": "IVF lists probed per query.",
    "--pq-m": "PQ sub-quantizers.",
    "--oversample": "Quantized indices: candidates per hit (k x oversample) rescored against the stored vectors.",
    "--rescore": "Quantized indices: rescore the candidates (off: the codes' own ranking).",
    "--quantized": "Also sweep the quantized FAISS indices.",
    "--knn-encoder": "The OpenSearch k-NN vector encoding: none, sq (Lucene scalar quantization), int8 (byte "
                     "vectors) or binary (sign bits); the quantized ones rescored.",
    # OpenSearch.
    "--opensearch-url": "The OpenSearch URL (credentials come from the environment).",
    "--engine": "The OpenSearch k-NN engine.",
    "--space-type": "The OpenSearch k-NN space.",
    "--shards": "OpenSearch primary shards of the index.",
    "--replicas": "OpenSearch replicas of the index (restored after the load).",
    "--force-merge": "Force-merge the OpenSearch index to one segment after loading.",
    "--hybrid-weight": "The dense part's share of a hybrid score (the rest is BM25's).",
    "--hybrid-normalization": "How each part's scores are normalised per query before a hybrid combines "
                              "them.",
    "--service-url": "The query service, as OpenSearch reaches it.",
    "--trust-endpoint": "Allow OpenSearch to call that URL when its cluster settings forbid it.",
    # The query service.
    "--host": "The address the service listens on.",
    "--port": "An HTTP port (of the service or the local OpenSearch node).",
    "--background": "Start detached, wait until ready, print the URL.",
    "--access-log": "Log every request.",
    "--wait": "Seconds to wait until the started process is ready.",
    "--max-batch-size": "Texts per forward pass of the service's batcher.",
    "--max-wait-ms": "The longest a batch of the service waits to fill.",
    "--max-texts": "Texts or queries per request to the service; more is 413.",
    "--max-chars": "Characters per text sent to the service; more is 413.",
    "--max-k": "The largest k a search request may ask for.",
    "--max-batch-tokens": "The token budget of one forward pass: texts x their longest padded length.",
    "--max-queued-texts": "Texts a service replica holds (queued or computing) before it answers 429.",
    "--max-queued-tokens": "Tokens a service replica holds (queued or computing) before it answers 429.",
    "--overload-bound": "The service's --max-queued-texts during the benchmark's overload run.",
    "--overload-factor": "The overload run's request rate as a multiple of the measured capacity.",
    "--overload-seconds": "Length of the benchmark's overload run past the service's capacity (0: none).",
    "--embeddings-mode": "The template /v1/embeddings applies: query or passage.",
    "--api-key-env": "The environment variable holding the service's API key.",
    "--search-threads": "Threads running index searches in the service.",
    # Ray.
    "--ray": "Run the service as a Ray Serve application.",
    "--ray-address": "The Ray cluster to run on (ray://head:10001, auto); none: a local Ray.",
    "--workers": "Ray workers of the job: embedding actors (ingest) or Ray Train workers (train).",
    "--gpus-per-worker": "GPUs reserved for each Ray worker: embedding actor, Ray Serve replica or Ray Train "
                         "worker.",
    "--cpus-per-worker": "CPUs reserved for each Ray worker: embedding actor or Ray Serve replica.",
    "--serve-replicas": "Ray Serve replicas of the service, unless autoscaling.",
    "--min-replicas": "Autoscale Ray Serve replicas from this many.",
    "--max-replicas": "Autoscale Ray Serve replicas up to this many.",
    "--max-replicas-per-node": "At most this many Ray Serve replicas on one node.",
    "--proxy-location": "Which nodes run Ray Serve's HTTP proxy.",
    "--ray-ingress": "What carries HTTP requests to the Ray Serve replicas of a local Ray.",
    # Ingest.
    "--sink": "Where ingest writes the vectors: OpenSearch, FAISS or Parquet.",
    "--on-error": "What a bad input record does: fail stops, skip writes the good ones.",
    "--max-text-chars": "Records with a longer title+text are bad input.",
    "--chunk-rows": "Records per resumable ingest chunk.",
    "--block-rows": "Rows per Ray Data block and embedding-actor call.",
    "--tokenize-stage": "Tokenize in a separate CPU stage of the ingest job.",
    "--write-concurrency": "Parallel write tasks of the ingest job.",
    # Training: how to run.
    "--steps": "Optimiser steps.",
    "--epochs": "Passes over the training examples (instead of --steps).",
    "--train-batch-size": "Examples per optimiser step, over all workers.",
    "--grad-accum": "Micro-batches per worker and optimiser step.",
    "--lr": "The peak learning rate.",
    "--warmup-ratio": "The share of the steps with a rising learning rate.",
    "--scheduler": "The learning-rate schedule (a transformers scheduler name).",
    "--precision": "Training precision (autocast) of the trainers and the training benchmark.",
    "--seed": "The seed of the random choices (data order, masks, sampling).",
    "--checkpoint-every": "Steps between training checkpoints.",
    "--log-every": "Steps between training progress lines.",
    "--storage": "Where Ray Train keeps checkpoints.",
    "--name": "The training run's name under its storage folder (re-run it to resume).",
    "--gradient-checkpointing": "Recompute activations in backward (less memory).",
    # Training: what to train.
    "--encoder-mask-ratio": "RetroMAE: the encoder's masking ratio.",
    "--decoder-mask-ratio": "RetroMAE: the decoder's masking ratio.",
    "--masking": "RetroMAE and MLM: what one mask covers (whole words or tokens).",
    "--mask-ratio": "MLM: the share of the tokens masked and predicted.",
    "--dupmae": "Add DupMAE's bag-of-words loss to RetroMAE.",
    "--bow-weight": "DupMAE: weight of the bag-of-words loss.",
    "--max-blocks": "Use at most this many corpus blocks (quick runs).",
    "--pairs": "LLaRA: what a training pair is (consecutive passages or sentences).",
    "--prompt": "LLaRA: the prompt style.",
    "--self-weight": "LLaRA: weight of EBAE (predict the text itself).",
    "--next-weight": "LLaRA: weight of EBAR (predict the next text).",
    "--lm-weight": "LLaRA: weight of next-token prediction on the text.",
    "--max-pairs": "Use at most this many LLaRA pairs (quick runs).",
    "--lora": "Train LoRA adapters instead of every weight.",
    "--lora-r": "LoRA rank.",
    "--lora-alpha": "LoRA alpha.",
    "--lora-dropout": "LoRA dropout.",
    "--lora-targets": "The modules LoRA adapts (comma-separated names, or all-linear).",
    "--lora-export": "How a LoRA model is exported: merged weights or the adapter.",
    "--mine": "Mine hard negatives when no --train-file is given.",
    "--rank-start": "The first rank (1-based) hard negatives are drawn from.",
    "--rank-end": "The last rank (inclusive) hard negatives are drawn from.",
    "--num-negatives": "Hard negatives per query.",
    "--group-size": "Passages per training query: one positive and group size - 1 negatives.",
    "--temperature": "The contrastive loss's softmax temperature.",
    "--cross-device": "Share negatives across training workers.",
    "--query-max-length": "Tokens per query in training.",
    "--passage-max-length": "Tokens per passage in training.",
    "--matryoshka-dims": "Matryoshka: the dimensions the fine-tuning loss is summed over (comma-separated).",
    "--finetune-steps": "Steps of each fine-tune a benchmark trains (0: none).",
    "--train-collection": "The BEIR folder whose train split a benchmark's fine-tunes learn from.",
    # Pipelines and experiments.
    "--list": "Print the runs and run nothing.",
    "--only": "Run only the runs whose label matches this glob (repeatable); report the others when finished.",
    "--report-only": "Run nothing: report the runs finished so far (their manifests and the results file).",
    "--examples": "Example queries to show.",
    # Benchmarks.
    "--method": "The trainer a training benchmark times.",
    "--warmup": "Untimed steps before the timed ones.",
    "--skip-ray": "Leave out a benchmark's Ray run.",
    "--skip-opensearch": "Leave out a benchmark's OpenSearch runs.",
    "--runtime-variants": "Also measure the ONNX Runtime (and other runtime) variants.",
    "--num-queries": "Queries per ANN measurement.",
    "--scale-hnsw": "HNSW graphs built at the ANN scale point, M:efConstruction (repeatable).",
    "--scale": "Vectors of the ANN scale point (bench ann's synthetic one: 0 for none).",
    "--scale-vectors": "A scale point written by `bench scale-point` (vectors.npy), swept instead of the "
                       "synthetic one.",
    "--kind": "What the scale point embeds: passages, sentences, queries (repeatable).",
    "--mixture-clusters": "Groups (k-means) of the scale point's generative model; 0: one per 40 real vectors.",
    "--mixture-rank": "Principal directions per group of the scale point's generative model.",
    "--weight": "Dense weights of the hybrid grid (repeatable).",
    "--concurrency": "Client counts of the serving benchmark (comma-separated).",
    "--requests": "Requests of a serving benchmark's load (per concurrency level where it has several).",
    "--clients": "Concurrent clients of a benchmark's query load.",
    "--soak": "Requests of the serving benchmark's soak at the highest level (0: none).",
    "--part": "Benchmark report parts to include (repeatable).",
    "--rerun": "Benchmark report parts to run again even if their results exist (repeatable).",
    "--quality-threshold": "Flag quality drops larger than this (absolute).",
    "--speed-threshold": "Flag speed losses larger than this fraction.",
    "--all": "Also list the figures that did not change.",
    # The local OpenSearch node.
    "--version": "The OpenSearch version.",
    "--heap": "The JVM heap of the local OpenSearch node.",
    "--with-ml": "Add ml-commons and neural-search to the local OpenSearch node.",
    "--nodes": "The nodes of the local OpenSearch cluster (started, stopped or measured).",
    "--secure": "The local OpenSearch with its security plugin on (TLS, generated users and passwords).",
    "--setting": "An extra opensearch.yml KEY=VALUE (repeatable).",
    "--plugin": "An OpenSearch plugin to install (repeatable).",
    "--cache-dir": "The cache root.",
    "--run-dir": "The local OpenSearch node's config, data and logs folder.",
}


@dataclass(frozen=True)
class Use:
    """One option of one command, as Typer built it."""

    command: str
    names: tuple[str, ...]  # its own names (long first), negatives included
    value: str  # flag, integer, number, text, or "one of a | b"
    repeatable: bool
    hidden: bool
    help: str


@dataclass(frozen=True)
class OldSpelling:
    """A deprecated spelling of an option in one command."""

    command: str
    name: str
    option: str  # what to write instead (the new name, and a value for an old bare flag)
    target: str  # the option it sets


def _app_command() -> Any:
    return typer.main.get_command(app)


def commands(root: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """Every command of the app (groups too: a group's own options belong to it), with its words."""
    root = root if root is not None else _app_command()
    if path:
        yield " ".join(path), root
    for name, sub in sorted(getattr(root, "commands", {}).items()):
        yield from commands(sub, (*path, name))


def _value(annotation: Any) -> tuple[str, bool]:
    repeatable = typing.get_origin(annotation) is list
    base = typing.get_args(annotation)[0] if repeatable else annotation
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return "one of " + " \\| ".join(str(m.value) for m in base), repeatable
    if typing.get_origin(base) is typing.Literal:
        return "one of " + " \\| ".join(str(v) for v in typing.get_args(base)), repeatable
    kinds = {bool: "flag", int: "integer", float: "number", str: "text", Path: "text"}
    return kinds.get(base, getattr(base, "__name__", str(base))), repeatable


def uses(root: Any = None) -> list[Use]:
    """Every option of every command (``--help`` left out)."""
    out = []
    for command, cmd in commands(root):
        for param in cmd.params:
            if type(param).__name__ != "TyperOption" or "--help" in param.opts:
                continue
            names = (*sorted(param.opts, key=lambda n: (not n.startswith("--"), n)), *param.secondary_opts)
            value, repeatable = _value(param.type_descriptor.annotation)
            out.append(Use(command, names, value, repeatable, bool(param.hidden), param.help or ""))
    return out


def old_spellings(root: Any = None) -> list[OldSpelling]:
    """Every deprecated spelling, from the commands' own alias tables
    (:func:`retrosearch.core.cli_options.accept_deprecated`)."""
    out = []
    for command, cmd in commands(root):
        for alias in getattr(cmd.callback, "deprecated_aliases", {}).values():
            out.append(OldSpelling(command, alias.alias.name, alias.instead, alias.option))
    return out


def primary(use: Use) -> str:
    """The name a row of the table is under: the option's first long name."""
    return use.names[0]


def _value_of(group: list[Use]) -> str:
    """The kind of value of one option name; a choice lists every command's choices."""
    if not group[0].value.startswith("one of "):
        return group[0].value
    choices = [c for use in group for c in use.value.removeprefix("one of ").split(" \\| ")]
    return "one of " + " \\| ".join(dict.fromkeys(choices))


def _grouped(spellings: list[OldSpelling]) -> list[tuple[tuple[str, str], str]]:
    """(old name, what to write instead) -> the commands that take it, as Markdown."""
    by: dict[tuple[str, str], set[str]] = {}
    for spelling in spellings:
        by.setdefault((spelling.name, spelling.option), set()).add(spelling.command)
    order = sorted(by, key=lambda k: (k[0].lstrip("-"), k))
    return [(key, ", ".join(f"`{c}`" for c in sorted(by[key]))) for key in order]


def render(root: Any = None) -> str:
    """The Markdown page: one row per option name, then the renamed spellings."""
    root = root if root is not None else _app_command()
    rows: dict[str, list[Use]] = {}
    for use in uses(root):
        if not use.hidden:
            rows.setdefault(primary(use), []).append(use)
    old: dict[str, list[OldSpelling]] = {}
    for spelling in old_spellings(root):
        old.setdefault(spelling.target, []).append(spelling)
    lines = [
        "# Command-line options",
        "",
        "<!-- Generated by `python -m retrosearch.cli_vocabulary` from the commands and the meanings in",
        "     retrosearch/cli_vocabulary.py; tests/test_cli_vocabulary.py checks it. Do not edit by hand.",
        "-->",
        "",
        "Every option of every `retrosearch` command, with its one meaning: an option name means the same",
        "thing in every command that takes it. `retrosearch COMMAND --help` gives each command's own",
        "wording and defaults. Values: *flag* (no value; `--x/--no-x` pairs set it either way), *integer*,",
        "*number*, *text* (a word, URL or path), or *one of* a fixed list (a wrong value is refused with",
        "the list); *repeatable* options may be given several times.",
        "",
        "Old spellings still work for one release: they are hidden from `--help` and print one",
        "`warning: OLD is deprecated ...; use NEW` line on stderr.",
        "",
        "| Option | Value | Meaning | Commands | Old spellings |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(rows, key=lambda n: n.lstrip("-").lower()):
        group = rows[name]
        names = sorted({n for use in group for n in use.names},
                       key=lambda n: (n != name, n.startswith("--no-"), n))
        repeatable = sorted(u.command for u in group if u.repeatable)
        some = f" (repeatable in {', '.join(f'`{c}`' for c in repeatable)})"
        value = _value_of(group) + ("" if not repeatable else " (repeatable)" if len(repeatable) == len(group)
                                    else some)
        where = ", ".join(f"`{c}`" for c in sorted({u.command for u in group}))
        olds = "; ".join(f"`{n}`{'' if o == name else f' = `{o}`'} ({where_old})"
                         for (n, o), where_old in _grouped(old.get(name, [])))
        meaning = MEANINGS.get(name, "**(no meaning written)**")
        lines.append(f"| {', '.join(f'`{n}`' for n in names)} | {value} | {meaning} | {where} | {olds} |")
    lines += ["", "## Renamed options", "", "| Old spelling | Use instead | Commands |", "|---|---|---|"]
    for (name, option), where in _grouped(old_spellings(root)):
        lines.append(f"| `{name}` | `{option}` | {where} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the page, or with ``--check`` say whether it is current (exit 1 when not)."""
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        if not PAGE.is_file() or PAGE.read_text() != text:
            print(f"{PAGE} is out of date: run python -m retrosearch.cli_vocabulary", file=sys.stderr)
            return 1
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
