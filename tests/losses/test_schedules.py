"""Schedules: values at given steps for every kind (edges included) and every error message."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from distill.losses.schedules import (
    SCHEDULES,
    build_schedule,
    check_schedule,
    register_schedule,
    resolve_step,
)

PATH = "loss.components.kl.schedule"
MAX = 100


def values(spec: dict, steps: list[int], max_steps: int = MAX) -> list[float]:
    schedule = build_schedule(spec, PATH)
    return [schedule(s, max_steps) for s in steps]


def test_registry_holds_every_builtin_kind():
    assert {"constant", "linear", "cosine", "step", "warmup"} <= set(SCHEDULES.names())


def test_resolve_step_reads_floats_in_0_1_as_fractions():
    assert resolve_step(0.5, 100) == 50
    assert resolve_step(1.0, 7) == 7
    assert resolve_step(0.25, 10) == 3  # 2.5 rounds half up, not to even
    assert resolve_step(1, 100) == 1  # an int is a step, even 1
    assert resolve_step(40.0, 100) == 40  # a whole float above 1 is a step
    assert resolve_step(0, 100) == 0


def test_constant():
    assert values({"kind": "constant", "value": 0.3}, [0, 99, 100, 1000]) == [0.3] * 4
    assert values({"kind": "constant"}, [0]) == [1.0]


def test_linear_over_the_whole_run():
    got = values({"kind": "linear", "start": 0.0, "end": 2.0}, [0, 25, 99, 100, 150])
    assert got == pytest.approx([0.0, 0.5, 1.98, 2.0, 2.0])


def test_linear_over_a_window_in_steps_and_fractions():
    spec = {"kind": "linear", "start": 1.0, "end": 0.0, "begin": 10, "end_step": 30}
    assert values(spec, [0, 10, 20, 30, 99]) == pytest.approx([1.0, 1.0, 0.5, 0.0, 0.0])
    spec = {"kind": "linear", "start": 0.0, "end": 1.0, "begin": 0.1, "end_step": 0.5}
    assert values(spec, [0, 10, 30, 50, 100]) == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


def test_linear_empty_ramp_jumps_at_begin():
    # 0.1 and 0.2 of a 4-step run both round to step 0 or 1: the ramp collapses to a jump.
    spec = {"kind": "linear", "start": 2.0, "end": 4.0, "begin": 0.2, "end_step": 0.3}
    assert values(spec, [0, 1, 3], max_steps=4) == [2.0, 4.0, 4.0]


def test_cosine_is_half_a_cosine():
    got = values({"kind": "cosine", "start": 4.0, "end": 1.0}, [0, 50, 99, 100, 200])
    last = 1.0 + 3.0 * 0.5 * (1 + math.cos(math.pi * 0.99))
    assert got == pytest.approx([4.0, 2.5, last, 1.0, 1.0])
    assert values({"kind": "cosine"}, [0, 50, 100]) == pytest.approx([1.0, 0.5, 0.0])
    spec = {"kind": "cosine", "start": 2.0, "end": 0.0, "begin": 20, "end_step": 40}
    assert values(spec, [0, 20, 30, 40, 99]) == pytest.approx([2.0, 2.0, 1.0, 0.0, 0.0])


def test_step_with_a_factor():
    spec = {"kind": "step", "start": 1.0, "milestones": [10, 20], "factor": 0.5}
    got = values(spec, [0, 9, 10, 19, 20, 99, 1000])
    assert got == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25]
    spec = {"kind": "step", "start": 8.0, "milestones": [0.5], "factor": 0.25}
    assert values(spec, [0, 49, 50, 100]) == [8.0, 8.0, 2.0, 2.0]


def test_step_with_explicit_values_drives_an_integer_curriculum():
    # The progressive layer curriculum: 2 active layers, then 4 at a quarter, 6 at half the run.
    spec = {"kind": "step", "start": 2, "milestones": [0.25, 0.5], "values": [4, 6]}
    assert values(spec, [0, 24, 25, 49, 50, 99, 100]) == [2, 2, 4, 4, 6, 6, 6]


def test_warmup():
    spec = {"kind": "warmup", "value": 2.0, "warmup_steps": 10}
    assert values(spec, [0, 5, 10, 99, 500]) == pytest.approx([0.0, 1.0, 2.0, 2.0, 2.0])
    assert values({"kind": "warmup"}, [0, 5, 10, 100]) == pytest.approx([0.0, 0.5, 1.0, 1.0])
    assert values({"kind": "warmup", "value": 3.0, "warmup_steps": 0}, [0, 1]) == [3.0, 3.0]


def test_schedules_are_pure():
    schedule = build_schedule({"kind": "linear"}, PATH)
    first = [schedule(s, MAX) for s in (70, 10, 70)]
    assert first[0] == first[2] == pytest.approx(0.7)
    assert schedule == build_schedule({"kind": "linear"}, PATH)
    with pytest.raises(AttributeError):
        schedule.start = 3.0  # frozen: nothing to carry between steps


def test_builds_from_an_omegaconf_node():
    node = OmegaConf.create({"kind": "step", "milestones": [10], "values": [0.5]})
    schedule = build_schedule(node, PATH)
    assert schedule.milestones == (10,) and schedule.values == (0.5,)
    assert [schedule(s, MAX) for s in (0, 10)] == [1.0, 0.5]


def test_a_plugin_kind_is_built_like_the_builtins():
    @register_schedule("test_square")
    def square(scale: float = 1.0):
        return lambda step, max_steps: scale * (step / max_steps) ** 2

    assert build_schedule({"kind": "test_square", "scale": 4.0}, PATH)(50, 100) == 1.0
    assert "test_square" in check_schedule({"kind": "test_sqare"}, PATH)[0]


ERRORS = [
    (3, f"{PATH}=3: give a mapping such as {{kind: linear, start: 0.0, end: 1.0}}"),
    ({"start": 1.0}, f"{PATH}.kind is missing: add {PATH}.kind=<one of "),
    ({"kind": "linaer"}, f"{PATH}.kind=linaer: unknown schedule; did you mean linear? "),
    ({"kind": "zzz"}, f"{PATH}.kind=zzz: unknown schedule (registered schedules: constant, "),
    (
        {"kind": "linear", "stop": 1.0},
        f"{PATH}: schedule 'linear': got an unexpected keyword argument 'stop'; its arguments "
        "are: start, end, begin, end_step",
    ),
    ({"kind": "constant", "value": "high"}, f"{PATH}.value='high': use a finite number"),
    ({"kind": "constant", "value": True}, f"{PATH}.value=True: use a finite number"),
    ({"kind": "linear", "end": float("nan")}, f"{PATH}.end=nan: use a finite number"),
    ({"kind": "linear", "start": None}, f"{PATH}.start=None: use a finite number"),
    (
        {"kind": "linear", "begin": -1},
        f"{PATH}.begin=-1: use a step >= 0 (an int) or a fraction of the run in (0, 1]",
    ),
    ({"kind": "cosine", "end_step": 1.5}, f"{PATH}.end_step=1.5: use a step >= 0"),
    (
        {"kind": "linear", "begin": 20, "end_step": 10},
        f"{PATH}.end_step=10: must come after begin=20",
    ),
    (
        {"kind": "cosine", "begin": 0.5, "end_step": 0.5},
        f"{PATH}.end_step=0.5: must come after begin=0.5",
    ),
    (
        {"kind": "step", "factor": 0.5},
        f"{PATH}.milestones is empty: give the steps where the value changes",
    ),
    (
        {"kind": "step", "milestones": [10, 10], "factor": 0.5},
        f"{PATH}.milestones=[10, 10]: must be increasing",
    ),
    (
        {"kind": "step", "milestones": [0.5, 100], "factor": 0.5},
        f"{PATH}.milestones=[0.5, 100]: mixes fractions of the run and absolute steps",
    ),
    ({"kind": "step", "milestones": [5, -2], "factor": 0.5}, f"{PATH}.milestones[1]=-2: use"),
    (
        {"kind": "step", "milestones": [5]},
        f"{PATH}.factor/values: give exactly one (factor: 0.1 or values: [...])",
    ),
    (
        {"kind": "step", "milestones": [5], "factor": 0.1, "values": [1.0]},
        f"{PATH}.factor/values: give exactly one",
    ),
    ({"kind": "step", "milestones": [5], "factor": "x"}, f"{PATH}.factor='x': use a finite"),
    (
        {"kind": "step", "milestones": [5, 9], "values": [1.0]},
        f"{PATH}.values=[1.0]: give one value per milestone (2); `start` is the value before",
    ),
    ({"kind": "step", "milestones": [5], "values": ["a"]}, f"{PATH}.values[0]='a': use a"),
    ({"kind": "warmup", "warmup_steps": 2.5}, f"{PATH}.warmup_steps=2.5: use a step >= 0"),
]


@pytest.mark.parametrize(("spec", "message"), ERRORS)
def test_every_error_names_the_override(spec, message):
    with pytest.raises(ValueError) as err:
        build_schedule(spec, PATH)
    assert str(err.value).startswith(message)
    assert check_schedule(spec, PATH) == str(err.value).splitlines()


def test_check_schedule_accepts_a_good_spec():
    assert check_schedule({"kind": "cosine", "start": 2.0, "end": 1.0, "end_step": 0.8}, PATH) == []
