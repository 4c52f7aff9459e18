"""The query service: an HTTP API that embeds queries with the index's encoder and searches it.

``engine`` (encoder + index, no HTTP), ``batcher`` (concurrent requests into one forward pass),
``schemas`` (request and response bodies), ``metrics`` (Prometheus), ``app`` (the FastAPI app),
``ray_app`` (the same app on Ray Serve) and ``cli`` (``retrosearch serve``).
"""
