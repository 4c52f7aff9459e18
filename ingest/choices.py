"""The ingest job's fixed choices, in a module of their own so that the command's ``--help`` lists
them without importing the job."""

from __future__ import annotations

from typing import Literal

SinkName = Literal["opensearch", "faiss", "parquet"]
OnError = Literal["fail", "skip"]
