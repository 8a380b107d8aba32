"""Reproducible measurements of edgectl. Run one with ``python -m benchmarks.<area>.run`` from the repository root."""
