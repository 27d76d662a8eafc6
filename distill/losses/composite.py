"""The weighted sum of the active components, their schedules, and the config check.

`loss.components.<name>` is `{weight, schedule?, temperature_schedule?, layer_schedule?,
token_weighting?, ...kwargs}`: the reserved keys configure the composite, the rest bind to the
component's constructor. A schedule's value multiplies `weight`; `temperature_schedule` gives the
distillation temperature and `layer_schedule` the fraction of mapped layers in use (progressive
layer curriculum) at each optimizer step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from distill.losses.base import LOSSES, TEACHER_OUTPUTS, DistillLoss, StepOutputs
from distill.losses.chunked import fused_token_losses
from distill.losses.rows import TOKEN_WEIGHTINGS
from distill.losses.schedules import Schedule, build_schedule, check_schedule
from distill.losses.token import TokenLoss

LAYER_OUTPUTS = frozenset(
    {"hidden_states", "attentions", "teacher_hidden_states", "teacher_attentions"}
)

SCHEDULE_KEYS = {
    "schedule": "weight",
    "temperature_schedule": "temperature",
    "layer_schedule": "active_layers",
}
RESERVED_KEYS = ("weight", "token_weighting", *SCHEDULE_KEYS)


@dataclass
class LossResult:
    """One evaluation of the composite.

    Attributes:
        total: the differentiable weighted sum.
        parts: each component's unweighted value.
        weights: each component's weight at this step (after schedules and adaptive weighting).
        diagnostics: top-1 agreement and mean KL with the teacher, when asked for.
    """

    total: Tensor
    parts: dict[str, Tensor]
    weights: dict[str, float]
    diagnostics: dict[str, Tensor] = field(default_factory=dict)


class CompositeLoss(nn.Module):
    """Sum of `weight * component(out, batch)`; token losses share one chunked pass.

    Args:
        components: name -> built component.
        weights: name -> base weight.
        schedules: name -> {attribute: schedule} with attribute in weight, temperature,
            active_layers.
        adaptive: learn one log-variance per component and weight each by exp(-s) with a +s
            penalty (Kendall et al. 2018, https://arxiv.org/abs/1705.07115).
        chunk_size: rows per chunk of the token losses (None: `default_chunk_size`).
    """

    def __init__(
        self,
        components: Mapping[str, DistillLoss],
        weights: Mapping[str, float],
        schedules: Mapping[str, Mapping[str, Schedule]] | None = None,
        adaptive: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.components = nn.ModuleDict(dict(components))
        self.base_weights = dict(weights)
        self.schedules = {name: dict(s) for name, s in (schedules or {}).items()}
        self.chunk_size = chunk_size
        self.vocab: int | None = None  # the shared vocabulary, set after the tokenizer preflight
        self.log_vars = nn.Parameter(torch.zeros(len(components))) if adaptive else None
        # The optimizer step the schedules are at: a buffer, so checkpoints carry it.
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.max_steps = 1
        self.set_step(0)

    @property
    def requires(self) -> frozenset[str]:
        """Everything any active component needs from the forward passes."""
        return frozenset().union(*(c.requires for c in self.components.values()))

    @property
    def needs_white_box(self) -> bool:
        return bool(self.requires & TEACHER_OUTPUTS)

    @property
    def needs_dense_logits(self) -> bool:
        """Whether a component reads (B, T, V) student logits (token losses do not)."""
        return any(
            "logits" in c.requires and not isinstance(c, TokenLoss)
            for c in self.components.values()
        )

    def layers_read(self, student_depth: int, teacher_depth: int) -> dict[str, set[int]]:
        """For each layer-wise output a component requires (`hidden_states`, `attentions` and
        their `teacher_` forms), the decoder layers the components read from it."""
        read: dict[str, set[int]] = {}
        for component in self.components.values():
            wanted = component.requires & LAYER_OUTPUTS
            if wanted:
                student, teacher = component.layers_used(student_depth, teacher_depth)
                for key in wanted:
                    read.setdefault(key, set()).update(
                        teacher if key.startswith("teacher_") else student
                    )
        return read

    def prepare(self, student_config: Any, teacher_config: Any) -> None:
        """Let components create what depends on the models (projections) before the optimizer."""
        for component in self.components.values():
            component.prepare(student_config, teacher_config)

    def set_step(self, step: int, max_steps: int | None = None) -> None:
        """Move every schedule to optimizer step `step` of `max_steps`."""
        self.step.fill_(step)
        self.max_steps = max_steps or self.max_steps
        self.weights = dict(self.base_weights)
        for name, schedules in self.schedules.items():
            for attribute, schedule in schedules.items():
                value = schedule(step, self.max_steps)
                if attribute == "weight":
                    self.weights[name] = self.base_weights[name] * value
                else:
                    setattr(self.components[name], attribute, value)

    def current_weights(self) -> dict[str, float]:
        """The weight of each component now, including the adaptive factor."""
        if self.log_vars is None:
            return dict(self.weights)
        factors = torch.exp(-self.log_vars.detach()).tolist()
        return {name: self.weights[name] * f for name, f in zip(self.weights, factors, strict=True)}

    def forward(
        self,
        out: StepOutputs,
        batch: dict[str, Any],
        diagnostics: bool = False,
        teacher_scored_only: bool = False,
    ) -> LossResult:
        """The weighted total and its parts.

        Args:
            out: the step's forward outputs.
            batch: `labels`, and `loss_tokens` / `code_mask` when present.
            diagnostics: also compute top-1 agreement and mean KL with the teacher.
            teacher_scored_only: leave out components that need no teacher signal (on-policy
                batches hold the student's own samples: CE on them would teach it nothing new).
        """
        weights = self.current_weights()
        active = {
            name: c
            for name, c in self.components.items()
            if not teacher_scored_only or c.requires & TEACHER_OUTPUTS
        }
        token_parts = {
            name: (c, weights[name]) for name, c in active.items() if isinstance(c, TokenLoss)
        }
        fused = fused_token_losses(
            out,
            batch,
            token_parts,
            vocab=self.vocab,
            chunk_size=self.chunk_size,
            diagnostics=diagnostics,
        )
        total, parts = fused.total, dict(fused.values)
        for name, component in active.items():
            if name not in token_parts:
                parts[name] = component(out, batch)
                total = total + weights[name] * parts[name]
        if self.log_vars is not None:
            total = total + self._adaptive_terms(parts)
        return LossResult(total, parts, {n: weights[n] for n in parts}, fused.diagnostics)

    def log_values(self, result: LossResult, split: str = "train") -> dict[str, Any]:
        """What a step logs of the loss: the total, each component's value, weight and (for logit
        losses) temperature, and the distillation diagnostics, as `<split>/...` keys."""
        logs: dict[str, Any] = {f"{split}/loss/total": result.total.detach()}
        for name, value in result.parts.items():
            logs[f"{split}/loss/{name}"] = value.detach()
            logs[f"{split}/weight/{name}"] = result.weights[name]
            component = self.components[name]
            if "teacher_logits" in component.requires:
                logs[f"{split}/temperature/{name}"] = float(component.temperature)
        logs.update({f"{split}/diag/{key}": v for key, v in result.diagnostics.items()})
        return logs

    def _adaptive_terms(self, parts: dict[str, Tensor]) -> Tensor:
        """+s_i, and a zero-valued term carrying d/ds_i of exp(-s_i) * w_i * L_i."""
        factors = torch.exp(-self.log_vars)
        terms = self.log_vars.sum()
        for i, name in enumerate(self.components):
            if name not in parts:
                continue
            scaled = (factors[i] - factors[i].detach()) * self.weights[name]
            terms = terms + scaled * parts[name].detach()
        return terms


def split_component(spec: Mapping[str, Any] | None) -> tuple[float, dict, dict]:
    """`{weight, reserved..., **kwargs}` -> (weight, reserved options, constructor kwargs)."""
    spec = dict(spec or {})
    weight = spec.pop("weight", 1.0)
    options = {key: spec.pop(key) for key in RESERVED_KEYS[1:] if spec.get(key) is not None}
    for key in RESERVED_KEYS[1:]:
        spec.pop(key, None)
    return weight, options, spec


def build_loss(
    components: Mapping[str, Any], adaptive: bool = False, chunk_size: int | None = None
) -> CompositeLoss:
    """Build the composite from `loss.components`; components with weight 0 are left out."""
    built, weights, schedules = {}, {}, {}
    for name, spec in components.items():
        weight, options, kwargs = split_component(spec)
        if weight == 0:
            continue
        built[name] = LOSSES.build(name, **kwargs)
        built[name].token_weighting = options.get("token_weighting", "none")
        weights[name] = float(weight)
        schedules[name] = {
            attribute: build_schedule(options[key], f"loss.components.{name}.{key}")
            for key, attribute in SCHEDULE_KEYS.items()
            if key in options
        }
    return CompositeLoss(built, weights, schedules, adaptive=adaptive, chunk_size=chunk_size)


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
        weight, options, kwargs = split_component(spec)
        if not isinstance(weight, int | float) or weight < 0:
            yield f"{path}.weight={weight!r}: use a number >= 0"
            continue
        active += weight > 0  # even when its kwargs are wrong: that is reported on its own
        yield from _check_options(name, factory, options)
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


def _check_options(name: str, factory: Any, options: Mapping[str, Any]) -> Iterable[str]:
    path = f"loss.components.{name}"
    for key in SCHEDULE_KEYS:
        if key in options:
            yield from check_schedule(options[key], f"{path}.{key}")
    if "temperature_schedule" in options and not hasattr(factory, "temperature"):
        yield f"{path}.temperature_schedule: '{name}' has no distillation temperature to anneal"
    if "layer_schedule" in options and not hasattr(factory, "active_layers"):
        yield f"{path}.layer_schedule: '{name}' maps no layers; use it on feature/attention losses"
    weighting = options.get("token_weighting", "none")
    if weighting not in TOKEN_WEIGHTINGS:
        yield f"{path}.token_weighting={weighting!r}: use one of {', '.join(TOKEN_WEIGHTINGS)}"
    elif weighting != "none" and not issubclass(factory, TokenLoss):
        yield f"{path}.token_weighting: '{name}' is not a token-level logit loss"
