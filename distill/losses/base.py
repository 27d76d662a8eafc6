"""What every loss component shares: the registry, the step outputs it reads, its base class."""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.registry import Registry

IGNORE_INDEX = -100
# What a component may declare in `requires`; the teacher_* entries need a white-box teacher.
STUDENT_OUTPUTS = frozenset({"logits", "hidden_states", "attentions"})
TEACHER_OUTPUTS = frozenset({"teacher_logits", "teacher_hidden_states", "teacher_attentions"})

LOSSES: Registry[DistillLoss] = Registry("loss", "distill.losses", plural="losses")
register_loss = LOSSES.register


def load_plugins(modules: list[str]) -> None:
    """Import a researcher's own modules so their `@register_loss` classes join the registry."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ImportError(
                f"plugins: could not import '{module}' ({err}); give a module path importable from "
                "the working directory or PYTHONPATH, e.g. plugins=[my_losses]"
            ) from err


@dataclass
class StepOutputs:
    """The forward outputs of one step; only what the active components require is filled.

    Attributes:
        student_logits: (B, T, V) student logits.
        teacher_logits: (B, T, V) teacher logits, or None without a white-box teacher.
        student_hidden_states / teacher_hidden_states: tuples of (B, T, H) per layer (+ embeddings).
        student_attentions / teacher_attentions: tuples of (B, heads, T, T) per layer.
    """

    student_logits: Tensor
    teacher_logits: Tensor | None = None
    student_hidden_states: tuple[Tensor, ...] | None = None
    teacher_hidden_states: tuple[Tensor, ...] | None = None
    student_attentions: tuple[Tensor, ...] | None = None
    teacher_attentions: tuple[Tensor, ...] | None = None


class DistillLoss(nn.Module):
    """Base of every component: declare `requires`, implement `forward(out, batch) -> scalar`."""

    requires: ClassVar[frozenset[str]] = frozenset({"logits"})

    def forward(self, out: StepOutputs, batch: dict[str, Any]) -> Tensor:  # pragma: no cover
        raise NotImplementedError


def next_token_targets(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Align logits at position t with the label at t+1.

    Args:
        logits: (B, T, V).
        labels: (B, T) with IGNORE_INDEX on prompt and padding.

    Returns:
        (logits (B, T-1, V), targets (B, T-1), mask (B, T-1) bool of scored tokens).
    """
    targets = labels[:, 1:]
    return logits[:, :-1], targets, targets != IGNORE_INDEX


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` over `mask`; 0 (with a graph) when nothing is unmasked."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def as_fp32(t: Tensor) -> Tensor:
    return t if t.dtype == torch.float32 else t.float()


def check_temperature(name: str, temperature: float) -> None:
    """Range check of a distillation temperature, naming the override."""
    if not temperature > 0:
        raise ValueError(
            f"loss.components.{name}.temperature={temperature}: the temperature must be > 0"
        )


def tempered_log_probs(
    out: StepOutputs, batch: dict[str, Any], temperature: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Student and teacher log-probabilities at the distillation temperature, in fp32.

    Args:
        out: step outputs with (B, T, V) student and teacher logits over one vocabulary.
        batch: with (B, T) `labels`.
        temperature: the distillation temperature (not the sampling one).

    Returns:
        (student log-probs (B, T-1, V), teacher log-probs (B, T-1, V), mask (B, T-1)); the teacher
        side is detached, a fixed target.
    """
    student, _, mask = next_token_targets(out.student_logits, batch["labels"])
    teacher = out.teacher_logits[:, :-1].detach()
    s_logp = F.log_softmax(as_fp32(student) / temperature, dim=-1)
    t_logp = F.log_softmax(as_fp32(teacher) / temperature, dim=-1)
    return s_logp, t_logp, mask


def kl_per_token(p_logp: Tensor, q_logp: Tensor) -> Tensor:
    """KL(p || q) over the last dimension, from log-probabilities."""
    return (p_logp.exp() * (p_logp - q_logp)).sum(-1)


def mixture_log_probs(p_logp: Tensor, q_logp: Tensor, weight_p: float) -> Tensor:
    """log(weight_p * p + (1 - weight_p) * q), computed stably from log-probabilities."""
    return torch.logsumexp(
        torch.stack([p_logp + math.log(weight_p), q_logp + math.log1p(-weight_p)]), dim=0
    )
