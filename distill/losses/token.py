"""Token-level losses: a per-token function of the student's logits at one scored position.

A `TokenLoss` never sees the (B, T, V) logits of a batch: `distill.losses.chunked` projects the
student's hidden states through its lm_head a few rows at a time and hands each component the fp32
logits of those rows, with the teacher's signal at the same rows (dense logits or a sparse cache).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from distill.losses.base import DistillLoss, StepOutputs, kl_per_token, mixture_log_probs
from distill.losses.chunked import fused_token_losses
from distill.losses.rows import TokenChunk, aligned_log_probs, scaled

# What a token loss plugin imports from here (the rows' math lives in distill.losses.rows).
__all__ = [
    "TokenChunk",
    "TokenLoss",
    "aligned_log_probs",
    "kl_per_token",
    "mixture_log_probs",
    "scaled",
]


class TokenLoss(DistillLoss):
    """Base of the logit losses: implement `per_token(s_logits, chunk) -> (n,)`.

    The composite sets two attributes from config before each step: `temperature` (the
    distillation temperature, possibly annealed by a schedule) and `token_weighting`. `forward`
    runs the component alone through the chunked path; in training the composite fuses every
    token loss into one pass, so the lm_head projection is computed once per chunk for all.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"logits", "teacher_logits"})
    # Which sparse caches the component can learn from ("topk", "sampled").
    sparse_kinds: ClassVar[tuple[str, ...]] = ("topk",)
    temperature: float = 1.0
    token_weighting: str = "none"

    def per_token(self, s_logits: Tensor, chunk: TokenChunk) -> Tensor:  # pragma: no cover
        """(n, V) fp32 student logits of n scored rows -> (n,) fp32 per-token values."""
        raise NotImplementedError

    def per_token_grad(self, s_logits: Tensor, chunk: TokenChunk) -> tuple[Tensor, Tensor] | None:
        """(values (n,), d values.sum() / d s_logits (n, V)) in closed form, or None to let the
        chunked pass differentiate `per_token` with autograd. A speed and memory path only: it
        must agree with `per_token` (tests/losses/test_chunked.py checks both against float64)."""
        return None

    def forward(self, out: StepOutputs, batch: dict[str, Any]) -> Tensor:
        return fused_token_losses(out, batch, {"self": (self, 1.0)}).total
