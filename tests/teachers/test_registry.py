"""Every registered teacher keeps the contract: its own schema, declared capabilities, a YAML in
conf/teacher/ composed over that schema, and a teacher built from it; stages ask capabilities."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from omegaconf import OmegaConf

from distill.checks import stage_checks
from distill.config import TeacherConfig, validate
from distill.errors import ConfigError
from distill.teachers import CAPABILITIES, TEACHERS, build_teacher, gives_logits
from tests.conftest import CONF_DIR, compose_config

TEACHER_FILES = sorted((CONF_DIR / "teacher").glob("*.yaml"))
# One file per teacher that builds offline with no weights to convert.
BUILDABLE = {
    "hf": "tiny_random",
    "claude": "claude_haiku",
    "openai_compatible": "openai_compatible",
}


def files_of(kind: str) -> list[str]:
    return [p.stem for p in TEACHER_FILES if f"schema/{kind}@_here_" in p.read_text()]


def test_the_builtin_teachers_are_registered():
    assert TEACHERS.names() == ["claude", "hf", "openai_compatible"]
    assert gives_logits(OmegaConf.create({"kind": "hf"}))
    assert not gives_logits(OmegaConf.create({"kind": "claude"}))


def test_every_teacher_yaml_starts_from_a_registered_schema():
    for path in TEACHER_FILES:
        kinds = [k for k in TEACHERS.names() if f"schema/{k}@_here_" in path.read_text()]
        assert len(kinds) == 1, f"{path.name}: give `defaults: [schema/<kind>@_here_, _self_]`"


@pytest.mark.parametrize("kind", TEACHERS.names())
def test_every_registered_teacher_keeps_the_contract(kind, monkeypatch):
    cls = TEACHERS.get(kind)
    assert dataclasses.is_dataclass(cls.Config) and issubclass(cls.Config, TeacherConfig)
    assert cls.Config.__dataclass_fields__["kind"].default == kind
    assert "text" in cls.capabilities and cls.capabilities <= set(CAPABILITIES)
    for method in ("from_config", "problems"):
        assert inspect.ismethod(getattr(cls, method)), f"{kind}.{method}: a classmethod"
    assert files_of(kind), f"no conf/teacher/*.yaml starts from schema/{kind}"
    for name in files_of(kind):
        cfg = compose_config("generate", [f"teacher={name}"])
        assert OmegaConf.get_type(cfg.teacher) is cls.Config and cfg.teacher.kind == kind
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    cfg = compose_config(
        "generate",
        [f"teacher={BUILDABLE[kind]}", "teacher.model=m"][: 1 + (kind == "openai_compatible")],
    )
    validate(cfg, *stage_checks("generate"))
    teacher = build_teacher(cfg.teacher)
    assert isinstance(teacher, cls) and teacher.name == cfg.teacher.name
    assert isinstance(teacher.settings(16), dict)
    assert list(teacher.answer([], None)) == []  # nothing to ask: nothing loads, nothing is sent


def test_an_unknown_kind_and_a_kind_without_its_schema_are_named():
    cfg = compose_config("generate", ["teacher=tiny_random", "teacher.kind=gpt"])
    with pytest.raises(ConfigError, match="teacher.kind=gpt: teacher 'gpt' is not registered"):
        validate(cfg, *stage_checks("generate"))
    cfg = compose_config("generate", ["teacher=tiny_random", "teacher.kind=claude"])
    with pytest.raises(ConfigError, match=r"schema/claude@_here_"):
        validate(cfg, *stage_checks("generate"))


def test_a_text_teacher_is_refused_for_logit_losses_by_its_capabilities(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    for teacher in ("claude_haiku", "openai_compatible"):
        overrides = [f"teacher={teacher}", "teacher.model=claude-haiku-4-5", "loss=ce_kl"]
        with pytest.raises(ConfigError, match="log-probabilities"):
            validate(compose_config("train", overrides), *stage_checks("train"))
