"""A real single-node OpenSearch with the k-NN plugin, assembled from Maven Central (see `server`)."""
