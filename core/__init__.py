"""The shared core: what every other layer builds on, importing nothing above it.

The one settings model (``config``) and the CLI options derived from it (``cli_options``), the
one-line user errors (``errors``), the encoder runtime (``encoder/``: text to vectors, torch or
ONNX Runtime), collection readers (``collections/``), the index interface with its FAISS and
OpenSearch backends (``index/``, ``vector_space``), the OpenSearch client (``opensearch/``), and
the retrieval jobs every layer shares: embed a corpus, build an index, evaluate a run
(``retrieval/``), with the ``index``, ``search`` and ``eval`` commands (``cli``).
"""
