"""The weighted sum of the active components, and the config check run before any weights load."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor, nn

from distill.losses.base import LOSSES, TEACHER_OUTPUTS, DistillLoss, StepOutputs

# Keys of `loss.components.<name>` that configure the composite, not the component.
RESERVED_KEYS = ("weight", "schedule")


class CompositeLoss(nn.Module):
    """Sum of `weight * component(out, batch)`.

    Args:
        components: name -> built component.
        weights: name -> weight.
    """

    def __init__(self, components: Mapping[str, DistillLoss], weights: Mapping[str, float]) -> None:
        super().__init__()
        self.components = nn.ModuleDict(dict(components))
        self.weights = dict(weights)

    @property
    def requires(self) -> frozenset[str]:
        """Everything any active component needs from the forward passes."""
        return frozenset().union(*(c.requires for c in self.components.values()))

    @property
    def needs_white_box(self) -> bool:
        return bool(self.requires & TEACHER_OUTPUTS)

    def forward(self, out: StepOutputs, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """Returns (total, {name: unweighted value})."""
        parts = {name: comp(out, batch) for name, comp in self.components.items()}
        total = sum(self.weights[name] * value for name, value in parts.items())
        return total, parts


def split_component(name: str, spec: Mapping[str, Any] | None) -> tuple[float, dict[str, Any]]:
    """`{weight, schedule?, **kwargs}` -> (weight, kwargs)."""
    spec = dict(spec or {})
    weight = spec.pop("weight", 1.0)
    spec.pop("schedule", None)
    return weight, spec


def build_loss(components: Mapping[str, Any]) -> CompositeLoss:
    """Build the composite from `loss.components`; components with weight 0 are left out."""
    built, weights = {}, {}
    for name, spec in components.items():
        weight, kwargs = split_component(name, spec)
        if weight == 0:
            continue
        built[name] = LOSSES.build(name, **kwargs)
        weights[name] = float(weight)
    return CompositeLoss(built, weights)


def check_loss_config(components: Mapping[str, Any], teacher_white_box: bool) -> Iterable[str]:
    """Every problem with `loss.components`, without building anything heavy."""
    active = 0
    for name, spec in components.items():
        path = f"loss.components.{name}"
        if spec is not None and not isinstance(spec, Mapping):
            yield f"{path}={spec!r}: give a mapping such as {{weight: 1.0}}"
            continue
        try:
            factory = LOSSES.get(name)
        except KeyError as err:
            yield f"{path}: {err.args[0]}"
            continue
        if spec and spec.get("schedule") is not None:
            yield (
                f"{path}.schedule: weight schedules are not available yet, so the weight would "
                f"stay constant; remove the schedule (or set {path}.schedule=null)"
            )
        weight, kwargs = split_component(name, spec)
        if not isinstance(weight, int | float) or weight < 0:
            yield f"{path}.weight={weight!r}: use a number >= 0"
            continue
        active += weight > 0  # even when its kwargs are wrong: that is reported on its own
        try:
            LOSSES.build(name, **kwargs)  # binds kwargs and runs the component's range checks
        except (TypeError, ValueError) as err:
            yield f"{path}: {err}"
            continue
        needs = factory.requires & TEACHER_OUTPUTS
        if weight > 0 and needs and not teacher_white_box:
            yield (
                f"{path} needs {', '.join(sorted(needs))} but the teacher is text-only (the Claude "
                "API gives no token log-probabilities): use loss=ce, or add a white-box teacher "
                "(teacher=hf teacher.path=...) or its precomputed logit cache"
            )
    if active == 0:
        yield "loss.components has no component with weight > 0: e.g. loss=ce or loss=ce_kl"
