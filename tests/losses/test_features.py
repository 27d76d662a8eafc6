"""feature_match: hidden states over the layer map, projections, reference values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distill.losses import LOSSES, StepOutputs
from distill.losses.features import FeatureMatchLoss
from tests.losses.conftest import step, unscored


@pytest.mark.parametrize("metric", ["mse", "cosine"])
def test_features_zero_for_the_same_model_and_positive_otherwise(models, batch, metric):
    loss = FeatureMatchLoss(metric=metric)
    same = step(models["teacher"], models["teacher"], batch)
    assert loss(same, batch).item() == pytest.approx(0.0, abs=1e-5)
    assert loss(step(models["student"], models["teacher"], batch), batch).item() > 1e-3


def test_features_match_a_float64_reference(models, batch):
    out = step(models["student"], models["teacher"], batch)
    mask = ~unscored(batch["labels"])
    terms = []
    for s, t in [(0, 1), (1, 3)]:  # uniform, 2 -> 4 layers; index 0 of the tuple is embeddings
        hs = out.student_hidden_states[s + 1].double()
        ht = out.teacher_hidden_states[t + 1].double()
        mse = (hs - ht).pow(2).mean(-1)[mask].mean()
        cos = (1 - torch.cosine_similarity(hs, ht, dim=-1))[mask].mean()
        terms.append((mse, cos))
    for i, metric in enumerate(["mse", "cosine"]):
        want = sum(term[i] for term in terms) / 2
        got = FeatureMatchLoss(metric=metric)(out, batch)
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_features_divide_by_the_global_token_count(models, batch):
    out = step(models["student"], models["teacher"], batch)
    local = FeatureMatchLoss()(out, batch)
    scored = int((~unscored(batch["labels"])).sum())
    given = FeatureMatchLoss()(out, dict(batch, loss_tokens=torch.tensor(2.0 * scored)))
    assert given.item() == pytest.approx(local.item() / 2, rel=1e-6)


def test_features_at_unscored_positions_change_nothing(batch):
    gen = torch.Generator().manual_seed(0)
    student = tuple(torch.randn(2, 12, 8, generator=gen) for _ in range(3))
    teacher = tuple(torch.randn(2, 12, 8, generator=gen) for _ in range(5))
    loss = FeatureMatchLoss()
    before = loss(StepOutputs(student_hidden_states=student, teacher_hidden_states=teacher), batch)
    hide = unscored(batch["labels"])[..., None]
    noisy = tuple(torch.where(hide, 100 * torch.randn_like(h), h) for h in teacher)
    after = loss(StepOutputs(student_hidden_states=student, teacher_hidden_states=noisy), batch)
    assert after.item() == pytest.approx(before.item(), rel=1e-6)
    changed = tuple(h.clone() for h in teacher)
    changed[-1][0, 5] += 3.0  # a scored position of the last layer
    moved = loss(StepOutputs(student_hidden_states=student, teacher_hidden_states=changed), batch)
    assert moved.item() != pytest.approx(before.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("projection", "keys"), [("shared", ["shared"]), ("per_pair", ["s0_t1", "s1_t3"])]
)
def test_projections_are_trainable_state_and_backward_reaches_them(models, batch, projection, keys):
    student, wide = models["student"], models["wide"]
    loss = FeatureMatchLoss(projection=projection)
    out = step(student, wide, batch)
    with pytest.raises(RuntimeError, match=r"width 32 != teacher width 64.*call prepare\("):
        loss(out, batch)
    loss.prepare(student.config, wide.config)
    params = dict(loss.named_parameters())
    assert sorted(params) == sorted(
        f"projections.{k}.{w}" for k in keys for w in ("weight", "bias")
    )
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in params.values())
    assert loss.projections[keys[0]].weight.shape == (64, 32)
    assert set(params) <= set(loss.state_dict())
    first = loss.projections[keys[0]].weight
    loss.prepare(student.config, wide.config)  # a second call keeps the trained projection
    assert loss.projections[keys[0]].weight is first
    loss(out, batch).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_features_take_bf16_and_keep_the_teacher_detached(models, batch):
    student, wide = models["student"], models["wide"]
    loss = FeatureMatchLoss(metric="cosine")
    loss.prepare(student.config, wide.config)
    out = step(student, wide, batch)
    teacher = tuple(h.to(torch.bfloat16).requires_grad_() for h in out.teacher_hidden_states)
    out.student_hidden_states = tuple(h.to(torch.bfloat16) for h in out.student_hidden_states)
    out.teacher_hidden_states = teacher
    value = loss(out, batch)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert all(h.grad is None for h in teacher)


@pytest.mark.parametrize("name", ["feature_match", "attn_transfer"])
def test_active_layers_uses_the_shallow_pairs_first(models, batch, name):
    out = step(models["student"], models["teacher"], batch)
    first, last = (LOSSES.build(name, layers=[p])(out, batch) for p in ([0, 1], [1, 3]))
    loss = LOSSES.build(name)  # uniform: (0, 1), (1, 3)
    assert loss.active_layers == 1.0
    assert loss(out, batch).item() == pytest.approx((first.item() + last.item()) / 2, rel=1e-6)
    loss.active_layers = 0.5
    assert loss(out, batch).item() == pytest.approx(first.item(), rel=1e-6)
    loss.active_layers = 0.0  # at least one pair
    assert loss(out, batch).item() == pytest.approx(first.item(), rel=1e-6)


def test_inactive_per_pair_projections_get_zero_gradients(models, batch):
    """Inactive pairs stay in the graph with weight 0, so DDP finds a gradient for each."""
    student, wide = models["student"], models["wide"]
    loss = FeatureMatchLoss(projection="per_pair")
    loss.prepare(student.config, wide.config)
    loss.active_layers = 0.5
    loss(step(student, wide, batch), batch).backward()
    assert loss.projections["s0_t1"].weight.grad.abs().sum() > 0
    assert torch.equal(loss.projections["s1_t3"].weight.grad, torch.zeros(64, 32))
