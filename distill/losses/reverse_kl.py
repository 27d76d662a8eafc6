"""Token-level reverse KL: KL(student || teacher), mode-seeking.

Gu et al. 2024, "MiniLLM: Knowledge Distillation of Large Language Models",
https://arxiv.org/abs/2306.08543 (here at the token level, on the teacher's or stored answers).
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


@register_loss("reverse_kl")
class ReverseKLLoss(DistillLoss):
    """KL(student || teacher) per token at temperature T, times T^2.

    Args:
        temperature: the distillation temperature, > 0.
    """

    requires = frozenset({"logits", "teacher_logits"})

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        check_temperature("reverse_kl", temperature)
        self.temperature = temperature

    def forward(self, out: StepOutputs, batch: dict[str, Any]) -> Tensor:
        """Student and teacher logits are (B, T, V) over one shared vocabulary."""
        s_logp, t_logp, mask = tempered_log_probs(out, batch, self.temperature)
        return masked_mean(kl_per_token(s_logp, t_logp), mask) * self.temperature**2
