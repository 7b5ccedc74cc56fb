"""Benchmarks: each module prints measured figures (medians of several runs)."""
