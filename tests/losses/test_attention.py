"""attn_transfer: attention maps over the layer map, head mixing, reference values."""

from __future__ import annotations

import pytest
import torch

from distill.losses import StepOutputs
from distill.losses.attention import AttentionTransferLoss
from tests.losses.conftest import step, unscored


@pytest.mark.parametrize("metric", ["kl", "mse"])
def test_attention_zero_for_the_same_model_and_positive_otherwise(models, batch, metric):
    loss = AttentionTransferLoss(metric=metric)
    same = step(models["teacher"], models["teacher"], batch)
    assert loss(same, batch).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(step(models["student"], models["teacher"], batch), batch).item() > 1e-4


def attention_reference(student, teacher, labels, metric="kl") -> float:
    """float64 loops: rows averaged over heads on both sides, mean over scored queries."""
    values = []
    for b, q in zip(*torch.nonzero(~unscored(labels), as_tuple=True), strict=True):
        s = student[b, :, q].detach().double().mean(0)
        t = teacher[b, :, q].double().mean(0)
        keep = t > 0
        kl = (t[keep] * (t[keep].log() - s[keep].log())).sum()
        values.append(kl if metric == "kl" else (t - s).pow(2).sum())
    return float(sum(values) / len(values))


@pytest.mark.parametrize("metric", ["kl", "mse"])
def test_attention_matches_a_float64_reference(models, batch, metric):
    out = step(models["student"], models["heads8"], batch)  # 4 vs 8 heads, averaged
    want = (
        sum(
            attention_reference(
                out.student_attentions[s], out.teacher_attentions[t], batch["labels"], metric
            )
            for s, t in [(0, 1), (1, 3)]
        )
        / 2
    )
    got = AttentionTransferLoss(metric=metric)(out, batch)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-5)


def synthetic_attention(gen, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """(2, heads, 12, 12) causal rows over the real keys of `mask` (B, T)."""
    scores = torch.randn(2, heads, 12, 12, generator=gen)
    causal = torch.ones(12, 12, dtype=torch.bool).tril()
    allowed = causal & mask[:, None, None, :].bool()
    return scores.masked_fill(~allowed, float("-inf")).softmax(-1).nan_to_num()


def test_attention_ignores_unscored_queries_and_padded_keys(batch):
    left = dict(batch)  # left padding: the real queries of row 1 see 2 padded keys
    left["attention_mask"] = torch.ones(2, 12, dtype=torch.long)
    left["attention_mask"][1, :2] = 0
    gen = torch.Generator().manual_seed(0)
    student = tuple(synthetic_attention(gen, 4, left["attention_mask"]) for _ in range(2))
    teacher = tuple(synthetic_attention(gen, 4, left["attention_mask"]) for _ in range(4))
    loss = AttentionTransferLoss()
    before = loss(StepOutputs(student_attentions=student, teacher_attentions=teacher), left)
    # Mass moved onto the padded keys counts for nothing: rows are renormalised without them.
    pad = (1 - left["attention_mask"])[:, None, None, :].float()
    leaky = tuple(0.7 * a + 0.3 * pad / 2 for a in teacher)
    after = loss(StepOutputs(student_attentions=student, teacher_attentions=leaky), left)
    assert after.item() == pytest.approx(before.item(), rel=1e-5)
    # Unscored query rows change nothing either.
    hide = unscored(left["labels"])[:, None, :, None]
    other = tuple(torch.where(hide, a.flip(-1), a) for a in teacher)
    after = loss(StepOutputs(student_attentions=student, teacher_attentions=other), left)
    assert after.item() == pytest.approx(before.item(), rel=1e-6)


def test_head_mixing_is_trainable_and_starts_as_the_average(models, batch):
    student, teacher = models["student"], models["heads8"]
    mix = AttentionTransferLoss(heads="mix")
    out = step(student, teacher, batch)
    with pytest.raises(RuntimeError, match=r"heads=mix: no 8 -> 4 head mixing.*prepare\("):
        mix(out, batch)
    mix.prepare(student.config, teacher.config)
    assert sorted(dict(mix.named_parameters())) == ["mixing.s0_t1", "mixing.s1_t3"]
    assert mix.mixing["s0_t1"].shape == (4, 8) and mix.mixing["s0_t1"].requires_grad
    assert {"mixing.s0_t1", "mixing.s1_t3"} <= set(mix.state_dict())
    # At init each student head is compared with the teacher's head average.
    pairs = [(0, 1), (1, 3)]
    want = 0.0
    for s, t in pairs:
        t_avg = out.teacher_attentions[t].mean(1, keepdim=True)
        for h in range(4):
            s_head = out.student_attentions[s][:, h : h + 1]
            want += attention_reference(s_head, t_avg, batch["labels"]) / (4 * len(pairs))
    value = mix(out, batch)
    assert value.item() == pytest.approx(want, rel=1e-5)
    value.backward()
    assert all(p.grad.abs().sum() > 0 for p in mix.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
