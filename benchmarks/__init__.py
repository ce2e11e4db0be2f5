"""Benchmarks of attemptctl against PEFT prompt tuning; run ``python benchmarks/bench.py``."""
