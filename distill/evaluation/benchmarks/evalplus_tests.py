"""How EvalPlus judges one sample's outputs (evalplus 0.3.1's ``unsafe_execute``, on the trusted
side): the comparison with its float tolerance, the tasks' own oracles, and the two test sets.
See :mod:`distill.evaluation.benchmarks.evalplus` for the rules and where distill differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distill.evaluation.sandbox_codec import Digest

MIN_TIME_LIMIT_S = 1.0  # evalplus.config.DEFAULT_MIN_TIME_LIMIT
TIME_LIMIT_FACTOR = 4.0  # evalplus.config.DEFAULT_GT_TIME_LIMIT_FACTOR
TASK_TIMEOUT_S = 60.0  # EVALPLUS_TIMEOUT_PER_TASK's default
PART_GRACE_S = 2.0  # evalplus waits `timeout + 1` for a process whose timeout has `+ 1`

# A task's own oracle: (output, expected, input, atol, output == expected) -> whether the output
# counts as an exact match; the tolerance check still follows, as in EvalPlus.
Oracle = Callable[[Any, Any, Sequence[Any], float, bool], bool]


def is_floats(value: Any) -> bool:
    """A float, or a non-empty list or tuple of floats (EvalPlus's test for a default atol)."""
    if isinstance(value, float):
        return True
    return (
        isinstance(value, list | tuple) and bool(value) and all(isinstance(v, float) for v in value)
    )


def output_passes(out: Any, exp: Any, atol: float, exact: bool) -> tuple[bool, float]:
    """EvalPlus's comparison of one output; returns the verdict and the atol from here on."""
    if atol == 0 and is_floats(exp):
        atol = 1e-6  # kept for the later inputs of the same test set, as EvalPlus does
    if exact or atol == 0:
        return exact, atol
    try:
        if type(out) is not type(exp):
            return False, atol
        if isinstance(exp, list | tuple) and len(out) != len(exp):
            return False, atol
        return bool(np.allclose(out, exp, rtol=1e-07, atol=atol)), atol
    except Exception:  # noqa: BLE001 - what EvalPlus's assert would raise on is a failure
        return False, atol


@dataclass(frozen=True, repr=False)
class EvalPlusTests:
    """One problem's inputs and expected outputs, judged on the trusted side.

    Attributes:
        task_id: The problem's id (for messages).
        inputs: Base inputs, then plus inputs, each a tuple of arguments.
        num_base: How many of ``inputs`` are base inputs.
        expected: The canonical solution's output on each input.
        limits: Seconds allowed for each input.
        atol: The task's tolerance (0: exact, unless the expected value is a float).
        oracle: The task's own comparison, if it has one.
        oracle_decides: The oracle's answer is the verdict (no tolerance check follows).
        send_time: Seconds the reference's outputs took to encode or digest in the sandbox.
        source: The data file's md5 and the ground truth's version (the expected outputs').
        plus_job: The sandbox job for the plus inputs, run only where the base inputs passed
            (a failed base fails plus too), its results appended to the base's.
    """

    task_id: str
    inputs: tuple[tuple[Any, ...], ...]
    num_base: int
    expected: tuple[Any, ...]
    limits: tuple[float, ...]
    atol: float
    oracle: Oracle | None = None
    oracle_decides: bool = False
    send_time: float = 0.0
    source: str = ""
    plus_job: dict[str, Any] | None = field(default=None, compare=False)

    def __repr__(self) -> str:  # short: it keys the result cache, beside the job itself
        return f"EvalPlusTests({self.task_id}, {self.source})"

    def budgets(self) -> list[float]:
        """Each test set's whole budget: ``min(60 s, sum of its limits) + 2 s``."""
        sets = (self.limits[: self.num_base], self.limits[self.num_base :])
        return [min(TASK_TIMEOUT_S, sum(s)) + PART_GRACE_S for s in sets]

    def judge(self, outcomes: Sequence[tuple[str, Any]]) -> tuple[str, str, dict[str, bool]]:
        """The verdict on the calls' outcomes (``("ok", value)``, or a failure ``(reason,
        detail)``), in input order, possibly cut short after the first failure.

        Returns:
            ``(reason, detail, parts)``: ``passed`` when base and plus pass; ``parts`` says
            which of ``base`` and ``plus`` passed.
        """
        parts, first_failure = {}, None
        for name, lo, hi in (("base", 0, self.num_base), ("plus", self.num_base, len(self.inputs))):
            atol, passed = self.atol, True
            for i in range(lo, hi):
                failure = self._failure(outcomes, i, atol)
                if isinstance(failure, float):
                    atol = failure
                    continue
                passed, first_failure = False, first_failure or failure
                break
            parts[name] = passed
        parts["plus"] = parts["base"] and parts["plus"]
        if parts["plus"]:
            return "passed", "", parts
        return (*first_failure, parts)

    def _failure(
        self, outcomes: Sequence[tuple[str, Any]], i: int, atol: float
    ) -> float | tuple[str, str]:
        """The atol to go on with if input ``i`` passes, else the ``(reason, detail)``."""
        if i >= len(outcomes):
            return "timeout", f"input {i}: not reached (an earlier input failed or overran)"
        status, value = outcomes[i]
        if status != "ok":
            return value
        exp = self.expected[i]
        if isinstance(value, Digest) or isinstance(exp, Digest):  # too large to send: exact only
            same = Digest.of(value) == Digest.of(exp)
            return atol if same else ("assertion", f"input {i}: a large output differs")
        try:
            exact = bool(value == exp)
            if self.oracle is not None:
                exact = bool(self.oracle(value, exp, self.inputs[i], atol, exact))
        except Exception:  # noqa: BLE001 - a comparison that raises is a failure, as in EvalPlus
            return "assertion", f"input {i}: the output cannot be compared"
        ok = exact
        if not self.oracle_decides:
            ok, atol = output_passes(value, exp, atol, exact)
        if ok:
            return atol
        return "assertion", f"input {i}: expected {_short(exp)}, got {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def poly(xs: Sequence[float], x: float) -> float:
    """HumanEval/32's polynomial, as its prompt defines it."""
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))
