"""The KL family against float64 references, and their properties (TRL- and torchtune-style)."""

from __future__ import annotations

import pytest
import torch

from distill.losses import LOSSES, StepOutputs
from distill.testing import reference_loss

DIVERGENCES = ["kl", "reverse_kl", "jsd", "skew_kl", "tv"]


def make(seed: int = 0, b: int = 2, t: int = 6, v: int = 11):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(b, t, v, generator=gen, dtype=torch.float64) * 2
    teacher = torch.randn(b, t, v, generator=gen, dtype=torch.float64) * 2
    labels = torch.randint(0, v, (b, t), generator=gen)
    labels[:, :2] = -100  # prompt
    labels[1, -2:] = -100  # padding
    return student, teacher, labels


def value(name: str, student, teacher, labels, **kwargs) -> torch.Tensor:
    loss = LOSSES.build(name, **kwargs)
    return loss(StepOutputs(student.float(), teacher.float()), {"labels": labels})


@pytest.mark.parametrize("name", DIVERGENCES)
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_matches_the_float64_reference(name, temperature):
    s, t, labels = make()
    got = value(name, s, t, labels, temperature=temperature)
    want = float(reference_loss(name, s, t, labels, temperature=temperature))
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("jsd", {"beta": 0.1}), ("jsd", {"beta": 0.9}), ("skew_kl", {"alpha": 0.5})],
)
def test_mixing_parameters_match_the_reference(name, kwargs):
    s, t, labels = make(seed=1)
    got = value(name, s, t, labels, **kwargs).item()
    want = float(reference_loss(name, s, t, labels, **kwargs))
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_zero_for_identical_and_positive_otherwise(name):
    s, t, labels = make(seed=2)
    assert value(name, s, s.clone(), labels).item() == pytest.approx(0.0, abs=1e-6)
    assert value(name, s, t, labels).item() > 0


def test_jsd_limits_are_the_two_kls_and_the_middle_is_symmetric():
    s, t, labels = make(seed=3)
    assert value("jsd", s, t, labels, beta=0.0) == pytest.approx(value("kl", s, t, labels).item())
    assert value("jsd", s, t, labels, beta=1.0) == pytest.approx(
        value("reverse_kl", s, t, labels).item()
    )
    assert value("jsd", s, t, labels).item() == pytest.approx(
        value("jsd", t, s, labels).item(), rel=1e-5
    )
    assert value("jsd", s, t, labels).item() <= torch.log(torch.tensor(2.0)).item()  # JSD <= ln 2
    assert value("skew_kl", s, t, labels, alpha=0.0) == pytest.approx(
        value("kl", s, t, labels).item()
    )


def test_total_variation_is_bounded_by_one():
    s, t, labels = make(seed=4)
    assert 0 < value("tv", s * 50, t * 50, labels).item() <= 1.0


@pytest.mark.parametrize("name", DIVERGENCES)
def test_masked_positions_change_nothing(name):
    s, t, labels = make(seed=5)
    base = value(name, s, t, labels)
    s2, t2 = s.clone(), t.clone()
    masked = (labels[:, 1:] == -100).nonzero()
    for b, pos in masked.tolist():
        s2[b, pos] += 7.0
        t2[b, pos] -= 3.0
    s2[:, -1] += 5.0  # the last position predicts nothing
    assert value(name, s2, t2, labels).item() == pytest.approx(base.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("name", "kwargs", "key"),
    [
        ("jsd", {"beta": 1.5}, "loss.components.jsd.beta"),
        ("skew_kl", {"alpha": 1.0}, "loss.components.skew_kl.alpha"),
        ("reverse_kl", {"temperature": 0}, "loss.components.reverse_kl.temperature"),
        ("tv", {"temperature": -1}, "loss.components.tv.temperature"),
    ],
)
def test_range_errors_name_the_override(name, kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        LOSSES.build(name, **kwargs)
