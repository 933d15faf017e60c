"""Benchmarks for tfa-middleware; run them with ``make bench`` (``python -m benchmarks``)."""
