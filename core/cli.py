"""``retrosearch index``, ``search`` and ``eval``: the library's own jobs as commands (build an index from a
corpus, query it, score a collection's judged queries)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from retrosearch.core import cli_options as opt
from retrosearch.core.collections import BeirCollection, FieldMap, read_corpus
from retrosearch.core.config import Settings
from retrosearch.core.index import SearchHits, create_index, load_index, mode_needs_vectors, open_index
from retrosearch.core.retrieval.report import print_result, write_json

console = opt.result_console()


def _corpus_path(collection: Path | None, corpus: Path | None) -> Path:
    if (collection is None) == (corpus is None):
        raise opt.fail("give exactly one of --collection (a BEIR folder) or --corpus (a JSONL/Parquet file)")
    return corpus if corpus is not None else collection / "corpus.jsonl"


@opt.with_settings(opt.ENCODER, opt.ENCODER_SPEC, opt.FAISS_BUILD, opt.OPENSEARCH, opt.OPENSEARCH_BUILD)
def index(
    out: Annotated[Optional[Path], typer.Option(help="Folder to write a FAISS index to.")] = None,
    collection: Annotated[Optional[Path], typer.Option(help="BEIR collection folder.")] = None,
    corpus: Annotated[Optional[Path], typer.Option(help="JSONL or Parquet corpus file.")] = None,
    id_field: Annotated[str, typer.Option(help="Field holding the document id.")] = "_id",
    title_field: Annotated[str, typer.Option(help="Field holding the title ('' for none).")] = "title",
    text_field: Annotated[str, typer.Option(help="Field holding the text.")] = "text",
    backend: opt.Backend = "faiss-flat",
    quiet: opt.Quiet = False,
    settings: Settings = None,
) -> None:
    """Embed a corpus into a FAISS index folder (--out) or an OpenSearch k-NN index (--index-name).

    Loading is idempotent by document id: indexing the same corpus again changes nothing.
    """
    # lazy: keeps torch, faiss, transformers out of CLI start-up
    from retrosearch.core.encoder import Encoder
    from retrosearch.core.retrieval import fill_index

    if quiet:
        settings.encoder.show_progress = False
    opensearch = backend == "opensearch"
    if opensearch and not settings.opensearch.index:
        raise opt.fail("--backend opensearch needs --index-name")
    if not opensearch and out is None:
        raise opt.fail(f"--backend {backend} needs --out (the index folder)")
    path = _corpus_path(collection, corpus)
    fields = FieldMap(id=id_field, title=title_field or None, text=text_field)
    with opt.user_errors():
        docs = list(read_corpus(path, fields))
        encoder = Encoder.load(settings.encoder)
        built = create_index(backend, encoder.index_meta(), settings)
    vectors = encoder.encode_documents(docs, desc=f"embedding {path.name}")
    stored = [{"title": d.title, "text": d.text} for d in docs] if opensearch else None
    with opt.user_errors():  # a refused write or documents that failed by id: one line, no traceback
        written, _ = fill_index(built, [d.id for d in docs], vectors, stored)
    where = f"OpenSearch index {settings.opensearch.index!r}" if opensearch else str(out)
    if not opensearch:
        built.save(out)
    stats = encoder.stats.as_dict()
    console.print(
        f"indexed {built.count()} documents ({written} written) from {path} into {where} ({built.meta.backend}, "
        f"dim {encoder.dim}); {stats['texts_per_s']} docs/s, padding {stats['padding_ratio']:.1%}"
    )
    footprint = built.footprint()
    if footprint is not None:
        console.print(f"vectors: {footprint.describe()}")


def _parse_filter(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise opt.fail(f"--filter is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise opt.fail("--filter must be a JSON object (an OpenSearch query clause)")
    return parsed


def hits_as_json(queries: list[str], hits: SearchHits) -> list[dict]:
    """``[{"query": q, "hits": [{"id", "score", "rank"[, "fields"]}]}]``: what ``search --json-out -`` prints."""
    out = []
    for number, (query, ids, scores) in enumerate(zip(queries, hits.ids, hits.scores)):
        rows = []
        for rank, (doc_id, score) in enumerate(zip(ids, scores), start=1):
            row = {"id": doc_id, "score": score, "rank": rank}
            if hits.fields is not None:
                row["fields"] = hits.fields[number][rank - 1]
            rows.append(row)
        out.append({"query": query, "hits": rows})
    return out


@opt.with_settings(opt.ENCODER_RUNTIME, opt.INDEX_SEARCH, opt.OPENSEARCH, opt.HYBRID)
def search(
    queries: Annotated[list[str], typer.Argument(help="One or more query texts.")],
    index_dir: Annotated[Optional[Path], typer.Option("--index", help="FAISS index folder.")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="Encoder checkpoint folder or packaged name.", show_default="the index's model")] = None,
    k: Annotated[int, typer.Option("-k", help="Hits per query.")] = 10,
    collection: Annotated[Optional[Path], typer.Option(help="BEIR folder to show titles from.")] = None,
    filter_json: Annotated[
        Optional[str],
        typer.Option("--filter", help='OpenSearch filter clause as JSON, e.g. \'{"term": {"lang": "en"}}\' (FAISS cannot filter).'),
    ] = None,
    field: Annotated[
        Optional[list[str]], typer.Option("--field", help="Stored field to return per hit (repeatable; OpenSearch).")
    ] = None,
    json_out: opt.json_out_option("Write the hits as JSON to this file ('-': to stdout) instead of tables.",
                                  flag_was=True) = None,
    mode: opt.SearchModeOpt = "dense",
    settings: Settings = None,
) -> None:
    """Search a FAISS folder (--index) or an OpenSearch index (--index-name); prints id, score, title.

    --json-out - prints [{"query": q, "hits": [{"id", "score", "rank"}]}] instead (each hit with "fields"
    when --field is given). --filter and --field need OpenSearch: FAISS refuses a filter and stores
    no fields (each hit's fields are empty). Scores are the encoder's similarity in dense and
    neural mode, BM25 in bm25 mode, the normalised combination in hybrid mode.
    """
    from retrosearch.core.encoder import Encoder  # lazy: keeps torch, transformers out of CLI start-up

    settings.encoder.show_progress = False
    if (index_dir is None) == (settings.opensearch.index is None):
        raise opt.fail("give exactly one of --index (a FAISS folder) or --index-name (an OpenSearch index)")
    filter_clause, fields = _parse_filter(filter_json), list(field or [])
    with opt.user_errors():
        loaded = open_index(settings, index_dir)
        vectors = None
        if mode_needs_vectors(mode):
            # Imported once the index answered: a wrong URL or password is reported without loading torch.
            # lazy: keeps torch, transformers out of CLI start-up
            from retrosearch.core.encoder import Encoder

            settings.encoder.model = model or loaded.meta.model_name
            encoder = Encoder.load(settings.encoder, workload="queries")
            loaded.check_query_encoder(encoder.index_meta())
            vectors = encoder.encode_queries(queries)
        hits = loaded.search_texts(queries, vectors, k, mode=mode, filter=filter_clause, fields=fields or None)
    if json_out:
        write_json(json_out, hits_as_json(queries, hits))
        return
    titles = {d.id: d.title or d.text[:80] for d in BeirCollection(collection).corpus} if collection else {}
    for number, (query, ids, scores) in enumerate(zip(queries, hits.ids, hits.scores)):
        table = Table(title=query, title_justify="left")
        for column in ("rank", "id", "score", *(["title"] if titles else []), *fields):
            table.add_column(column)
        for rank, (doc_id, score) in enumerate(zip(ids, scores), start=1):
            stored = hits.fields[number][rank - 1] if hits.fields is not None else {}
            table.add_row(
                str(rank), doc_id, f"{score:.4f}", *([titles.get(doc_id, "")] if titles else []),
                *(_cell(stored.get(name)) for name in fields),
            )
        console.print(table)


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:79] + "…"


@opt.with_settings(opt.ENCODER, opt.ENCODER_SPEC, opt.FAISS_BUILD, opt.INDEX_SEARCH, opt.OPENSEARCH,
                   opt.OPENSEARCH_BUILD)
def eval_command(
    collection: Annotated[Path, typer.Option(help="BEIR collection folder.")],
    split: Annotated[str, typer.Option(help="qrels split to evaluate.")] = "test",
    backend: opt.Backend = "faiss-flat",
    index_dir: Annotated[Optional[Path], typer.Option("--index", help="Search this saved FAISS index instead of building one.")] = None,
    top_k: Annotated[int, typer.Option(help="Hits retrieved per query (Recall@100 needs >= 100).")] = 100,
    json_out: opt.JsonOut = None,
    quiet: opt.Quiet = False,
    settings: Settings = None,
) -> None:
    """NDCG@10, MRR@10, Recall@100 and MAP of MODEL on a collection, through a search backend.

    With --backend opensearch, an existing --index-name is searched as it is; otherwise it is built.
    """
    # lazy: keeps torch, faiss, transformers out of CLI start-up
    from retrosearch.core.encoder import Encoder
    from retrosearch.core.retrieval import evaluate

    if quiet:
        settings.encoder.show_progress = False
    model = settings.encoder.model
    with opt.user_errors():
        beir = BeirCollection(collection)
        beir.qrels(split)
        encoder = Encoder.load(settings.encoder)
        index = None
        if index_dir:
            index = load_index(index_dir, settings)
        elif backend == "opensearch" and settings.opensearch.index and _opensearch_index_exists(settings):
            index = load_index(None, settings, backend="opensearch")
        result = evaluate(beir, encoder, backend, split=split, top_k=top_k, settings=settings, index=index)
    if opt.to_stdout(json_out):
        write_json(json_out, result.as_dict())
        return
    print_result(result, f"{beir.name}/{split} {model} {result.config['backend']}")
    if json_out:
        write_json(json_out, result.as_dict())
        typer.echo(f"wrote {json_out}")


def _opensearch_index_exists(settings) -> bool:
    from retrosearch.core.opensearch.client import connect  # lazy: keeps opensearchpy out of CLI start-up

    return bool(connect(settings.opensearch).indices.exists(index=settings.opensearch.index))


def register(app: typer.Typer) -> None:
    """Add this layer's commands to the ``retrosearch`` app."""
    app.command()(index)
    app.command()(search)
    app.command("eval")(eval_command)
