"""Held-out scores of a model on the teacher's answers: token-weighted CE and top-1 agreement."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from distill.losses.base import next_token_targets


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
    ce_sum, agree_sum, tokens = 0.0, 0.0, 0
    for batch in batches:
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        logits, targets, mask = next_token_targets(model(**inputs).logits.float(), batch["labels"])
        ce = nn.functional.cross_entropy(
            logits.transpose(1, 2), targets.clamp(min=0), reduction="none"
        )
        ce_sum += float(ce[mask].sum())
        tokens += int(mask.sum())
        if teacher is not None:
            t_logits = logits if teacher is model else teacher(**inputs).logits[:, :-1]
            agree_sum += float((logits.argmax(-1) == t_logits.argmax(-1))[mask].sum())
    model.train(was_training)
    scores = {"ce": ce_sum / max(tokens, 1), "tokens": tokens}
    if teacher is not None:
        scores["top1_agreement"] = agree_sum / max(tokens, 1)
    return scores
