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
from distill.evaluation.benchmarks.evalplus import EvalPlusBenchmark, Oracle, poly
from distill.evaluation.benchmarks.humaneval import (
    STOP_SEQUENCES,
    humaneval_chat_message,
    humaneval_completion,
)
from distill.evaluation.code_text import chat_prompt
from distill.evaluation.problem import Problem


def find_zero_oracle(out: Any, exp: Any, inp: Sequence[Any], atol: float, exact: bool) -> bool:
    """HumanEval/32 asks for any zero of the polynomial: the output must be one."""
    return abs(poly(*inp, out)) <= atol


@register_benchmark("humaneval_plus")
class HumanEvalPlus(EvalPlusBenchmark):
    title = "HumanEval+"
    file = "HumanEvalPlus-v0.1.10.jsonl.gz"

    def prompt(self, problem: Problem, prompt_format: str, tokenizer: Any) -> str:
        if prompt_format == "completion":
            return problem.prompt
        return chat_prompt(tokenizer, humaneval_chat_message(problem.prompt))

    def stop_sequences(self, prompt_format: str) -> tuple[str, ...]:
        return STOP_SEQUENCES if prompt_format == "completion" else ()

    def postprocess(self, raw: str, problem: Problem, prompt_format: str) -> str:
        return humaneval_completion(raw, problem.entry_point, prompt_format)

    def oracle(self, problem: Problem) -> Oracle | None:
        return find_zero_oracle if problem.entry_point == "find_zero" else None

    def oracle_decides(self, problem: Problem) -> bool:
        return problem.entry_point == "find_zero"
