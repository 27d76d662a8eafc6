"""Total variation distance between teacher and student token distributions.

Wen et al. 2023, "f-Divergence Minimization for Sequence-Level Knowledge Distillation",
https://arxiv.org/abs/2307.15190: TV(p, q) = 1/2 * sum_v |p_v - q_v|, bounded in [0, 1].
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from distill.losses.base import (
    DistillLoss,
    StepOutputs,
    check_temperature,
    masked_mean,
    register_loss,
    tempered_log_probs,
)


@register_loss("tv")
class TotalVariationLoss(DistillLoss):
    """TV distance per token at temperature T, times T^2.

    Args:
        temperature: the distillation temperature, > 0.
    """

    requires = frozenset({"logits", "teacher_logits"})

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        check_temperature("tv", temperature)
        self.temperature = temperature

    def forward(self, out: StepOutputs, batch: dict[str, Any]) -> Tensor:
        """Student and teacher logits are (B, T, V) over one shared vocabulary."""
        s_logp, t_logp, mask = tempered_log_probs(out, batch, self.temperature)
        per_token = 0.5 * (t_logp.exp() - s_logp.exp()).abs().sum(-1)
        return masked_mean(per_token, mask) * self.temperature**2
