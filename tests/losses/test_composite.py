"""The composite: schedules on weights, temperatures and layers, adaptive weights, its checks."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from distill.losses import StepOutputs, build_loss, check_loss_config
from tests.losses.conftest import CONF, step

from .test_chunked import make


def outputs():
    hidden, head, teacher, labels = make()
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_logits=teacher)
    return out, {"labels": labels}


def test_a_weight_schedule_multiplies_the_weight_at_each_step():
    loss = build_loss(
        {
            "ce": {"weight": 1.0},
            "kl": {"weight": 0.5, "schedule": {"kind": "linear", "start": 0.0, "end": 1.0}},
        }
    )
    loss.set_step(0, max_steps=10)
    assert loss.weights == {"ce": 1.0, "kl": 0.0}
    loss.set_step(5, max_steps=10)
    assert loss.weights["kl"] == pytest.approx(0.25)
    loss.set_step(10, max_steps=10)
    assert loss.weights["kl"] == pytest.approx(0.5)
    out, batch = outputs()
    result = loss(out, batch)
    assert result.total.item() == pytest.approx(
        result.parts["ce"].item() + 0.5 * result.parts["kl"].item(), rel=1e-6
    )


def test_temperature_annealing_sets_the_distillation_temperature():
    schedule = {"kind": "linear", "start": 4.0, "end": 1.0}
    loss = build_loss({"kl": {"weight": 1.0, "temperature_schedule": schedule}})
    out, batch = outputs()
    loss.set_step(0, max_steps=6)
    assert loss.components["kl"].temperature == pytest.approx(4.0)
    hot = loss(out, batch).parts["kl"].item()
    loss.set_step(6, max_steps=6)
    assert loss.components["kl"].temperature == pytest.approx(1.0)
    cold = loss(out, batch).parts["kl"].item()
    fixed = build_loss({"kl": {"weight": 1.0, "temperature": 1.0}})(out, batch).parts["kl"]
    assert cold == pytest.approx(fixed.item())
    assert hot != pytest.approx(cold)


def test_the_schedule_step_is_part_of_the_state_dict():
    spec = {"kl": {"weight": 1.0, "schedule": {"kind": "linear", "start": 0.0, "end": 1.0}}}
    trained = build_loss(spec)
    trained.set_step(7, max_steps=10)
    state = trained.state_dict()
    assert int(state["step"]) == 7
    resumed = build_loss(spec)
    resumed.load_state_dict(state)
    resumed.set_step(int(resumed.step), max_steps=10)
    assert resumed.weights == trained.weights


def test_adaptive_weights_follow_kendall_et_al():
    """total = sum_i exp(-s_i) w_i L_i + s_i: d/ds_i = 1 - exp(-s_i) w_i L_i."""
    loss = build_loss({"ce": {"weight": 1.0}, "kl": {"weight": 0.5}}, adaptive=True)
    with torch.no_grad():
        loss.log_vars.copy_(torch.tensor([0.3, -0.2]))
    out, batch = outputs()
    result = loss(out, batch)
    ce, kl = result.parts["ce"].item(), result.parts["kl"].item()
    want = math.exp(-0.3) * ce + math.exp(0.2) * 0.5 * kl + 0.3 - 0.2
    assert result.total.item() == pytest.approx(want, rel=1e-5)
    assert result.weights["kl"] == pytest.approx(0.5 * math.exp(0.2))
    result.total.backward()
    grad = loss.log_vars.grad
    assert grad[0].item() == pytest.approx(1 - math.exp(-0.3) * ce, rel=1e-5)
    assert grad[1].item() == pytest.approx(1 - math.exp(0.2) * 0.5 * kl, rel=1e-5)
    assert "log_vars" in dict(loss.named_parameters())  # trained and saved with the adapters


def test_teacher_scored_only_leaves_out_ce_on_on_policy_batches():
    loss = build_loss({"ce": {"weight": 1.0}, "kl": {"weight": 1.0}})
    out, batch = outputs()
    result = loss(out, batch, teacher_scored_only=True)
    assert set(result.parts) == {"kl"}
    assert result.total.item() == pytest.approx(result.parts["kl"].item())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"kl": {"schedule": {"kind": "linaer"}}},
            "loss.components.kl.schedule.kind=linaer",
        ),
        (
            {"ce": {"temperature_schedule": {"kind": "constant", "value": 2.0}}, "kl": {}},
            None,
        ),
        (
            {"kl": {"layer_schedule": {"kind": "linear", "start": 0.5, "end": 1.0}}},
            "loss.components.kl.layer_schedule: 'kl' maps no layers",
        ),
        (
            {"kl": {"token_weighting": "loud"}},
            "loss.components.kl.token_weighting='loud': use one of none, teacher_confidence",
        ),
    ],
)
def test_composite_options_are_checked_before_any_weights_load(spec, message):
    problems = list(check_loss_config(spec, teacher_white_box=True))
    if message is None:
        assert problems == []
    else:
        assert any(message in p for p in problems), problems


@pytest.mark.parametrize(
    ("preset", "component"), [("kl_attn", "attn_transfer"), ("kl_feature", "feature_match")]
)
def test_presets_build_with_their_components(models, batch, preset, component):
    cfg = OmegaConf.load(CONF / f"{preset}.yaml")
    assert list(check_loss_config(cfg.components, teacher_white_box=True)) == []
    loss = build_loss(cfg.components)
    assert set(loss.components) == {"ce", "kl", component}
    assert loss.weights[component] == pytest.approx(0.1)
    result = loss(step(models["student"], models["teacher"], batch), batch)
    assert torch.isfinite(result.total) and result.parts[component].item() > 0


def test_composite_prepares_projections_and_drives_the_layer_curriculum(models):
    spec = {"weight": 1.0, "layer_schedule": {"kind": "linear", "start": 0.5, "end": 1.0}}
    components = {"feature_match": spec, "attn_transfer": dict(spec, heads="mix")}
    assert list(check_loss_config(components, teacher_white_box=True)) == []
    loss = build_loss(components)
    loss.prepare(models["student"].config, models["heads8"].config)
    names = {n for n, p in loss.named_parameters() if p.requires_grad}
    assert "components.feature_match.projections.shared.weight" in names
    assert {f"components.attn_transfer.mixing.{k}" for k in ("s0_t1", "s1_t3")} <= names
    loss.set_step(0, max_steps=10)
    assert loss.components["feature_match"].active_layers == pytest.approx(0.5)
