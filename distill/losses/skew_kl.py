"""Skew KL: KL(teacher || alpha * teacher + (1 - alpha) * student).

Ko et al. 2024, "DistiLLM: Towards Streamlined Distillation for Large Language Models",
https://arxiv.org/abs/2402.03898. Mixing some teacher mass into the student side keeps the
divergence and its gradient bounded where the student gives a teacher token almost no probability.
"""

from __future__ import annotations

from torch import Tensor

from distill.losses.base import check_temperature, register_loss
from distill.losses.token import (
    TokenChunk,
    TokenLoss,
    aligned_log_probs,
    kl_per_token,
    mixture_log_probs,
)


@register_loss("skew_kl")
class SkewKLLoss(TokenLoss):
    """Skew forward KL per token at temperature T, times T^2.

    Args:
        alpha: teacher share of the skewed student distribution, in [0, 1) (0 is the forward KL).
        temperature: the distillation temperature, > 0.
    """

    def __init__(self, alpha: float = 0.1, temperature: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"loss.components.skew_kl.alpha={alpha}: use a value in [0, 1)")
        check_temperature("skew_kl", temperature)
        self.alpha, self.temperature = alpha, temperature

    def per_token(self, s_logits: Tensor, chunk: TokenChunk) -> Tensor:
        t_logp, s_logp = aligned_log_probs(s_logits, chunk, self.temperature, "skew_kl")
        skewed = s_logp if self.alpha == 0.0 else mixture_log_probs(t_logp, s_logp, self.alpha)
        return kl_per_token(t_logp, skewed) * self.temperature**2
