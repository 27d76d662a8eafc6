"""What every loss component shares: the registry, the step outputs it reads, its base class."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
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
