"""Simulated hardware and real-component helpers for the demo, the tests and the benchmarks."""
