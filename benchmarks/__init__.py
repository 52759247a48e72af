"""Benchmarks anyone can rerun: `python -m benchmarks.train_throughput|inference|fidelity --help` (see BENCHMARKS.md)."""
