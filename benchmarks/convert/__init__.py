"""The convert benchmark: ``python -m benchmarks.convert.run``."""
