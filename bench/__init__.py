"""zapgate's benchmarks: `python -m bench.<name> [--quick | --tiny] [--json]`; `make bench` runs them all.

Each one starts its own zapgate parts on a fresh database and prints its figures next to their targets
and the reference measured in the same run (see bench/common.py for the conventions).
"""
