"""Benchmarks: real processes over loopback, figures written into docs/benchmarks.md."""
