"""``retrosearch quickstart``: the embedded default end to end, on one machine, no server.

Embeds a BEIR collection with the packaged model into a FAISS index (kept in the cache so a second
run only searches), evaluates it and shows a few queries with their top hits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from retrosearch.core import cli_options as opt
from retrosearch.core.collections import BeirCollection
from retrosearch.core.config import Settings
from retrosearch.core.index import load_index
from retrosearch.core.retrieval.report import print_result, write_json

console = opt.result_console()


def default_collection() -> Path:
    """``$RETROSEARCH_DATA/scifact``, else the shared data folder beside the checkout."""
    data = os.environ.get("RETROSEARCH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(data) / "scifact"


@opt.with_settings(opt.ENCODER)
def quickstart(
    collection: Annotated[Optional[Path], typer.Option(help="BEIR collection folder.", show_default="scifact from the shared data")] = None,
    split: Annotated[str, typer.Option(help="qrels split to evaluate.")] = "test",
    examples: Annotated[int, typer.Option(help="Example queries to show.")] = 3,
    json_out: opt.JsonOut = None,
    settings: Settings = None,
) -> None:
    """Embed a collection into FAISS, evaluate it and show example queries with their top hits."""
    # lazy: keeps torch, faiss, transformers out of CLI start-up
    from retrosearch.core.encoder import Encoder
    from retrosearch.core.retrieval import build_index, cached_index_dir, evaluate

    beir = BeirCollection(collection or default_collection())
    model = settings.encoder.model
    encoder = Encoder.load(settings.encoder)
    index_dir = cached_index_dir(beir, encoder.fingerprint)
    if (index_dir / "meta.json").exists():
        console.print(f"reusing the index in {index_dir}")
        index = load_index(index_dir, settings, backend="faiss-flat")
    else:
        console.print(f"embedding {beir.name} ({len(beir.corpus)} documents) with {model} on {encoder.device}")
        index, _ = build_index(beir, encoder, "faiss-flat", settings)
        index.save(index_dir)
        console.print(f"saved the index to {index_dir}")
    result = evaluate(beir, encoder, "faiss-flat", split=split, settings=settings, index=index)
    print_result(result, f"{beir.name}/{split} {model} faiss-flat")
    qrels = beir.qrels(split)
    docs = {d.id: d for d in beir.corpus}
    assert result.hits is not None
    for qid, ids, scores in list(zip(result.query_ids, result.hits.ids, result.hits.scores))[:examples]:
        console.print(f"\n[bold]query {qid}:[/bold] {beir.queries[qid].text}")
        for rank, (doc_id, score) in enumerate(zip(ids[:3], scores[:3]), start=1):
            mark = "[green]relevant[/green]" if qrels[qid].get(doc_id, 0) > 0 else "        "
            title = docs[doc_id].title or docs[doc_id].text[:90]
            console.print(f"  {rank}. {score:.3f} {mark} [{doc_id}] {title[:100]}")
    if json_out:
        write_json(json_out, result.as_dict())


def register(app: typer.Typer) -> None:
    """Add the quickstart command."""
    app.command()(quickstart)
