"""Benchmarks (commands, not tests): encoder and retrieval throughput, HTTP serving against in-process."""
