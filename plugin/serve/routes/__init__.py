"""The query API's routes, one router per concern: probes and description, embeddings, search.

Each route takes the shared :class:`~retrosearch.plugin.serve.state.ServiceState` as a FastAPI
dependency (``Depends(service)``); :func:`retrosearch.plugin.serve.app.create_app` includes them.
"""
