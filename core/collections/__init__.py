"""Reading text collections: BEIR folders and plain JSONL / Parquet corpora, validated."""

from retrosearch.core.collections.beir import BeirCollection, read_qrels
from retrosearch.core.collections.errors import CollectionError
from retrosearch.core.collections.records import Document, FieldMap, Query
from retrosearch.core.collections.readers import read_corpus, read_queries

__all__ = [
    "BeirCollection",
    "CollectionError",
    "Document",
    "FieldMap",
    "Query",
    "read_corpus",
    "read_qrels",
    "read_queries",
]
