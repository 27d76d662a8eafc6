"""R-Drop consistency between two dropout draws of the student.

Liang et al. 2021, "R-Drop: Regularized Dropout for Neural Networks",
https://arxiv.org/abs/2106.14448: the same batch goes through the student twice with different
dropout masks, and the two output distributions are pulled together with a symmetric KL. No teacher
is needed. With a LoRA student the only dropout is usually `lora_dropout`: at 0 both passes agree
and this loss is 0.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from distill.losses.base import (
    DistillLoss,
    StepOutputs,
    as_fp32,
    check_temperature,
    kl_per_token,
    next_token_targets,
    register_loss,
    token_mean,
)
from distill.losses.layer_map import needed

NAME = "consistency"


@register_loss(NAME)
class ConsistencyLoss(DistillLoss):
    """Symmetric KL between the student's two passes, over scored tokens.

    loss = T^2 * (KL(p1 || p2) + KL(p2 || p1)) / 2 per token, with p1, p2 the tempered softmaxes of
    the two passes; both passes receive gradient. The T^2 factor keeps gradient magnitudes
    comparable across temperatures, as in the KL family.

    Args:
        temperature: the temperature of both distributions, > 0.
    """

    requires = frozenset({"logits", "second_pass"})
    temperature: float = 1.0  # class-level too: `temperature_schedule` may anneal it

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        check_temperature(NAME, temperature)
        self.temperature = temperature

    def forward(self, out: StepOutputs, batch: dict[str, Any]) -> Tensor:
        """Symmetric KL averaged over scored tokens with `token_mean`.

        Args:
            out: (B, T, V) `student_logits` (or `student_hidden` + `student_head`) and (B, T, V)
                `student_second_logits`, two passes of one batch with different dropout draws.
            batch: with (B, T) `labels`.

        Returns:
            A 0-d fp32 tensor.
        """
        second = needed(out.student_second_logits, "second student pass", NAME, "second_pass")
        first, _, mask = next_token_targets(out.dense_student_logits(), batch["labels"])
        p1 = F.log_softmax(as_fp32(first) / self.temperature, dim=-1)
        p2 = F.log_softmax(as_fp32(second[:, :-1]) / self.temperature, dim=-1)
        per_token = 0.5 * (kl_per_token(p1, p2) + kl_per_token(p2, p1))
        return token_mean(per_token, mask, batch) * self.temperature**2
