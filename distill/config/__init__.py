"""Structured-config schemas, one module per owner (`distill.cli` registers them in Hydra's
ConfigStore), and `validate`.

Each dataclass is the schema of one config group; YAML files in `conf/<group>/` are merged over
it at compose time, so a wrong type fails there. Range checks live in `__post_init__` and name the
override that fixes them; `validate` runs them all (plus any extra checks a stage adds) and
raises once.
"""

from distill.config.base import (
    CACHE_DTYPES,
    CACHE_KINDS,
    DTYPES,
    EVAL_BACKENDS,
    PROMPT_FORMATS,
    QUANTIZATIONS,
    VALUE_GROUPS,
    Check,
    Checks,
    validate,
)
from distill.config.cache import LogitCacheConfig
from distill.config.chat import ChatConfig
from distill.config.data import DataConfig, QualityConfig
from distill.config.evaluation import EvalConfig
from distill.config.export import ExportConfig
from distill.config.run import RunConfig
from distill.config.student import LoraSettings, StudentConfig
from distill.config.teacher import TeacherConfig
from distill.config.training import HardwareConfig, LossConfig, OnPolicyConfig, TrainConfig

__all__ = [
    "CACHE_DTYPES",
    "CACHE_KINDS",
    "DTYPES",
    "EVAL_BACKENDS",
    "PROMPT_FORMATS",
    "QUANTIZATIONS",
    "VALUE_GROUPS",
    "Check",
    "ChatConfig",
    "Checks",
    "DataConfig",
    "EvalConfig",
    "ExportConfig",
    "HardwareConfig",
    "LogitCacheConfig",
    "LoraSettings",
    "LossConfig",
    "OnPolicyConfig",
    "QualityConfig",
    "RunConfig",
    "StudentConfig",
    "TeacherConfig",
    "TrainConfig",
    "validate",
]
