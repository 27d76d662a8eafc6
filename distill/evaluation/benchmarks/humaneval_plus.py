"""HumanEval+ (EvalPlus, v0.1.10): HumanEval's 164 problems with about 80 times more tests.

Prompts, stop sequences and post-processing are HumanEval's (a sample is a *completion*); the
tests are EvalPlus's (:mod:`~distill.evaluation.benchmarks.evalplus`): ``base`` (the original
inputs) and ``plus`` (base and the added ones), computed from the canonical solution. The data:
``eval.data_path``, a folder holding ``HumanEvalPlus-v0.1.10.jsonl.gz``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from distill.evaluation.benchmarks.base import register_benchmark
from distill.evaluation.benchmarks.evalplus import EvalPlusBenchmark
from distill.evaluation.benchmarks.evalplus_tests import Oracle, poly
from distill.evaluation.benchmarks.humaneval import HumanEvalPrompts
from distill.evaluation.problem import Problem


def find_zero_oracle(out: Any, exp: Any, inp: Sequence[Any], atol: float, exact: bool) -> bool:
    """HumanEval/32 asks for any zero of the polynomial: the output must be one."""
    return abs(poly(*inp, out)) <= atol


@register_benchmark("humaneval_plus")
class HumanEvalPlus(HumanEvalPrompts, EvalPlusBenchmark):
    title = "HumanEval+"
    file = "HumanEvalPlus-v0.1.10.jsonl.gz"

    def oracle(self, problem: Problem) -> Oracle | None:
        return find_zero_oracle if problem.entry_point == "find_zero" else None

    def oracle_decides(self, problem: Problem) -> bool:
        return problem.entry_point == "find_zero"
