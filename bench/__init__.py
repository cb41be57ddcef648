"""Benchmarks, soak and fault injection (`make bench`, `make soak`, `make chaos`).

Run the modules from the repository root: `python -m bench.side_by_side --help`.
"""
