"""Sequence-level distillation: cross-entropy on the teacher's answer tokens.

Kim & Rush 2016, "Sequence-Level Knowledge Distillation", https://arxiv.org/abs/1606.07947. This is
the only objective a text-only teacher (Claude) supports.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from distill.losses.base import (
    DistillLoss,
    StepOutputs,
    as_fp32,
    masked_mean,
    next_token_targets,
    register_loss,
)


@register_loss("ce")
class SequenceCELoss(DistillLoss):
    """Token-averaged cross-entropy of the student on the teacher's tokens.

    Args:
        label_smoothing: in [0, 1).
    """

    requires = frozenset({"logits"})

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"loss.components.ce.label_smoothing={label_smoothing}: use a value in [0, 1)"
            )
        self.label_smoothing = label_smoothing

    def forward(self, out: StepOutputs, batch: dict[str, Any]) -> Tensor:
        """Returns the mean CE over unmasked tokens; `out.student_logits` is (B, T, V)."""
        logits, targets, mask = next_token_targets(out.student_logits, batch["labels"])
        per_token = F.cross_entropy(
            as_fp32(logits).transpose(1, 2),
            targets.clamp(min=0),
            reduction="none",
            label_smoothing=self.label_smoothing,
        )
        return masked_mean(per_token, mask)
