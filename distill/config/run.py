"""The whole run: one value group per config group, plus run-wide settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from distill.config.cache import LogitCacheConfig
from distill.config.chat import ChatConfig
from distill.config.data import DataConfig
from distill.config.evaluation import EvalConfig
from distill.config.export import ExportConfig
from distill.config.student import StudentConfig
from distill.config.training import HardwareConfig, LossConfig, TrainConfig


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
    export: ExportConfig = field(default_factory=ExportConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
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
