"""Held-out scores of a model on the teacher's answers: token-weighted CE and top-1 agreement."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from distill.losses.base import next_token_targets


@torch.no_grad()
def answer_token_scores(
    logits: Tensor,
    teacher_logits: Tensor | None,
    labels: Tensor,
    teacher_top1: Tensor | None = None,
) -> dict[str, Tensor]:
    """Mean CE, top-1 agreement and KL(teacher || model) over one batch's answer tokens, and
    how many there were.

    Args:
        logits: (B, T, V) logits of the model scored.
        teacher_logits: (B, T, V) teacher logits, or None.
        labels: (B, T) with -100 on prompt and padding.
        teacher_top1: (B, T) the teacher's most likely ids when its logits are not at hand
            (from a top-k logit cache); no agreement when both are None.
    """
    logits, targets, mask = next_token_targets(logits.float(), labels)
    tokens = mask.sum().clamp(min=1)
    ce = nn.functional.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
    scores = {"ce": ce[mask].sum() / tokens, "tokens": mask.sum()}
    if teacher_logits is not None:
        teacher_top1 = teacher_logits.argmax(-1)
        scores["kl"] = teacher_kl(logits[mask], teacher_logits[:, :-1][mask]) / tokens
    if teacher_top1 is not None:
        agree = logits.argmax(-1) == teacher_top1[:, :-1]
        scores["top1_agreement"] = agree[mask].sum() / tokens
    return scores


def teacher_kl(logits: Tensor, teacher_logits: Tensor, rows: int = 256) -> Tensor:
    """Summed forward KL(teacher || model) at temperature 1 over N scored positions.

    Args:
        logits: (N, V) logits of the model scored.
        teacher_logits: (N, V') teacher logits; the shared first min(V, V') ids are compared
            (a teacher's padded embedding rows are no real tokens).
        rows: positions per chunk, so (rows, V) fp32 temporaries bound the memory.
    """
    vocab = min(logits.shape[-1], teacher_logits.shape[-1])
    total = torch.zeros((), dtype=torch.float32, device=logits.device)
    for start in range(0, logits.shape[0], rows):
        s = torch.log_softmax(logits[start : start + rows, :vocab].float(), -1)
        t = torch.log_softmax(teacher_logits[start : start + rows, :vocab].float(), -1)
        total += (t.exp() * (t - s)).sum()
    return total


@torch.no_grad()
def heldout_scores(
    model: nn.Module, teacher: nn.Module | None, batches: Iterable[dict[str, Tensor]]
) -> dict[str, float]:
    """Cross-entropy (nats/token) on the answer tokens, and top-1 agreement with `teacher`.

    Args:
        model: the model scored.
        teacher: the white-box teacher, or None (no agreement column).
        batches: padded batches with `labels` (-100 on prompt and padding).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    for batch in batches:
        inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}
        logits = model(**inputs).logits
        t_logits = (
            None if teacher is None else logits if teacher is model else teacher(**inputs).logits
        )
        scores = answer_token_scores(logits, t_logits, batch["labels"].to(device))
        n = float(scores.pop("tokens"))
        sums["tokens"] = sums.get("tokens", 0.0) + n
        for key, value in scores.items():
            sums[key] = sums.get(key, 0.0) + float(value) * n
    model.train(was_training)
    tokens = sums.pop("tokens", 0.0)
    return {"tokens": int(tokens), **{k: v / max(tokens, 1.0) for k, v in sums.items()}}
