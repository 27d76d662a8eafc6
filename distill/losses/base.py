"""What every loss component shares: the registry, the step outputs it reads, its base class."""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from distill.registry import Registry

IGNORE_INDEX = -100
# What a component may declare in `requires`; the teacher_* entries need a white-box teacher.
# "second_pass" is a second student forward of the same batch with fresh dropout (consistency).
STUDENT_OUTPUTS = frozenset({"logits", "hidden_states", "attentions", "second_pass"})
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
class SparseTargets:
    """A teacher distribution kept as K tokens per position (a sparse logit cache).

    Positions align with the input ids, like logits: position t predicts token t+1.

    Attributes:
        ids: (B, T, K) token ids; unused slots hold id 0 with log-weight -inf.
        logp: (B, T, K) log-weights: the teacher's log-probabilities for `kind="topk"`; for
            `kind="sampled"`, log(count / draws), an unbiased estimate of them.
        tail_logp: (B, T) log of the teacher mass outside `ids` (top-k); -inf for sampled.
        kind: "topk" or "sampled".
        temperature: the temperature the teacher distribution was captured at.
        entropy: (B, T) the teacher's entropy at that temperature, or None.
    """

    ids: Tensor
    logp: Tensor
    tail_logp: Tensor
    kind: str = "topk"
    temperature: float = 1.0
    entropy: Tensor | None = None


@dataclass
class StepOutputs:
    """The forward outputs of one step; only what the active components require is filled.

    Attributes:
        student_logits: (B, T, V) student logits, filled only when a dense component needs them
            (token losses project `student_hidden` through `student_head` chunk by chunk instead).
        teacher_logits: (B, T, V) teacher logits, or None without an online white-box teacher.
        student_hidden: (B, T, H) the student's last hidden state, the input of its lm_head.
        student_head: the student's lm_head (a Linear: `weight` (V, H), optional `bias`).
        teacher_sparse: the teacher's sparse distribution from a logit cache, or None.
        student_hidden_states / teacher_hidden_states: tuples of (B, T, H) per layer (+ embeddings),
            None for a layer no component reads (`DistillLoss.layers_used`).
        student_attentions / teacher_attentions: tuples of (B, heads, T, T) per layer, None for
            a layer no component reads.
        student_second_logits: (B, T, V) logits of a second student pass (other dropout draw).
    """

    student_logits: Tensor | None = None
    teacher_logits: Tensor | None = None
    student_hidden: Tensor | None = None
    student_head: nn.Module | None = None
    teacher_sparse: SparseTargets | None = None
    student_hidden_states: tuple[Tensor | None, ...] | None = None
    teacher_hidden_states: tuple[Tensor | None, ...] | None = None
    student_attentions: tuple[Tensor | None, ...] | None = None
    teacher_attentions: tuple[Tensor | None, ...] | None = None
    student_second_logits: Tensor | None = None

    def dense_student_logits(self) -> Tensor:
        """(B, T, V) student logits: the stored ones, else the head applied to the hidden state."""
        if self.student_logits is None:
            self.student_logits = self.student_head(self.student_hidden)
        return self.student_logits


class DistillLoss(nn.Module):
    """Base of every component: declare `requires`, implement `forward(out, batch) -> scalar`."""

    requires: ClassVar[frozenset[str]] = frozenset({"logits"})

    def prepare(self, student_config: Any, teacher_config: Any) -> None:
        """Create what depends on the models' shapes (e.g. projections) from their HF configs.

        Called once after the models load and before the optimizer is built, so parameters made
        here are trained and saved with the adapters. `teacher_config` is None without a teacher.
        """

    def layers_used(self, student_depth: int, teacher_depth: int) -> tuple[set[int], set[int]]:
        """The decoder layers (student, teacher) whose hidden states or attention maps this
        component reads, when it requires them: the step records only those. Default: all."""
        return set(range(student_depth)), set(range(teacher_depth))

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


def loss_tokens(batch: dict[str, Any], mask: Tensor) -> Tensor | float:
    """What a token-level loss divides its sum by.

    `batch["loss_tokens"]`, when the trainer set it, is the number of scored tokens of the whole
    global batch (all micro-batches of one optimizer step, on all ranks) divided by the number of
    micro-batch shares (ranks x accumulation steps): then the trainer's averaging over shares
    gives exactly the mean over the global batch. Without it, the local count is used.
    """
    given = batch.get("loss_tokens")
    return given if given is not None else mask.sum().clamp(min=1).to(torch.float32)


def token_mean(values: Tensor, mask: Tensor, batch: dict[str, Any]) -> Tensor:
    """Sum of `values` over `mask` divided by `loss_tokens(batch, mask)`: the global-batch mean."""
    return (values * mask.to(values.dtype)).sum() / loss_tokens(batch, mask)


def as_fp32(t: Tensor) -> Tensor:
    return t if t.dtype == torch.float32 else t.float()


def check_temperature(name: str, temperature: float) -> None:
    """Range check of a distillation temperature, naming the override."""
    if not temperature > 0:
        raise ValueError(
            f"loss.components.{name}.temperature={temperature}: the temperature must be > 0"
        )


def kl_per_token(p_logp: Tensor, q_logp: Tensor) -> Tensor:
    """KL(p || q) over the last dimension, from log-probabilities.

    A token p gives no mass (log p = -inf: a masked or padded teacher vocabulary) adds
    0 log 0 = 0 and passes no gradient, where the plain formula gives 0 * (-inf) = NaN.
    """
    p = p_logp.exp()
    return (p * (p_logp - q_logp).masked_fill_(p == 0, 0.0)).sum(-1)


def mixture_log_probs(p_logp: Tensor, q_logp: Tensor, weight_p: float) -> Tensor:
    """log(weight_p * p + (1 - weight_p) * q), computed stably from log-probabilities."""
    return torch.logaddexp(p_logp + math.log(weight_p), q_logp + math.log1p(-weight_p))
