"""Ray Data ingestion: read a collection, embed it on CPU or GPU workers, load it into a sink, resumably."""
