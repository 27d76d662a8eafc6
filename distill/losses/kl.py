"""Token-level forward KL against a white-box teacher.

Hinton et al. 2015, "Distilling the Knowledge in a Neural Network", https://arxiv.org/abs/1503.02531:
KL(p_teacher^T || p_student^T) scaled by T^2 so gradient magnitudes do not shrink with temperature.
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


@register_loss("kl")
class ForwardKLLoss(DistillLoss):
    """KL(teacher || student) per token, averaged over unmasked tokens.

    Args:
        temperature: the distillation temperature (not the sampling temperature), > 0.
    """

    requires = frozenset({"logits", "teacher_logits"})

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(
                f"loss.components.kl.temperature={temperature}: the temperature must be > 0"
            )
        self.temperature = temperature

    def forward(self, out: StepOutputs, batch: dict[str, Any]) -> Tensor:
        """Student and teacher logits are (B, T, V) over one shared vocabulary."""
        student, _, mask = next_token_targets(out.student_logits, batch["labels"])
        teacher = out.teacher_logits[:, :-1].detach()  # the teacher is a fixed target
        t = self.temperature
        s_logp = F.log_softmax(as_fp32(student) / t, dim=-1)
        t_logp = F.log_softmax(as_fp32(teacher) / t, dim=-1)
        per_token = (t_logp.exp() * (t_logp - s_logp)).sum(-1)
        return masked_mean(per_token, mask) * t * t
