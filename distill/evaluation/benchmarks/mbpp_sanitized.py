"""MBPP's sanitized (hand-verified) test split: 257 of task ids 11-510, from
``sanitized-mbpp.json``, with the sanitized problem texts and asserts (``test_imports`` run before
the asserts). Prompts, stop sequences and programs are :mod:`~distill.evaluation.benchmarks.mbpp`'s.
"""

from __future__ import annotations

from typing import Any

from distill.evaluation.benchmarks.base import register_benchmark
from distill.evaluation.benchmarks.mbpp import MBPP


@register_benchmark("mbpp_sanitized")
class MBPPSanitized(MBPP):
    title = "MBPP sanitized"
    file = "sanitized-mbpp.json"
    hub_config = "sanitized"
    text_field = "prompt"

    def test_setup(self, record: dict[str, Any]) -> str:
        return "\n".join(record["test_imports"])
