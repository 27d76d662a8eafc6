"""consistency (R-Drop): symmetric KL between two dropout passes of the student."""

from __future__ import annotations

import pytest
import torch

from distill.losses import StepOutputs
from distill.losses.consistency import ConsistencyLoss
from distill.testing import tiny_llama
from tests.losses.conftest import unscored


def consistency_reference(first, second, labels, temperature=1.0) -> float:
    p = torch.log_softmax(first.double() / temperature, -1)
    q = torch.log_softmax(second.double() / temperature, -1)
    per = 0.5 * ((p.exp() * (p - q)).sum(-1) + (q.exp() * (q - p)).sum(-1))
    return float(per[~unscored(labels)].mean() * temperature**2)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_consistency_matches_the_reference_and_is_symmetric(batch, temperature):
    gen = torch.Generator().manual_seed(0)
    a, b = (3 * torch.randn(2, 12, 11, generator=gen) for _ in range(2))
    loss = ConsistencyLoss(temperature)
    value = loss(StepOutputs(student_logits=a, student_second_logits=b), batch)
    want = consistency_reference(a, b, batch["labels"], temperature)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(want, rel=1e-5)
    swapped = loss(StepOutputs(student_logits=b, student_second_logits=a), batch)
    assert swapped.item() == pytest.approx(value.item(), rel=1e-6)
    assert loss(StepOutputs(student_logits=a, student_second_logits=a), batch).item() == 0.0
    hide = unscored(batch["labels"])[..., None]
    noisy = torch.where(hide, 50 * torch.randn_like(b), b)
    masked = loss(StepOutputs(student_logits=a, student_second_logits=noisy), batch)
    assert masked.item() == pytest.approx(value.item(), rel=1e-6)


def test_consistency_trains_both_passes_of_a_dropout_student(batch):
    student = tiny_llama(2, seed=2).train()
    for module in student.modules():
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.3  # tiny_llama has no dropout of its own
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    first, second = student(**inputs).logits, student(**inputs).logits
    first.retain_grad(), second.retain_grad()
    value = ConsistencyLoss()(
        StepOutputs(student_logits=first, student_second_logits=second), batch
    )
    assert value.item() > 0
    value.backward()
    assert first.grad.abs().sum() > 0 and second.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    with pytest.raises(ValueError, match=r"consistency: .*no second student pass.*'second_pass'"):
        ConsistencyLoss()(StepOutputs(student_logits=first), batch)
