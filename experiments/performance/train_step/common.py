"""What every arm shares: its spec, the pre-tokenised examples, padding, timers and its report.

Nothing here imports `distill`: the TRL arms run in the peer venv, where our package's dependencies
(Hydra, Lightning) are absent. Every arm prints one JSON line (`report`) that run.py collects.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

IGNORE_INDEX = -100
RESULT_PREFIX = "RESULT "


@dataclass
class Spec:
    """One arm's settings, as run.py hands them over (a JSON file)."""

    arm: str
    work: str  # the folder holding examples.jsonl, dataset.jsonl and cache/
    student_dir: str  # pruned full-precision student folder (quantised on load)
    teacher_dir: str
    quantization: str | None  # "nf4" or None
    double_quant: bool
    compute_dtype: str
    lora: dict[str, Any]  # r, alpha, dropout, target_modules
    batch_size: int
    max_length: int
    lr: float
    steps: int  # timed optimizer steps
    warmup: int  # untimed steps before them
    threads: int
    seed: int = 0
    overrides: list[str] = field(default_factory=list)  # our arms: Hydra overrides
    options: dict[str, Any] = field(default_factory=dict)  # arm-specific switches

    @classmethod
    def load(cls, path: str) -> Spec:
        return cls(**json.loads(Path(path).read_text()))


def setup_process(spec: Spec) -> None:
    """Same thread count and seed in every arm."""
    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)


def read_examples(work: str) -> list[dict[str, list[int]]]:
    """The pre-tokenised training examples: `input_ids` and `labels` (prompt masked), <= T."""
    lines = Path(work, "examples.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def pad_batch(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded (B, T) `input_ids`, `attention_mask` and `labels` of a list of examples."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def peak_rss_mib() -> float:
    """This process's peak resident set since it started (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StepClock:
    """Wall time of the timed steps (those after `warmup`) and their non-padding tokens."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.seconds = warmup, 0.0
        self.tokens, self.step_times = 0, []
        self._step_start = 0.0

    def begin(self, step: int, tokens: int) -> None:
        self._step_start = time.perf_counter()
        if step >= self.warmup:
            self.tokens += tokens

    def end(self, step: int) -> None:
        if step >= self.warmup:
            elapsed = time.perf_counter() - self._step_start
            self.step_times.append(elapsed)
            self.seconds += elapsed


class PhaseTimer:
    """Accumulated wall seconds per named phase of a step, over the timed steps only."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.active = False
        self._open: dict[str, float] = {}

    def start(self, name: str) -> None:
        self._open[name] = time.perf_counter()

    def stop(self, name: str) -> None:
        began = self._open.pop(name, None)
        if began is not None and self.active:
            self.totals[name] += time.perf_counter() - began

    def per_step(self, steps: int) -> dict[str, float]:
        return {k: v / max(steps, 1) for k, v in self.totals.items()}


def time_module(module: torch.nn.Module, name: str, timer: PhaseTimer) -> None:
    """Time every forward of `module` as phase `name` (forward hooks; no change to the module)."""
    module.register_forward_pre_hook(lambda *_: timer.start(name))
    module.register_forward_hook(lambda *_: timer.stop(name))


def report(spec: Spec, clock: StepClock, phases: PhaseTimer | None, extra: dict) -> None:
    """Print the arm's one result line (tokens/s over the timed steps, peak RSS, phases)."""
    out = {
        "arm": spec.arm,
        "steps": spec.steps,  # optimizer steps (our arms time micro-batches when accumulating)
        "tokens": clock.tokens,
        "seconds": clock.seconds,
        "tokens_per_s": clock.tokens / clock.seconds if clock.seconds else float("nan"),
        "peak_rss_mib": peak_rss_mib(),
        "phases_s": {} if phases is None else phases.per_step(spec.steps),
        **extra,
    }
    print(RESULT_PREFIX + json.dumps(out), flush=True)
    sys.stdout.flush()


def load_hf_pair(spec: Spec, teacher_dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(4-bit student base without adapters, frozen teacher), loaded as a plain HF user would."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = None
    if spec.quantization:
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=spec.quantization,
            bnb_4bit_use_double_quant=spec.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, spec.compute_dtype),
            bnb_4bit_quant_storage=torch.uint8,
        )
    student = AutoModelForCausalLM.from_pretrained(
        spec.student_dir,
        dtype=getattr(torch, spec.compute_dtype),
        quantization_config=quant,
        device_map="cpu" if quant else None,
    )
    teacher = AutoModelForCausalLM.from_pretrained(spec.teacher_dir, dtype=teacher_dtype)
    teacher.eval().requires_grad_(False)
    return student, teacher


def lora_config(spec: Spec) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=spec.lora["r"],
        lora_alpha=spec.lora["alpha"],
        lora_dropout=spec.lora["dropout"],
        target_modules=list(spec.lora["target_modules"]),
        task_type="CAUSAL_LM",
    )
