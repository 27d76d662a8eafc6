"""Benchmarks on a registry, the way losses are: one file per benchmark.

A new file here with a ``@register_benchmark("name")`` :class:`Benchmark` subclass, and a
``conf/eval/<name>.yaml`` that sets ``benchmark: name``, is all a new benchmark takes (or the
``distill.benchmarks`` entry-point group, from another package).
"""

from distill.evaluation.benchmarks.base import (
    BENCHMARKS,
    Benchmark,
    benchmark_for,
    check_limit,
    get_benchmark,
    load_problems,
    register_benchmark,
)
from distill.evaluation.benchmarks.humaneval import load_humaneval
from distill.evaluation.benchmarks.mbpp import entry_point, mbpp_records
from distill.evaluation.problem import Problem
from distill.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "Problem",
    "benchmark_for",
    "check_limit",
    "entry_point",
    "get_benchmark",
    "load_humaneval",
    "load_problems",
    "mbpp_records",
    "register_benchmark",
]
