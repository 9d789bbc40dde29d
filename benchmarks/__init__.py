"""Benchmarks: scripts that measure and print, asserting nothing. Run them as ``python -m benchmarks.<name>``."""
