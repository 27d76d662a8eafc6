"""Sequence-level distillation: cross-entropy on the teacher's answer tokens.

Kim & Rush 2016, "Sequence-Level Knowledge Distillation", https://arxiv.org/abs/1606.07947. This is
the only objective a text-only teacher (Claude) supports.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from distill.losses.base import register_loss
from distill.losses.token import TokenChunk, TokenLoss


@register_loss("ce")
class SequenceCELoss(TokenLoss):
    """Cross-entropy of the student on the teacher's tokens (at temperature 1).

    Args:
        label_smoothing: in [0, 1).
    """

    requires = frozenset({"logits"})
    sparse_kinds = ("topk", "sampled")  # it reads only the labels

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"loss.components.ce.label_smoothing={label_smoothing}: use a value in [0, 1)"
            )
        self.label_smoothing = label_smoothing

    def per_token(self, s_logits: Tensor, chunk: TokenChunk) -> Tensor:
        return F.cross_entropy(
            s_logits, chunk.labels, reduction="none", label_smoothing=self.label_smoothing
        )

    def per_token_grad(self, s_logits: Tensor, chunk: TokenChunk) -> tuple[Tensor, Tensor]:
        """NLL (with smoothing) per token and its gradient softmax - (1 - e) onehot - e / V."""
        eps = self.label_smoothing
        logp = F.log_softmax(s_logits, dim=-1)
        labels = chunk.labels[:, None]
        values = -logp.gather(-1, labels).squeeze(1)
        if eps:
            values = (1 - eps) * values - eps * logp.mean(-1)
        grad = logp.exp_().scatter_add_(-1, labels, logp.new_full(labels.shape, -(1 - eps)))
        if eps:
            grad.sub_(eps / grad.shape[-1])
        return values, grad
