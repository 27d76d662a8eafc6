"""Token-level total variation distance between teacher and student.

Wen et al. 2023, "f-Divergence Minimization for Sequence-Level Knowledge Distillation",
https://arxiv.org/abs/2307.15190: TV is bounded, so a few tokens the student gets badly wrong do not
dominate the loss.
"""

from __future__ import annotations

from torch import Tensor

from distill.losses.base import check_temperature, register_loss
from distill.losses.token import TokenChunk, TokenLoss, aligned_log_probs


@register_loss("tv")
class TotalVariationLoss(TokenLoss):
    """TV distance per token at temperature T, times T^2.

    Args:
        temperature: the distillation temperature, > 0.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        check_temperature("tv", temperature)
        self.temperature = temperature

    def per_token(self, s_logits: Tensor, chunk: TokenChunk) -> Tensor:
        t_logp, s_logp = aligned_log_probs(s_logits, chunk, self.temperature, "tv")
        return 0.5 * (t_logp.exp() - s_logp.exp()).abs().sum(-1) * self.temperature**2
