"""Schedules: one number per training step, chosen by name from config.

A schedule is a pure callable `schedule(step, max_steps) -> float`: it keeps no state (the step
lives in the trainer's checkpoint), so the same step always gives the same value, after a resume
too. The number means whatever its consumer makes of it: a loss component's weight
(`loss.components.<name>.schedule`), a distillation temperature (temperature annealing,
`temperature_schedule`), the on-policy fraction `lmbda`, or the number of `active_layers` of a
progressive layer curriculum (the consumer rounds it). The consumer checks the range of the values
(a weight >= 0, a temperature > 0); a schedule only checks that its own arguments make sense.

Config shape, under the thing it drives:

    schedule: {kind: linear, start: 0.0, end: 1.0, end_step: 0.5}

`kind` is a registered name (`constant`, `linear`, `cosine`, `step`, `warmup`, or a plugin's);
the other keys are the typed arguments of its class. A step argument is an int (an absolute
optimizer step) or a float in (0, 1], a fraction of `max_steps` (`end_step: 0.5` is half-way).
Values that move "over the run" reach their end value at `max_steps` (the convention of
`transformers.get_cosine_schedule_with_warmup`): the last optimizer step, `max_steps - 1`, is one
step short of it. A plugin adds a kind with `@register_schedule("name")` or an entry point in the
`distill.schedules` group.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from distill.registry import Registry

Step = int | float  # an absolute step (int) or a fraction of max_steps (a float in (0, 1])


class Schedule(Protocol):
    """A number per optimizer step; pure (no state)."""

    def __call__(self, step: int, max_steps: int) -> float: ...


SCHEDULES: Registry[Schedule] = Registry("schedule", "distill.schedules")
register_schedule = SCHEDULES.register
EXAMPLE = "{kind: linear, start: 0.0, end: 1.0}"


def resolve_step(at: Step, max_steps: int) -> int:
    """An absolute step: a float in (0, 1] is a fraction of `max_steps`, anything else a step."""
    if isinstance(at, float) and 0 < at <= 1:
        return math.floor(at * max_steps + 0.5)  # half up, not Python's half-to-even
    return int(at)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r}: use a finite number")
    return float(value)


def _step(name: str, value: Any) -> Step:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or value < 0 or (isinstance(value, float) and value > 1 and not value.is_integer()):
        raise ValueError(
            f"{name}={value!r}: use a step >= 0 (an int) or a fraction of the run in (0, 1] "
            "(a float such as 0.5)"
        )
    return value


def _is_fraction(at: Step) -> bool:
    return isinstance(at, float) and 0 < at <= 1


def _check_order(name: str, steps: Sequence[Step]) -> None:
    """Steps must grow; only comparable when all are fractions or all are absolute steps."""
    if len({_is_fraction(s) for s in steps}) > 1:
        raise ValueError(
            f"{name}={list(steps)}: mixes fractions of the run and absolute steps; use one kind"
        )
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise ValueError(f"{name}={list(steps)}: must be increasing")


def _progress(step: int, max_steps: int, begin: Step, end: Step | None) -> float:
    """Where `step` lies in [begin, end] (end: max_steps when None), clamped to [0, 1]."""
    a = resolve_step(begin, max_steps)
    b = max_steps if end is None else resolve_step(end, max_steps)
    if b <= a:  # an empty ramp (a short run): jump at `begin`
        return 1.0 if step >= a else 0.0
    return min(max((step - a) / (b - a), 0.0), 1.0)


@register_schedule("constant")
@dataclass(frozen=True)
class ConstantSchedule:
    """`value` at every step."""

    value: float = 1.0

    def __post_init__(self) -> None:
        _number("value", self.value)

    def __call__(self, step: int, max_steps: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class _Ramp:
    """Shared arguments of a ramp from `start` to `end` over [begin, end_step]."""

    start: float = 0.0
    end: float = 1.0
    begin: Step = 0
    end_step: Step | None = None

    def __post_init__(self) -> None:
        _number("start", self.start)
        _number("end", self.end)
        _step("begin", self.begin)
        if self.end_step is not None:
            _step("end_step", self.end_step)
            comparable = _is_fraction(self.begin) == _is_fraction(self.end_step)
            if comparable and self.end_step <= self.begin:
                raise ValueError(f"end_step={self.end_step}: must come after begin={self.begin}")


@register_schedule("linear")
@dataclass(frozen=True)
class LinearSchedule(_Ramp):
    """`start` until `begin`, linearly to `end` at `end_step` (default: max_steps), then `end`."""

    def __call__(self, step: int, max_steps: int) -> float:
        p = _progress(step, max_steps, self.begin, self.end_step)
        return self.start + (self.end - self.start) * p


@register_schedule("cosine")
@dataclass(frozen=True)
class CosineSchedule(_Ramp):
    """Half a cosine from `start` (at `begin`) to `end` (at `end_step`, default max_steps)."""

    start: float = 1.0
    end: float = 0.0

    def __call__(self, step: int, max_steps: int) -> float:
        p = _progress(step, max_steps, self.begin, self.end_step)
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * p))


@register_schedule("step")
@dataclass(frozen=True)
class StepSchedule:
    """`start`, changing at each milestone (reached when step >= milestone).

    Give `factor` (the value is multiplied by it at each milestone) or `values` (the value from
    milestone i on is values[i]; as many values as milestones), not both.
    """

    start: float = 1.0
    milestones: Sequence[Step] = ()
    factor: float | None = None
    values: Sequence[float] | None = None

    def __post_init__(self) -> None:
        _number("start", self.start)
        steps = tuple(_step(f"milestones[{i}]", s) for i, s in enumerate(self.milestones))
        if not steps:
            raise ValueError("milestones is empty: give the steps where the value changes")
        _check_order("milestones", steps)
        object.__setattr__(self, "milestones", steps)  # a tuple: hashable, no shared list
        if (self.factor is None) == (self.values is None):
            raise ValueError("factor/values: give exactly one (factor: 0.1 or values: [...])")
        if self.factor is not None:
            _number("factor", self.factor)
            return
        values = tuple(_number(f"values[{i}]", v) for i, v in enumerate(self.values))
        if len(values) != len(steps):
            raise ValueError(
                f"values={list(values)}: give one value per milestone ({len(steps)}); "
                "`start` is the value before the first"
            )
        object.__setattr__(self, "values", values)

    def __call__(self, step: int, max_steps: int) -> float:
        passed = sum(step >= resolve_step(m, max_steps) for m in self.milestones)
        if self.values is not None:
            return float(self.values[passed - 1]) if passed else float(self.start)
        return float(self.start) * float(self.factor) ** passed


@register_schedule("warmup")
@dataclass(frozen=True)
class WarmupSchedule:
    """0 at step 0, linearly to `value` at `warmup_steps`, then `value`."""

    value: float = 1.0
    warmup_steps: Step = 0.1

    def __post_init__(self) -> None:
        _number("value", self.value)
        _step("warmup_steps", self.warmup_steps)

    def __call__(self, step: int, max_steps: int) -> float:
        return float(self.value) * _progress(step, max_steps, 0, self.warmup_steps)


def build_schedule(spec: Mapping[str, Any], path: str) -> Schedule:
    """The schedule `spec` describes (`{kind: <name>, **arguments}`).

    Args:
        spec: the config mapping (a dict or an OmegaConf DictConfig).
        path: its override path, named by every error (e.g. "loss.components.kl.schedule").

    Raises:
        ValueError: naming `path`, the bad key or value, and what is allowed.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"{path}={spec!r}: give a mapping such as {EXAMPLE}")
    kwargs = dict(spec)
    kind = kwargs.pop("kind", None)
    names = SCHEDULES.names()
    if kind is None:
        raise ValueError(f"{path}.kind is missing: add {path}.kind=<one of {', '.join(names)}>")
    if kind not in names:
        close = difflib.get_close_matches(str(kind), names, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(
            f"{path}.kind={kind}: unknown schedule{hint} (registered schedules: {', '.join(names)})"
        )
    try:
        return SCHEDULES.build(kind, **kwargs)
    except TypeError as err:  # an unknown key, from the signature binding
        raise ValueError(f"{path}: {err}") from None
    except ValueError as err:  # a range check, which starts with the argument's name
        raise ValueError(f"{path}.{err}") from None


def check_schedule(spec: Any, path: str) -> list[str]:
    """The problems `build_schedule` would raise, for the config validator; [] when fine."""
    try:
        build_schedule(spec, path)
    except ValueError as err:
        return str(err).splitlines()
    return []
