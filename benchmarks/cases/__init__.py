"""Benchmark cases: each module has ``run(quick: bool) -> None`` that saves its result."""
