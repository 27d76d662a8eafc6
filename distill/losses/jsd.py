"""Generalized Jensen-Shannon divergence between teacher and student.

Agarwal et al. 2024, "On-Policy Distillation of Language Models (GKD)",
https://arxiv.org/abs/2306.13649. With m = beta * p_teacher + (1 - beta) * p_student:
JSD_beta = beta * KL(teacher || m) + (1 - beta) * KL(student || m). As in TRL's
`generalized_jsd_loss`, beta = 0 is the forward KL(teacher || student) and beta = 1 the reverse
KL(student || teacher), the two limits the interpolation tends to (up to scale).
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


@register_loss("jsd")
class GeneralizedJSDLoss(TokenLoss):
    """JSD_beta per token at temperature T, times T^2.

    Args:
        beta: weight of the teacher in the mixture, in [0, 1] (0.5 is the symmetric JSD).
        temperature: the distillation temperature, > 0.
    """

    def __init__(self, beta: float = 0.5, temperature: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"loss.components.jsd.beta={beta}: use a value in [0, 1]")
        check_temperature("jsd", temperature)
        self.beta, self.temperature = beta, temperature

    def per_token(self, s_logits: Tensor, chunk: TokenChunk) -> Tensor:
        t_logp, s_logp = aligned_log_probs(s_logits, chunk, self.temperature, "jsd")
        if self.beta == 0.0:
            per_token = kl_per_token(t_logp, s_logp)
        elif self.beta == 1.0:
            per_token = kl_per_token(s_logp, t_logp)
        else:
            m_logp = mixture_log_probs(t_logp, s_logp, self.beta)
            per_token = self.beta * kl_per_token(t_logp, m_logp) + (1 - self.beta) * kl_per_token(
                s_logp, m_logp
            )
        return per_token * self.temperature**2
