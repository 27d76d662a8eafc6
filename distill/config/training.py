"""Training: the loss, the hardware and its precision, the optimizer, on-policy batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distill.config.base import Checks


@dataclass
class LossConfig:
    """`components.<name>: {weight, schedule?, ...kwargs}`; names come from the loss registry.

    `adaptive` learns one uncertainty weight per component (Kendall et al. 2018); `chunk_size`
    is the rows per chunk of the token losses (null: 48 MiB of fp32 logits per chunk, 96 MiB with
    a frozen head).
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
    # auto: bf16 autocast where the CPU has native bf16 (AVX512-BF16 or AMX) or on a GPU, else fp32.
    # Measured on the embedded pair (20 steps, same data): held-out CE 0.821 with bf16-mixed vs
    # 0.820 in fp32, and 113 s vs 180 s for the whole `distill train` (conf/hardware/cpu.yaml).
    precision: str = "auto"
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

    # The default run is `make demo`: 16 steps at lr 2e-4 (lr 1e-3 made the pruned coder student
    # worse: experiments/prune_heal/).
    max_steps: int = 16
    val_every_n_steps: int = 8
    log_every_n_steps: int = 5
    gradient_clip_val: float | None = 1.0
    optimizer: Any = field(
        default_factory=lambda: {
            "_target_": "torch.optim.AdamW",
            "_partial_": True,
            "lr": 2.0e-4,
            "weight_decay": 0.0,
        }
    )
    # A partial taking the optimizer, stepped every optimizer step; null for a constant rate.
    # The default: linear warm-up, then cosine decay to zero at max_steps.
    scheduler: Any = field(
        default_factory=lambda: {
            "_target_": "transformers.get_cosine_schedule_with_warmup",
            "_partial_": True,
            "num_warmup_steps": 2,
            "num_training_steps": "${train.max_steps}",
        }
    )
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
