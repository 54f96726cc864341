"""Judging reconstructions: metrics against ground truth, figures, and the demo's summary.

Used by the demo, the benchmarks and the tests; nothing in acquisition or reconstruction imports it.
"""
