"""Token-level reverse KL: KL(student || teacher), mode-seeking.

Gu et al. 2024, "MiniLLM: Knowledge Distillation of Large Language Models",
https://arxiv.org/abs/2306.08543: the student concentrates on the teacher's major modes instead of
spreading mass over everything the teacher finds plausible.
"""

from __future__ import annotations

from torch import Tensor

from distill.losses.base import check_temperature, register_loss
from distill.losses.token import TokenChunk, TokenLoss, aligned_log_probs, kl_per_token


@register_loss("reverse_kl")
class ReverseKLLoss(TokenLoss):
    """KL(student || teacher) per token at temperature T, times T^2.

    Args:
        temperature: the distillation temperature, > 0.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        check_temperature("reverse_kl", temperature)
        self.temperature = temperature

    def per_token(self, s_logits: Tensor, chunk: TokenChunk) -> Tensor:
        t_logp, s_logp = aligned_log_probs(s_logits, chunk, self.temperature, "reverse_kl")
        return kl_per_token(s_logp, t_logp) * self.temperature**2
