"""Benchmarks, run from the repository root: `make bench` or `python -m bench.run --quick`."""
