"""Vector indexes: the FAISS index per scene, and the one key and build path that serving and the Ray index job share."""
