"""Benchmark of the outcomes service: `python -m bench.run` (see bench/run.py).

Quick run: `BENCH_OBSERVATIONS=5000 BENCH_SECONDS=3 python -m bench.run`.
"""
