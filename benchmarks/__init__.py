"""nstm-acquire benchmark suite: ``python -m benchmarks.run`` writes ``docs/benchmarks.md``."""
