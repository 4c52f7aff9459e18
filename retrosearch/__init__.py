"""RetroSearch: dense retrieval for OpenSearch and FAISS."""
