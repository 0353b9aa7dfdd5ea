"""Benchmarks: ``python -m bench`` (see BENCHMARKS.md once they land)."""
