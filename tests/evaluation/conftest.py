"""Fixtures for the evaluation tests: a tiny random Llama and a character-level tokenizer."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from distill.evaluation.benchmarks import load_problems
from distill.testing import tiny_llama as build_tiny_llama
from distill.testing import tiny_tokenizer


def build_char_tokenizer(pad: bool = True) -> PreTrainedTokenizerFast:
    """The shared character-level test tokenizer, optionally without a pad token."""
    tokenizer = tiny_tokenizer()
    if not pad:
        tokenizer.pad_token = None
    return tokenizer


@dataclass
class EvalCfg:
    """Dataclass stand-in for the ``eval`` config group."""

    benchmark: str = "humaneval"
    limit: int | None = 3
    max_new_tokens: int = 8
    batch_size: int = 2
    timeout_s: float = 5.0
    prompt_format: str = "completion"
    k: list[int] = field(default_factory=lambda: [1])
    num_samples: int = 1
    temperature: float = 0.8
    top_p: float = 0.95
    workers: int = 2


@pytest.fixture(scope="session")
def char_tokenizer() -> PreTrainedTokenizerFast:
    return build_char_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama() -> LlamaForCausalLM:
    return build_tiny_llama()


def plant_reference(samples: Path, task_id: str, benchmark: str = "humaneval", mbpp_path=None):
    """Replace ``task_id``'s stored sample by the benchmark's reference solution.

    A rerun of the evaluation resumes from the stored samples, so that problem must then pass
    and every other keep its verdict: a scorer that fails or passes everything is caught.
    """
    problems = load_problems(benchmark, None, mbpp_path and str(mbpp_path))
    (problem,) = [p for p in problems if p.task_id == task_id]
    key = "completion" if benchmark == "humaneval" else "solution"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    for row in rows:
        if row["task_id"] == task_id:
            row[key] = problem.canonical_solution
    samples.write_text("".join(json.dumps(row) + "\n" for row in rows))


def uid_processes(uids: list[int]) -> list[int]:
    """Processes running as one of `uids` (the sandbox's): none may outlive a program."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if uid in uids:
            found.append(int(entry))
    return found
