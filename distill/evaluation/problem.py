"""One benchmark problem, whatever its benchmark: what the model is asked and how it is tested."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One benchmark problem.

    Attributes:
        task_id: Benchmark identifier, e.g. ``"HumanEval/0"`` or ``"Mbpp/11"`` (EvalPlus's form).
        prompt: HumanEval: imports, signature and docstring, which the model continues.
            MBPP: the problem text in English.
        test: HumanEval: source defining ``check(candidate)``. MBPP: the assert lines, one a line.
        entry_point: Name of the function under test.
        canonical_solution: HumanEval: the reference body (``prompt + body`` passes). MBPP: the
            reference program.
        benchmark: The registered benchmark's name; it decides how a prompt is built and how the
            sandbox assembles a program (:mod:`distill.evaluation.benchmarks`).
        test_setup: MBPP only: code run after the solution and before the asserts (the full set's
            ``test_setup_code``, the sanitized set's ``test_imports``).
        extra: What only its benchmark reads (EvalPlus's inputs and tolerance, say).
    """

    task_id: str
    prompt: str
    test: str
    entry_point: str
    canonical_solution: str
    benchmark: str = "humaneval"
    test_setup: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
