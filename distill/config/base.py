"""What every schema shares: the allowed values, the range-check collector, and `validate`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from distill.errors import ConfigError

QUANTIZATIONS = ("nf4", "fp4")
# auto: bf16 where the hardware computes it natively, else fp32 (distill.hardware.resolve_dtype)
DTYPES = ("auto", "float32", "bfloat16", "float16")
PROMPT_FORMATS = ("chat", "completion")
EVAL_BACKENDS = ("hf", "vllm")
CACHE_KINDS = ("topk", "sampled")
CACHE_DTYPES = ("float16", "float32")

# The config groups whose values are dataclasses: `validate` builds each one.
VALUE_GROUPS = (
    "teacher",
    "student",
    "data",
    "loss",
    "hardware",
    "train",
    "eval",
    "teacher_cache",
    "export",
    "chat",
)


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
