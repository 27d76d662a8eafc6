"""Token-level forward KL against a white-box teacher.

Hinton et al. 2015, "Distilling the Knowledge in a Neural Network", https://arxiv.org/abs/1503.02531:
KL(p_teacher^T || p_student^T) scaled by T^2 so gradient magnitudes do not shrink with temperature.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from distill.losses.base import check_temperature, register_loss
from distill.losses.token import (
    TokenChunk,
    TokenLoss,
    aligned_log_probs,
    kl_per_token,
    scaled,
)


@register_loss("kl")
class ForwardKLLoss(TokenLoss):
    """KL(teacher || student) per token (mode-covering).

    With a sampled logit cache (Anshumann et al. 2025) the stored counts are an unbiased estimate
    of the teacher distribution, so the cross-entropy against them minus the teacher's entropy is
    an unbiased estimate of the KL, and its gradient of the dense gradient.

    Args:
        temperature: the distillation temperature (not the sampling temperature), > 0.
    """

    sparse_kinds = ("topk", "sampled")

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        check_temperature("kl", temperature)
        self.temperature = temperature

    def per_token(self, s_logits: Tensor, chunk: TokenChunk) -> Tensor:
        t = self.temperature
        sparse = chunk.sparse
        if chunk.teacher_logits is None and sparse is not None and sparse.kind == "sampled":
            s_logp = F.log_softmax(scaled(s_logits, t), dim=-1).gather(-1, sparse.ids)
            weights = sparse.logp.float().exp()  # 0 on unused slots
            cross_entropy = -(weights * s_logp).sum(-1)
            entropy = 0.0 if sparse.entropy is None else sparse.entropy.float()
            return (cross_entropy - entropy) * t**2
        t_logp, s_logp = aligned_log_probs(s_logits, chunk, t, "kl")
        return kl_per_token(t_logp, s_logp) * t**2

    def per_token_grad(self, s_logits: Tensor, chunk: TokenChunk) -> tuple[Tensor, Tensor] | None:
        """Online teacher: T^2 KL(p || q) per token, and its gradient T (q - p) in the logits."""
        if chunk.teacher_logits is None:
            return None  # sparse caches: autograd through the bucketed distributions
        t = self.temperature
        t_logp = F.log_softmax(scaled(chunk.teacher_logits.float(), t), dim=-1)
        s_logp = F.log_softmax(scaled(s_logits, t), dim=-1)
        p = t_logp.exp()
        values = t_logp.sub_(s_logp).masked_fill_(p == 0, 0.0).mul_(p).sum(-1) * t**2  # 0 log 0
        return values, s_logp.exp_().sub_(p).mul_(t)
