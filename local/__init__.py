"""Development and test clusters on one machine, not part of a deployment.

A local OpenSearch node assembled from Maven Central (``opensearch/``: ``retrosearch opensearch
start|stop|status|assemble``), a local multi-node Ray cluster of separate ``ray start`` processes
(``ray_cluster``, driven by ``scripts/ray-cluster.sh``) and the staging of the project's code for
``ray job submit`` (``ray_job``).
"""
