"""The rows one chunk of a token loss sees, and the per-row math every token loss shares.

`distill.losses.chunked` cuts a step's scored positions into chunks; each `TokenChunk` carries
the labels and the teacher's signal (dense logits or a sparse cache) at those rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# Log-weight of an unused sparse slot: exp() is exactly 0 and NEG - NEG is 0, so padded slots add
# nothing to any divergence and pass no NaN into a gradient (-inf would: 0 * (-inf - -inf)).
NEG = -1e30
TOKEN_WEIGHTINGS = ("none", "teacher_confidence", "teacher_entropy", "code_only")


@dataclass
class SparseRows:
    """A sparse teacher distribution at n rows; see `distill.losses.base.SparseTargets`."""

    ids: Tensor  # (n, K)
    logp: Tensor  # (n, K)
    tail_logp: Tensor  # (n,)
    kind: str
    temperature: float
    entropy: Tensor | None = None  # (n,)


@dataclass
class TokenChunk:
    """What a component sees of n scored rows besides the student's logits.

    Attributes:
        labels: (n,) the next token of each row (the teacher's answer token).
        teacher_logits: (n, V) dense teacher logits as stored (any float dtype), or None.
        sparse: the teacher's sparse distribution at the rows, or None.
        code: (n,) bool, True on tokens inside a fenced code block, or None.
    """

    labels: Tensor
    teacher_logits: Tensor | None = None
    sparse: SparseRows | None = None
    code: Tensor | None = None


def sparse_log_probs(s_logp: Tensor, sparse: SparseRows) -> tuple[Tensor, Tensor]:
    """Teacher and student over the K stored tokens plus one tail bucket: (n, K + 1) each.

    The tail bucket holds all probability outside the stored tokens, so both sides stay proper
    distributions and no mass is renormalised away; any divergence on them is a lower bound of
    the dense one (data processing), equal when the tail is empty.
    """
    pad = sparse.logp.isneginf()
    t_ids = sparse.logp.float().masked_fill(pad, NEG)
    s_ids = s_logp.gather(-1, sparse.ids).masked_fill(pad, NEG)
    # The student's tail straight from the tokens outside the stored ones: 1 - sum(p) would
    # cancel catastrophically when the stored tokens hold nearly all the mass.
    stored = torch.zeros_like(s_logp, dtype=torch.bool).scatter_(-1, sparse.ids, ~pad)
    s_tail = torch.logsumexp(s_logp.masked_fill(stored, NEG), dim=-1)
    t_tail = sparse.tail_logp.float()
    t_tail = t_tail.masked_fill(t_tail.isneginf(), NEG)
    return torch.cat([t_ids, t_tail[:, None]], -1), torch.cat([s_ids, s_tail[:, None]], -1)


def scaled(logits: Tensor, temperature: float) -> Tensor:
    """logits / T, without an (n, V) copy at T=1."""
    return logits if temperature == 1 else logits / temperature


def aligned_log_probs(
    s_logits: Tensor, chunk: TokenChunk, temperature: float, name: str
) -> tuple[Tensor, Tensor]:
    """(teacher, student) log-probabilities at the distillation temperature on one support.

    Args:
        s_logits: (n, V) fp32 student logits.
        chunk: the teacher's signal at the same rows.
        temperature: the distillation temperature.
        name: the component, for the error message.

    Returns:
        Two (n, V) tensors with an online teacher, or two (n, K + 1) with a top-k cache.
    """
    s_logp = F.log_softmax(scaled(s_logits, temperature), dim=-1)
    if chunk.teacher_logits is not None:
        t_logp = F.log_softmax(scaled(chunk.teacher_logits.float(), temperature), dim=-1)
        return t_logp, s_logp
    if chunk.sparse is None:
        raise ValueError(f"loss '{name}' needs teacher logits: an online teacher or a logit cache")
    if chunk.sparse.kind != "topk":
        raise ValueError(
            f"loss '{name}' needs the teacher's distribution over every token, which a "
            f"'{chunk.sparse.kind}' cache only estimates; build a top-k cache "
            "(teacher_cache.kind=topk) or use loss.components.kl"
        )
    return sparse_log_probs(s_logp, chunk.sparse)


@torch.no_grad()
def teacher_token_weights(kind: str, chunk: TokenChunk, name: str) -> Tensor | None:
    """Per-token weights in [0, 1] for `token_weighting`, or None for `none`.

    `teacher_confidence` is the teacher's top-1 probability (stress what the teacher is sure of);
    `teacher_entropy` its entropy over log(V) (stress where it hesitates, the "dark knowledge");
    `code_only` is 1 inside fenced code blocks and 0 on prose. Weighted sums are divided by the
    number of scored tokens, not by the weights' sum, so the global-batch normalisation stays exact.
    """
    if kind == "none":
        return None
    if kind == "code_only":
        if chunk.code is None:
            raise ValueError(f"loss.components.{name}.token_weighting=code_only needs code_mask")
        return chunk.code.float()
    if chunk.teacher_logits is not None:
        t_logp = F.log_softmax(chunk.teacher_logits.float(), dim=-1)
        vocab = t_logp.shape[-1]
    elif chunk.sparse is not None:
        t_logp = torch.cat([chunk.sparse.logp.float(), chunk.sparse.tail_logp.float()[:, None]], -1)
        vocab = chunk.sparse.ids.shape[-1] + 1
    else:
        raise ValueError(
            f"loss.components.{name}.token_weighting={kind} needs teacher logits: add a white-box "
            "teacher or its logit cache, or use token_weighting=none"
        )
    if kind == "teacher_confidence":
        return t_logp.max(-1).values.exp()
    if chunk.sparse is not None and chunk.sparse.entropy is not None:
        entropy = chunk.sparse.entropy.float()
    else:
        entropy = -(t_logp.exp() * t_logp.clamp(min=NEG)).sum(-1)
    return (entropy / math.log(vocab)).clamp(0.0, 1.0)
