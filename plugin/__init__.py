"""The query side: what answers queries, and what plugs it into OpenSearch.

``serve/`` is the query service (engine, batcher, FastAPI app, metrics, the Ray Serve application
and ``retrosearch serve``); ``opensearch/`` makes a running service an ml-commons remote model of
OpenSearch (``retrosearch opensearch connect``), so its ``neural`` and ``hybrid`` queries and ingest
pipelines embed text with our encoder. The encoder, collections and index backends it uses live in
``core/``.
"""
