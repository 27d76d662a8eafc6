"""MBPP (Austin et al. 2021, arXiv 2108.07732), the full test split: task ids 11-510.

MBPP comes in two files: ``mbpp.jsonl`` (974 problems) and ``sanitized-mbpp.json`` (427
hand-verified ones, :mod:`~distill.evaluation.benchmarks.mbpp_sanitized`). Both use the same
task-id ranges; task ids 2, 3 and 4 are the few-shot examples of the paper's prompt.

A sample is a *solution*: a self-contained program (EvalPlus's convention), followed by the test
setup and the assert lines.

* ``"completion"``: the 3-shot prompt as Code Llama and lm-evaluation-harness use it (each shot
  ends ``[DONE]``); generation stops at ``[DONE]``, and a fenced block, if the model wrote one, is
  taken (lm-evaluation-harness's filter).
* ``"chat"``: the same task text and asserts as a user message; the fenced code, sanitized as for
  HumanEval, is the solution.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import socket
from pathlib import Path
from typing import Any

from distill.evaluation.benchmarks.base import Benchmark, get_benchmark, register_benchmark
from distill.evaluation.code_text import (
    chat_prompt,
    extract_code,
    has_fence,
    strip_test_code,
    truncate_at_stop,
)
from distill.evaluation.problem import Problem
from distill.evaluation.strict import StrictTests, assert_line_tests

MBPP_TEST_IDS = range(11, 511)
MBPP_HUB = "google-research-datasets/mbpp"
MBPP_STOP_SEQUENCES: tuple[str, ...] = ("[DONE]",)
MBPP_TASK = (
    "You are an expert Python programmer, and here is your task: {text} "
    "Your code should pass these tests:\n\n{asserts}\n"
)
MBPP_CHAT_INSTRUCTION = (
    "Answer with the complete code, including any imports it needs, in a single ```python code "
    "block."
)
# MBPP task ids 2, 3 and 4 (the paper's shots) as mbpp.jsonl holds them, CRLF made LF.
MBPP_SHOTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Write a function to find the similar elements from the given two tuple lists.",
        "def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & "
        "set(test_tup2))\n  return (res) ",
        (
            "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
            "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
            "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
        ),
    ),
    (
        "Write a python function to identify non-prime numbers.",
        "import math\ndef is_not_prime(n):\n    result = False\n    for i in range(2,"
        "int(math.sqrt(n)) + 1):\n        if n % i == 0:\n            result = True\n"
        "    return result",
        (
            "assert is_not_prime(2) == False",
            "assert is_not_prime(10) == True",
            "assert is_not_prime(35) == True",
        ),
    ),
    (
        "Write a function to find the largest integers from a given list of numbers using heap "
        "queue algorithm.",
        "import heapq as hq\ndef heap_queue_largest(nums,n):\n  largest_nums = hq.nlargest(n, "
        "nums)\n  return largest_nums",
        (
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, "
            "35]",
        ),
    ),
)


def mbpp_task(text: str, asserts: list[str] | tuple[str, ...]) -> str:
    """One task of the paper's prompt: the text, then the tests the code should pass."""
    return MBPP_TASK.format(text=text, asserts="\n".join(asserts))


def mbpp_prompt(text: str, asserts: list[str]) -> str:
    """MBPP's 3-shot prompt: three solved tasks, then this one up to ``[BEGIN]``."""
    shots = [mbpp_task(t, a) + f"[BEGIN]\n{code}\n[DONE]" for t, code, a in MBPP_SHOTS]
    return "\n\n".join([*shots, mbpp_task(text, asserts) + "[BEGIN]\n"])


def mbpp_solution(raw: str, entry_point: str, prompt_format: str) -> str:
    """A solution from a raw generation (see the module doc)."""
    if prompt_format == "completion":
        raw = truncate_at_stop(raw, MBPP_STOP_SEQUENCES)
        if not has_fence(raw):
            return raw.strip("\n") + "\n"
    code = extract_code(raw, entry_point)
    if prompt_format == "chat":
        code = strip_test_code(code, entry_point)
    return code.strip("\n") + "\n"


@register_benchmark("mbpp")
class MBPP(Benchmark):
    """MBPP's 500 test problems from ``mbpp.jsonl`` (``eval.data_path``, else the hub)."""

    title = "MBPP"
    sample_key = "solution"
    env_var = "DISTILL_MBPP_PATH"
    data_hint = "the folder holding MBPP's mbpp.jsonl and sanitized-mbpp.json (../shared/data/mbpp)"
    file = "mbpp.jsonl"
    hub_config = "full"
    text_field = "text"  # the record's problem statement

    def load_all(self, data_path: Path | None) -> list[Problem]:
        records = self.records(data_path)
        return [self.problem(records[i]) for i in MBPP_TEST_IDS if i in records]

    def data_files(self, data_path: Path) -> list[str]:
        return [self.file]

    def check_data(self, data_path: str | None) -> list[str]:
        return [] if data_path is None else super().check_data(data_path)  # None: the hub

    def records(self, data_path: Path | None) -> dict[int, dict[str, Any]]:
        """Every record of the file (all splits), keyed by task id, line breaks normalised."""
        if data_path is None:
            rows = _hub_rows(self.hub_config)
        else:
            text = (data_path / self.file).read_text(encoding="utf-8")
            rows = (
                json.loads(text)
                if self.file.endswith(".json")
                else [json.loads(line) for line in text.splitlines() if line.strip()]
            )
        return {int(row["task_id"]): _normalise(row) for row in rows}

    def problem(self, record: dict[str, Any]) -> Problem:
        """One record as a :class:`Problem`."""
        return Problem(
            task_id=f"Mbpp/{record['task_id']}",
            prompt=record[self.text_field],
            test="\n".join(t.strip() for t in record["test_list"]),
            entry_point=entry_point(record["code"], record["test_list"]),
            canonical_solution=record["code"],
            benchmark=self.name,
            test_setup=self.test_setup(record),
        )

    def test_setup(self, record: dict[str, Any]) -> str:
        """Code run between the solution and the asserts."""
        return record["test_setup_code"]

    def prompt(self, problem: Problem, prompt_format: str, tokenizer: Any) -> str:
        asserts = problem.test.splitlines()
        if prompt_format == "completion":
            return mbpp_prompt(problem.prompt, asserts)
        return chat_prompt(
            tokenizer, f"{mbpp_task(problem.prompt, asserts)}\n{MBPP_CHAT_INSTRUCTION}"
        )

    def stop_sequences(self, prompt_format: str) -> tuple[str, ...]:
        return MBPP_STOP_SEQUENCES if prompt_format == "completion" else ()

    def postprocess(self, raw: str, problem: Problem, prompt_format: str) -> str:
        return mbpp_solution(raw, problem.entry_point, prompt_format)

    def program(self, problem: Problem, sample: str) -> str:
        # Setup code such as task 367's uses classes the solution defines: it comes after it.
        return f"{sample}\n{problem.test_setup}\n{problem.test}"

    def strict_source(self, problem: Problem, sample: str) -> str:
        return f"{sample}\n{problem.test_setup}\n"

    def strict_tests(self, problem: Problem) -> StrictTests | None:
        return assert_line_tests(problem.test, problem.entry_point)


def mbpp_records(benchmark: str, path: str | Path | None = None) -> dict[int, dict[str, Any]]:
    """Every record of MBPP's file for ``benchmark`` (``"mbpp"`` or ``"mbpp_sanitized"``)."""
    bench = get_benchmark(benchmark)
    if not isinstance(bench, MBPP):
        raise ValueError(f"{benchmark} is not an MBPP benchmark")
    return bench.records(None if path is None else Path(path))


def entry_point(code: str, asserts: list[str]) -> str:
    """The function the asserts call: the first called name the reference code defines.

    Falls back to the first called name that is not a builtin.
    """
    try:
        defined = {
            node.name
            for node in ast.parse(code).body
            if isinstance(node, ast.FunctionDef | ast.ClassDef)
        }
    except SyntaxError:
        defined = set()
    called = [
        node.func.id
        for test in asserts
        for node in ast.walk(ast.parse(test.strip()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    ]
    for name in [n for n in called if n in defined] + [
        n for n in called if not hasattr(builtins, n)
    ]:
        return name
    raise ValueError(f"no function call in the asserts {asserts!r}")


def _normalise(row: dict[str, Any]) -> dict[str, Any]:
    """The full file's code uses CRLF line breaks; the sanitized file and Python want LF."""
    return {k: v.replace("\r\n", "\n") if isinstance(v, str) else v for k, v in row.items()}


def _hub_rows(config: str) -> list[dict[str, Any]]:
    """All splits of MBPP from the Hugging Face hub (only when no ``eval.data_path`` is given)."""
    hint = (
        f"eval.data_path is not set and MBPP ({MBPP_HUB}, {config}) could not be loaded "
        "from the Hugging Face hub{why}. Give a local copy: eval.data_path=<folder with "
        "mbpp.jsonl and sanitized-mbpp.json> (or DISTILL_MBPP_PATH)"
    )
    offline = any(os.environ.get(v) == "1" for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if not offline and not _reachable("huggingface.co"):  # fail in seconds, not after retries
        raise ValueError(hint.format(why=" (huggingface.co is unreachable)"))
    from datasets import load_dataset

    try:
        splits = load_dataset(MBPP_HUB, config)
    except Exception as err:  # hub down, or offline without a cached copy
        raise ValueError(hint.format(why=f" ({type(err).__name__}: {err})")) from err
    return [dict(row) for split in splits.values() for row in split]


def _reachable(host: str, timeout_s: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True
