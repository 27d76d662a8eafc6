"""Benchmarks, student generation, sandboxed execution, pass@k and reports."""
