"""The query side: encoder runtime, collections, index backends, OpenSearch, service."""
