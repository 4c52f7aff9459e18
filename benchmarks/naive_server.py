"""The baseline of ``retrosearch bench serve``: the FastAPI server people write first.

One forward pass per request, run by FastAPI's thread pool (so concurrent requests run
concurrent batch-1 forward passes on one model), then a FAISS search. Same model, index and
response shape as our service; what it lacks is batching.

    python -m retrosearch.benchmarks.naive_server --index DIR --port 8100
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import BaseModel

from retrosearch.core.config import EncoderSettings, Settings
from retrosearch.core.index import load_index
from retrosearch.core.startup import configure_process


class Query(BaseModel):
    """The request body (at module level: FastAPI resolves the annotation by name)."""

    query: str
    k: int = 10


def build_app(index_dir: str, threads: int | None = None, runtime: str = "auto"):
    """A FastAPI app with a ``/search`` route doing one encode and one search per request."""
    # lazy: keeps torch, transformers, fastapi out of importing this module
    from fastapi import FastAPI

    from retrosearch.core.encoder import Encoder

    index = load_index(index_dir, Settings())
    settings = EncoderSettings(model=index.meta.model_name, show_progress=False, threads=threads, runtime=runtime)
    encoder = Encoder.load(settings, workload="queries")
    encoder.encode_queries(["warm-up"])

    app = FastAPI()

    @app.get("/readyz")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/search")
    def search(body: Query) -> dict[str, Any]:
        hits = index.search(encoder.encode_queries([body.query]), body.k)
        return {"hits": [{"id": i, "score": s, "rank": r} for r, (i, s) in enumerate(zip(hits.ids[0], hits.scores[0]), 1)]}

    return app


def main() -> None:
    """Run the naive server under uvicorn."""
    import uvicorn  # lazy: keeps uvicorn out of importing this module

    configure_process()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--runtime", choices=("auto", "torch", "onnx"), default="auto")
    args = parser.parse_args()
    uvicorn.run(build_app(args.index, args.threads, args.runtime), host="127.0.0.1", port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
