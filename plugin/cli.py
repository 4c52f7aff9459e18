"""``retrosearch index`` and ``retrosearch search``: build a FAISS index from a corpus, query it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from retrosearch.plugin import cli_options as opt
from retrosearch.plugin.collections import BeirCollection, CollectionError, FieldMap, read_corpus
from retrosearch.plugin.encoder import Encoder, ModelNotFoundError
from retrosearch.plugin.index import IndexMismatchError, create_index, load_index

console = Console()


def _corpus_path(collection: Path | None, corpus: Path | None) -> Path:
    if (collection is None) == (corpus is None):
        raise opt.fail("give exactly one of --collection (a BEIR folder) or --corpus (a JSONL/Parquet file)")
    return corpus if corpus is not None else collection / "corpus.jsonl"


def index(
    out: Annotated[Path, typer.Option(help="Folder to write the index to.")],
    collection: Annotated[Optional[Path], typer.Option(help="BEIR collection folder.")] = None,
    corpus: Annotated[Optional[Path], typer.Option(help="JSONL or Parquet corpus file.")] = None,
    id_field: Annotated[str, typer.Option(help="Field holding the document id.")] = "_id",
    title_field: Annotated[str, typer.Option(help="Field holding the title ('' for none).")] = "title",
    text_field: Annotated[str, typer.Option(help="Field holding the text.")] = "text",
    model: opt.Model = "minilm",
    backend: opt.Backend = "faiss-flat",
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
    batch_size: opt.BatchSize = 64,
    threads: opt.Threads = None,
    pooling: opt.PoolingOpt = None,
    max_length: opt.MaxLength = None,
    hnsw_m: opt.HnswM = 32,
    ef_construction: opt.EfConstruction = 200,
    nlist: opt.Nlist = None,
    pq_m: opt.PqM = None,
    config: opt.ConfigFile = None,
    quiet: opt.Quiet = False,
) -> None:
    """Embed a corpus and save a FAISS index (vectors, id mapping and the model it was built with)."""
    settings = opt.build_settings(
        config, model=model, device=device, dtype=dtype, batch_size=batch_size, threads=threads, pooling=pooling,
        max_length=max_length, show_progress=not quiet, hnsw_m=hnsw_m, hnsw_ef_construction=ef_construction,
        ivf_nlist=nlist, pq_m=pq_m,
    )
    path = _corpus_path(collection, corpus)
    fields = FieldMap(id=id_field, title=title_field or None, text=text_field)
    try:
        docs = list(read_corpus(path, fields))
        encoder = Encoder.load(settings.encoder)
    except (CollectionError, ModelNotFoundError) as exc:
        raise opt.fail(str(exc)) from None
    vectors = encoder.encode_documents(docs, desc=f"embedding {path.name}")
    built = create_index(backend, encoder.index_meta(), settings)
    built.add([d.id for d in docs], vectors)
    built.save(out)
    stats = encoder.stats.as_dict()
    console.print(
        f"indexed {built.count()} documents from {path} into {out} ({built.meta.backend}, dim {encoder.dim}); "
        f"{stats['texts_per_s']} docs/s, padding {stats['padding_ratio']:.1%}"
    )


def search(
    queries: Annotated[list[str], typer.Argument(help="One or more query texts.")],
    index_dir: Annotated[Path, typer.Option("--index", help="Index folder written by 'retrosearch index'.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Defaults to the index's model.")] = None,
    k: Annotated[int, typer.Option("-k", help="Hits per query.")] = 10,
    collection: Annotated[Optional[Path], typer.Option(help="BEIR folder to show titles from.")] = None,
    device: opt.Device = "auto",
    ef_search: opt.EfSearch = 256,
    nprobe: opt.Nprobe = 16,
) -> None:
    """Search a saved index; prints id, similarity and (with --collection) the title of each hit."""
    settings = opt.build_settings(device=device, hnsw_ef_search=ef_search, ivf_nprobe=nprobe, show_progress=False)
    try:
        loaded = load_index(index_dir, settings)
        settings.encoder.model = model or loaded.meta.model_name
        encoder = Encoder.load(settings.encoder)
        loaded.check_query_encoder(encoder.index_meta())
    except (FileNotFoundError, ModelNotFoundError, IndexMismatchError) as exc:
        raise opt.fail(str(exc)) from None
    titles = {d.id: d.title or d.text[:80] for d in BeirCollection(collection).corpus} if collection else {}
    hits = loaded.search(encoder.encode_queries(queries), k)
    for query, ids, scores in zip(queries, hits.ids, hits.scores):
        table = Table(title=query, title_justify="left")
        for column in ("rank", "id", "score", *(["title"] if titles else [])):
            table.add_column(column)
        for rank, (doc_id, score) in enumerate(zip(ids, scores), start=1):
            table.add_row(str(rank), doc_id, f"{score:.4f}", *([titles.get(doc_id, "")] if titles else []))
        console.print(table)


def register(app: typer.Typer) -> None:
    """Add this layer's commands to the ``retrosearch`` app."""
    app.command()(index)
    app.command()(search)
