"""Model inputs for a problem, and raw generations made into samples, by the problem's benchmark.

Each benchmark (:mod:`distill.evaluation.benchmarks`) owns its prompts, stop sequences and
post-processing; these functions ask the problem's. The post-processing moves scores, so
:data:`POSTPROCESS_VERSION` is recorded with the metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distill.evaluation.benchmarks import Problem, benchmark_for, get_benchmark
from distill.evaluation.code_text import PROMPT_FORMATS, check_format

if TYPE_CHECKING:  # transformers is slow to import; scoring a samples file needs none of it
    from transformers import PreTrainedTokenizerBase

# 1: HumanEval completion and chat. 2: MBPP 3-shot and chat added; HumanEval unchanged.
# 3: chat code sanitized (the model's own tests and cut-off tails dropped).
POSTPROCESS_VERSION = "3"

__all__ = ["POSTPROCESS_VERSION", "PROMPT_FORMATS", "build_prompt", "postprocess"]


def build_prompt(problem: Problem, tokenizer: PreTrainedTokenizerBase, prompt_format: str) -> str:
    """Render the text the model is asked to continue.

    Args:
        problem: The benchmark problem.
        tokenizer: Tokenizer whose chat template renders ``"chat"`` prompts.
        prompt_format: ``"chat"`` or ``"completion"``.

    Raises:
        ValueError: If the format is unknown, or ``"chat"`` is asked of a tokenizer without a
            chat template.
    """
    check_format(prompt_format)
    return benchmark_for(problem).prompt(problem, prompt_format, tokenizer)


def stop_sequences(benchmark: str, prompt_format: str) -> tuple[str, ...]:
    """Strings that end a generation early (none for chat: the end-of-turn token does)."""
    return get_benchmark(benchmark).stop_sequences(prompt_format)


def sample_key(problem: Problem) -> str:
    """``"completion"`` (appended to the prompt: HumanEval) or ``"solution"`` (MBPP)."""
    return benchmark_for(problem).sample_key


def postprocess(raw: str, problem: Problem, prompt_format: str) -> str:
    """Turn a raw generation (new tokens, special tokens skipped) into the sample for
    ``problem``, stored under :func:`sample_key`."""
    check_format(prompt_format)
    return benchmark_for(problem).postprocess(raw, problem, prompt_format)
