"""The dataclasses in distill/config/ hold the defaults: `distill <stage>` with no overrides runs
exactly the schemas' values, so a YAML file that shows a default (conf/config.yaml, the default
option of a group) cannot drift from it. The model and loss groups (teacher, student, loss) are
descriptions of one model or preset each, so their schemas hold only what every option shares."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from distill.config import DataConfig, EvalConfig, HardwareConfig, LogitCacheConfig, TrainConfig
from tests.conftest import compose_config

SCHEMAS = {
    "data": DataConfig,
    "hardware": HardwareConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "teacher_cache": LogitCacheConfig,
}
# resolved from the environment at compose time; the schema's null is what Python callers get
EXEMPT = {"data.quality.mbpp_path", "data.quality.multipl_e_path"}
STAGES = ["generate", "train", "eval", "pipeline", "teacher_cache"]


def flat(node, prefix: str = "") -> dict[str, object]:
    if not isinstance(node, dict) or not node:
        return {prefix.rstrip("."): node}
    out: dict[str, object] = {}
    for key, value in node.items():
        out |= flat(value, f"{prefix}{key}.")
    return out


def drift(cfg) -> dict[str, tuple[object, object]]:
    """{key: (schema default, what the run gets)} wherever they differ."""
    found = {}
    for group, schema in SCHEMAS.items():
        want = flat(
            OmegaConf.to_container(OmegaConf.structured(schema), resolve=False), f"{group}."
        )
        got = flat(OmegaConf.to_container(cfg[group], resolve=False), f"{group}.")
        for key in sorted(set(want) | set(got) - EXEMPT):
            if key not in EXEMPT and want.get(key) != got.get(key):
                found[key] = (want.get(key), got.get(key))
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_the_default_run_is_the_schemas_defaults(stage):
    assert drift(compose_config(stage, [])) == {}


def test_a_yaml_default_that_drifts_from_the_schema_is_found():
    cfg = compose_config("pipeline", ["hardware.precision=32-true", "train.max_steps=60"])
    assert drift(cfg) == {
        "hardware.precision": ("auto", "32-true"),
        "train.max_steps": (16, 60),
    }
