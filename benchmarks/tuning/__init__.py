"""The tuning benchmark: ``python -m benchmarks.tuning.run``."""
