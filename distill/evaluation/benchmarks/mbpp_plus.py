"""MBPP+ (EvalPlus, v0.2.0): 378 MBPP problems, cleaned, with about 35 times more tests.

A sample is a *solution* (a self-contained program). The prompt is EvalPlus's: the task text and
one assert in a docstring; in chat, a request for a self-contained script in a code block. The
tests are EvalPlus's (:mod:`~distill.evaluation.benchmarks.evalplus`), with MBPP+'s own input
types (JSON holds no tuple, set or complex: :data:`INPUT_TYPES`) and its special oracles. The data:
``eval.data_path``, a folder holding ``MbppPlus-v0.2.0.jsonl.gz``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from distill.evaluation.benchmarks.base import register_benchmark
from distill.evaluation.benchmarks.evalplus import EvalPlusBenchmark
from distill.evaluation.benchmarks.evalplus_tests import Oracle
from distill.evaluation.code_text import (
    extract_code,
    strip_test_code,
    truncate_at_stop,
)
from distill.evaluation.problem import Problem

CHAT_INSTRUCTION = (
    "Write a self-contained Python script that solves the following problem, in a single "
    "```python code block."
)
STOP_SEQUENCES: tuple[str, ...] = ("\nif __name__", "\nprint(", "\nassert", '\n"""')


def _tuples(args: list[Any]) -> list[Any]:
    return [tuple(a) for a in args]


def _tuple_items(args: list[Any]) -> list[Any]:
    return [[tuple(item) for item in a] for a in args]


def _deep_tuple(value: Any) -> Any:
    return tuple(_deep_tuple(v) for v in value) if isinstance(value, list) else value


# How MBPP+ stores the arguments JSON cannot hold, by task id: each input (a list of arguments)
# -> the arguments the canonical solution takes. Read from evalplus 0.3.1's data loader.
_CONVERSIONS: list[tuple[tuple[int, ...], Callable[[list[Any]], Any]]] = [
    (
        (2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630,
         726, 740, 744, 809),
        _tuples,
    ),
    ((63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780), _tuple_items),
    ((75, 413, 444, 753), lambda a: [[tuple(i) for i in a[0]], a[1]]),
    ((106, 750), lambda a: [a[0], tuple(a[1])]),
    ((115,), lambda a: [[set(i) if isinstance(i, list) and i else {} for i in a[0]]]),
    ((124,), lambda a: (float(a[0]), complex(a[1]))),
    ((250, 405, 446, 617, 720, 763, 808), lambda a: [tuple(a[0]), a[1]]),
    ((259, 401, 445), lambda a: _tuples(_tuple_items(a))),
    ((278,), lambda a: _tuples([[tuple(i) if isinstance(i, list) else i for i in a[0]]])),
    ((307,), lambda a: [tuple(a[0]), a[1], a[2]]),
    ((722,), lambda a: [{k: tuple(v) for k, v in a[0].items()}, *a[1:]]),
    ((252,), lambda a: [complex(a[0])]),
    ((580, 615, 791), _deep_tuple),
]  # fmt: skip
INPUT_TYPES: dict[int, Callable[[list[Any]], Any]] = {
    task: convert for tasks, convert in _CONVERSIONS for task in tasks
}
# Outputs compared as sets (the order is free) and outputs only checked to be not None.
SET_EQUAL = {
    "similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly",
    "larg_nnum", "intersection_array", "find_dissimilar", "Diff",
}  # fmt: skip
NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}


def _surface_area(base_edge: float, height: float) -> int:
    """Mbpp/581's oracle: height is the pyramid's perpendicular height."""
    slant = math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 2 * base_edge * slant)


def _digit_distance(a: int, b: int) -> int:
    """Mbpp/558's oracle: the shorter number padded with leading zeros."""
    x, y = str(a), str(b)
    width = max(len(x), len(y))
    return sum(abs(int(p) - int(q)) for p, q in zip(x.zfill(width), y.zfill(width), strict=True))


def _oracles() -> dict[str, Oracle]:
    """Each turns ``exact`` (``output == expected``) into the task's own notion of a match."""

    def any_output(out: Any, exp: Any, inp: Sequence[Any], atol: float, exact: bool) -> bool:
        return True  # Mbpp/164: every answer is accepted

    def sum_div(out: Any, exp: Any, inp: Sequence[Any], atol: float, exact: bool) -> bool:
        return exact or out == 0  # Mbpp/295 accepts 0 besides the reference

    def surface_area(out: Any, exp: Any, inp: Sequence[Any], atol: float, exact: bool) -> bool:
        return exact or abs(out - _surface_area(*inp)) <= atol

    def digit_distance(out: Any, exp: Any, inp: Sequence[Any], atol: float, exact: bool) -> bool:
        return exact or out == _digit_distance(*inp)

    def set_equal(out: Any, exp: Any, inp: Sequence[Any], atol: float, exact: bool) -> bool:
        return set(out) == set(exp)

    oracles: dict[str, Oracle] = {
        "are_equivalent": any_output,
        "sum_div": sum_div,
        "surface_Area": surface_area,
        "digit_distance_nums": digit_distance,
    }
    return {**oracles, **dict.fromkeys(SET_EQUAL, set_equal)}


ORACLES = _oracles()


@register_benchmark("mbpp_plus")
class MBPPPlus(EvalPlusBenchmark):
    title = "MBPP+"
    file = "MbppPlus-v0.2.0.jsonl.gz"
    sample_key = "solution"

    def deserialize(self, task_id: str, inputs: list[Any]) -> list[Any]:
        convert = INPUT_TYPES.get(int(task_id.split("/")[1]))
        return inputs if convert is None else [convert(i) for i in inputs]

    def oracle(self, problem: Problem) -> Oracle | None:
        return ORACLES.get(problem.entry_point)

    def not_none(self, problem: Problem) -> bool:
        return problem.entry_point in NOT_NONE

    def chat_message(self, problem: Problem) -> str:
        return f"{CHAT_INSTRUCTION}\n```\n{problem.prompt.strip()}\n```"

    def stop_sequences(self, prompt_format: str) -> tuple[str, ...]:
        return STOP_SEQUENCES if prompt_format == "completion" else ()

    def postprocess(self, raw: str, problem: Problem, prompt_format: str) -> str:
        if prompt_format == "completion":
            return problem.prompt + truncate_at_stop(raw, STOP_SEQUENCES)
        return strip_test_code(extract_code(raw, problem.entry_point), problem.entry_point)
