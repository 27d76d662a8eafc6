"""Loss math against float64 references, the registry, the config check and the contract."""

from __future__ import annotations

import sys

import pytest
import torch

from distill.losses import (
    LOSSES,
    CompositeLoss,
    StepOutputs,
    build_loss,
    check_loss_config,
    load_plugins,
    register_loss,
)
from distill.losses.ce import SequenceCELoss
from distill.losses.kl import ForwardKLLoss
from distill.testing import check_loss_contract, reference_loss

B, T, V = 2, 6, 11


@pytest.fixture
def labels() -> torch.Tensor:
    """Prompt (-100) then answer tokens; the second row ends in padding (-100)."""
    return torch.tensor([[-100, -100, 3, 7, 1, 9], [-100, 4, 4, 0, -100, -100]])


def logits(seed: int, requires_grad: bool = False) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(B, T, V, generator=gen)).requires_grad_(requires_grad)


def scored(labels: torch.Tensor) -> list[tuple[int, int]]:
    """(row, position) of every logit that is scored: the label one step ahead is not -100."""
    return [(b, t) for b in range(B) for t in range(T - 1) if labels[b, t + 1] != -100]


def unscored_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B, T) True where a logit must not matter: the next label is -100, or no next token."""
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] == -100
    return mask


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_ce_matches_float64_reference(labels, smoothing):
    student = logits(0)
    value = SequenceCELoss(smoothing)(StepOutputs(student), {"labels": labels})
    assert value.dtype == torch.float32
    want = reference_loss("ce", student.detach(), None, labels, label_smoothing=smoothing)
    assert value.item() == pytest.approx(want.item(), rel=1e-5)


@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_ce_label_smoothing_range_names_the_override(bad):
    with pytest.raises(ValueError, match=r"loss\.components\.ce\.label_smoothing"):
        SequenceCELoss(label_smoothing=bad)


def test_logits_at_t_are_scored_against_the_label_at_t_plus_1(labels):
    targets = labels.clamp(min=0)
    shifted = torch.full((B, T, V), -20.0)
    shifted[:, :-1].scatter_(-1, targets[:, 1:, None], 20.0)  # logit t predicts label t+1
    unshifted = torch.full((B, T, V), -20.0).scatter_(-1, targets[:, :, None], 20.0)
    ce = SequenceCELoss()
    assert ce(StepOutputs(shifted), {"labels": labels}).item() < 1e-6
    assert ce(StepOutputs(unshifted), {"labels": labels}).item() > 10


def test_kl_is_zero_for_identical_logits(labels):
    same = logits(0)
    for temperature in (0.5, 1.0, 3.0):
        value = ForwardKLLoss(temperature)(StepOutputs(same, same.clone()), {"labels": labels})
        assert abs(value.item()) < 1e-6


def test_kl_is_non_negative_on_random_logits(labels):
    for seed in range(20):
        out = StepOutputs(logits(2 * seed), logits(2 * seed + 1))
        assert ForwardKLLoss(temperature=1 + seed % 3)(out, {"labels": labels}).item() >= 0


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kl_matches_float64_dense_reference(labels, temperature):
    student, teacher = logits(0), logits(1)
    value = ForwardKLLoss(temperature)(StepOutputs(student, teacher), {"labels": labels})
    expected = float(reference_loss("kl", student.detach(), teacher, labels, temperature))
    assert expected > 0.1  # a reference that is not trivially zero
    assert value.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["ce", "kl"])
def test_logits_at_unscored_positions_change_nothing(labels, name):
    loss = LOSSES.build(name)
    student, teacher = logits(0), logits(1)
    before = loss(StepOutputs(student, teacher), {"labels": labels})
    hidden = unscored_mask(labels)[..., None]
    noisy_student = torch.where(hidden, 100 * logits(2), student)
    noisy_teacher = torch.where(hidden, 100 * logits(3), teacher)
    after = loss(StepOutputs(noisy_student, noisy_teacher), {"labels": labels})
    assert after.item() == pytest.approx(before.item(), abs=1e-6)
    # ...while a scored position does change the value.
    b, t = scored(labels)[0]
    student[b, t] += 5 * torch.arange(V)
    assert loss(StepOutputs(student, teacher), {"labels": labels}).item() != before.item()


def test_kl_gradient_reaches_only_the_student(labels):
    student, teacher = logits(0, requires_grad=True), logits(1, requires_grad=True)
    ForwardKLLoss(2.0)(StepOutputs(student, teacher), {"labels": labels}).backward()
    assert teacher.grad is None
    assert student.grad.abs().sum() > 0
    assert student.grad[unscored_mask(labels)].abs().sum() == 0


def test_losses_guard_against_no_scored_token():
    nothing = torch.full((B, T), -100)
    for name in ("ce", "kl"):
        assert LOSSES.build(name)(StepOutputs(logits(0), logits(1)), {"labels": nothing}) == 0


# --- registry -------------------------------------------------------------------------------


def test_unknown_loss_names_the_closest_and_the_list():
    with pytest.raises(KeyError) as err:
        LOSSES.get("kll")
    message = err.value.args[0]
    assert "loss 'kll' is not registered (closest: 'kl')" in message
    assert f"registered losses: {', '.join(LOSSES.names())}" in message


def test_registering_another_class_under_a_taken_name_raises():
    class Impostor(SequenceCELoss):
        pass

    with pytest.raises(ValueError, match="'kl' is already registered by .*ForwardKLLoss"):
        register_loss("kl")(Impostor)
    assert LOSSES.get("kl") is ForwardKLLoss
    assert register_loss("kl")(ForwardKLLoss) is ForwardKLLoss  # the same class again is fine


def test_bind_with_a_bad_kwarg_names_the_allowed_arguments():
    with pytest.raises(TypeError, match="loss 'kl': .*temprature.*its arguments are: temperature"):
        LOSSES.bind("kl", {"temprature": 2.0})
    assert LOSSES.bind("kl", {"temperature": 2.0}).arguments == {"temperature": 2.0}


PLUGIN = """
from distill.losses import DistillLoss, register_loss
from distill.losses.base import as_fp32, masked_mean, next_token_targets


@register_loss("my_test_loss")
class MyTestLoss(DistillLoss):
    def forward(self, out, batch):
        logits, _, mask = next_token_targets(out.student_logits, batch["labels"])
        return masked_mean(as_fp32(logits).logsumexp(-1), mask)
"""


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    (tmp_path / "distill_test_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "distill_test_plugin"
    LOSSES._items.pop("my_test_loss", None)
    sys.modules.pop("distill_test_plugin", None)


def test_load_plugins_registers_a_researchers_module(plugin_module):
    assert "my_test_loss" not in LOSSES.names()
    load_plugins([plugin_module])
    assert "my_test_loss" in LOSSES.names()
    assert check_loss_contract("my_test_loss").item() > 0  # what a plugin author runs


def test_a_bad_plugin_path_names_the_plugins_key():
    with pytest.raises(ImportError, match=r"plugins: could not import 'no_such_module_xyz'"):
        load_plugins(["no_such_module_xyz"])


# --- config check and composite ---------------------------------------------------------------


def test_check_loss_config_reports_every_problem():
    problems = list(
        check_loss_config(
            {"kll": {"weight": 1.0}, "ce": {"weight": -1.0}, "kl": {"temprature": 2.0}},
            teacher_white_box=True,
        )
    )
    assert len(problems) == 3, problems
    assert problems[0].startswith("loss.components.kll: loss 'kll' is not registered")
    assert problems[1] == "loss.components.ce.weight=-1.0: use a number >= 0"
    assert problems[2].startswith("loss.components.kl: ") and "temperature" in problems[2]


def test_check_loss_config_reports_no_active_component():
    problems = list(check_loss_config({"ce": {"weight": 0}}, teacher_white_box=False))
    assert problems == [
        "loss.components has no component with weight > 0: e.g. loss=ce or loss=ce_kl"
    ]


def test_check_loss_config_names_the_component_range_check():
    # one problem only: ce (weight 1 by default) is active, just misconfigured
    (problem,) = check_loss_config({"ce": {"label_smoothing": 1.5}}, teacher_white_box=False)
    assert problem.startswith("loss.components.ce: loss.components.ce.label_smoothing=1.5")


def test_white_box_loss_with_a_text_only_teacher_says_what_to_do():
    (problem,) = check_loss_config({"kl": {"weight": 0.5}}, teacher_white_box=False)
    assert problem.startswith("loss.components.kl needs teacher_logits")
    assert "log-probabilities" in problem and "loss=ce" in problem
    assert list(check_loss_config({"kl": {"weight": 0.5}}, teacher_white_box=True)) == []
    # weight 0 switches the component off, so it needs no teacher
    assert list(check_loss_config({"ce": None, "kl": {"weight": 0}}, teacher_white_box=False)) == []


def test_build_loss_skips_weight_zero_components():
    loss = build_loss({"ce": {"weight": 1.0}, "kl": {"weight": 0, "temperature": 2.0}})
    assert list(loss.components) == ["ce"]
    assert not loss.needs_white_box
    assert build_loss({"ce": None, "kl": {"weight": 0.5}}).needs_white_box


def test_composite_total_is_the_weighted_sum_of_parts(labels):
    loss = build_loss(
        {"ce": {"weight": 0.3, "schedule": None}, "kl": {"weight": 0.7, "temperature": 2.0}}
    )
    assert isinstance(loss, CompositeLoss)
    assert loss.weights == {"ce": 0.3, "kl": 0.7}
    out, batch = StepOutputs(logits(0), logits(1)), {"labels": labels}
    result = loss(out, batch)
    total, parts = result.total, result.parts
    assert parts["kl"].item() == pytest.approx(ForwardKLLoss(2.0)(out, batch).item())
    assert parts["ce"].item() == pytest.approx(SequenceCELoss()(out, batch).item())
    assert total.item() == pytest.approx(0.3 * parts["ce"].item() + 0.7 * parts["kl"].item())


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_loss_keeps_the_contract(name):
    value = check_loss_contract(name)
    assert value.dtype == torch.float32 and value.dim() == 0 and torch.isfinite(value)
