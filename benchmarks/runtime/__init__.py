"""Runtime benchmarks: the daemon's added latency, dynamic batching, a tutorial-style baseline, memory, start time."""
