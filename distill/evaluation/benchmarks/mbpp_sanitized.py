"""MBPP's sanitized (hand-verified) test split: 257 of task ids 11-510, from
``sanitized-mbpp.json``, with the sanitized problem texts and asserts (``test_imports`` run before
the asserts). Prompts, stop sequences and programs are :mod:`~distill.evaluation.benchmarks.mbpp`'s.
"""

from __future__ import annotations

from typing import Any

from distill.evaluation.benchmarks.base import register_benchmark
from distill.evaluation.benchmarks.mbpp import MBPP, entry_point
from distill.evaluation.problem import Problem


@register_benchmark("mbpp_sanitized")
class MBPPSanitized(MBPP):
    title = "MBPP sanitized"
    file = "sanitized-mbpp.json"
    hub_config = "sanitized"

    def problem(self, record: dict[str, Any]) -> Problem:
        return Problem(
            task_id=f"Mbpp/{record['task_id']}",
            prompt=record["prompt"],
            test="\n".join(t.strip() for t in record["test_list"]),
            entry_point=entry_point(record["code"], record["test_list"]),
            canonical_solution=record["code"],
            benchmark=self.name,
            test_setup="\n".join(record["test_imports"]),
        )
