"""Token-level forward KL against a white-box teacher.

Hinton et al. 2015, "Distilling the Knowledge in a Neural Network", https://arxiv.org/abs/1503.02531:
KL(p_teacher^T || p_student^T) scaled by T^2 so gradient magnitudes do not shrink with temperature.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from distill.losses.base import (
    DistillLoss,
    StepOutputs,
    check_temperature,
    kl_per_token,
    masked_mean,
    register_loss,
    tempered_log_probs,
)


@register_loss("kl")
class ForwardKLLoss(DistillLoss):
    """KL(teacher || student) per token, averaged over unmasked tokens (mode-covering).

    Args:
        temperature: the distillation temperature (not the sampling temperature), > 0.
    """

    requires = frozenset({"logits", "teacher_logits"})

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        check_temperature("kl", temperature)
        self.temperature = temperature

    def forward(self, out: StepOutputs, batch: dict[str, Any]) -> Tensor:
        """Student and teacher logits are (B, T, V) over one shared vocabulary."""
        s_logp, t_logp, mask = tempered_log_probs(out, batch, self.temperature)
        return masked_mean(kl_per_token(t_logp, s_logp), mask) * self.temperature**2
