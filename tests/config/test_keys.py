"""Every config key an error message (or any other text in distill/) names exists: in a config
composed from some option of some group, or as a registered loss component's own argument."""

from __future__ import annotations

import ast
import inspect
import os
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from distill.losses import LOSSES
from distill.losses.composite import RESERVED_KEYS
from tests.conftest import CONF_DIR, compose_config

ROOT = Path(__file__).resolve().parents[2]
GROUPS = "teacher|student|data|loss|hardware|train|eval|teacher_cache"
# a key where it starts: not inside a longer name, a path or ${...}
KEY = re.compile(rf"(?<![\w.$/-])(?:{GROUPS})\.[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*")
REQUIRED = {"teacher=hf": ["teacher.path=/m"], "teacher=openai_compatible": ["teacher.model=m"]}


def named_keys(text: str) -> set[str]:
    return set(KEY.findall(text))


def keys_in_source() -> dict[str, list[str]]:
    """Every key named in a string literal (f-strings' literal parts included) of distill/."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "distill").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for key in named_keys(node.value):
                    found.setdefault(key, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def flat(node, prefix: str = "") -> set[str]:
    keys = set()
    if isinstance(node, dict):
        for name, value in node.items():
            keys |= {f"{prefix}{name}"} | flat(value, f"{prefix}{name}.")
    return keys


@pytest.fixture(scope="module")
def config_keys(monkeypatch_module) -> set[str]:
    """The keys of the config composed from every option of every group, for every stage."""
    options = [
        f"{group.name}={f.stem}"
        for group in CONF_DIR.iterdir()
        if group.is_dir()
        for f in group.glob("*.yaml")
    ]
    keys: set[str] = set()
    for option in ["", *options]:
        overrides = [option, *REQUIRED.get(option, [])] if option else []
        for stage in ("pipeline", "teacher_cache"):
            cfg = compose_config(stage, overrides)
            keys |= flat(OmegaConf.to_container(cfg, resolve=False))
    return keys


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANTHROPIC_API_KEY", os.environ.get("ANTHROPIC_API_KEY", "sk-ant-test"))
        yield patch


def component_key(key: str) -> bool:
    """`loss.components.<registered loss>[.<its argument or a reserved option>]`."""
    parts = key.split(".")
    if parts[:2] != ["loss", "components"] or len(parts) < 3 or parts[2] not in LOSSES.names():
        return False
    if len(parts) == 3:
        return True
    arguments = inspect.signature(LOSSES.get(parts[2])).parameters
    return len(parts) == 4 and (parts[3] in arguments or parts[3] in RESERVED_KEYS)


def test_the_scan_finds_keys_and_would_catch_a_wrong_one(config_keys):
    assert named_keys("set teacher.path=<folder>, not ${teacher.path}") == {"teacher.path"}
    assert "data.batch_size" in config_keys and "teacher.api_key_env" in config_keys
    assert "hardware.accumulate_grad_batches" not in config_keys  # the key an old message named
    assert component_key("loss.components.ce.label_smoothing")
    assert not component_key("loss.components.ce.smoothing")


def test_every_key_named_in_distill_exists(config_keys):
    found = keys_in_source()
    assert len(found) > 80  # the scan reads the messages
    wrong = {
        key: where
        for key, where in found.items()
        if key not in config_keys
        and key.removesuffix(".") not in config_keys
        and not component_key(key)
    }
    assert not wrong, f"keys named in distill/ that no config has: {wrong}"


def test_no_config_file_names_one_of_our_classes():
    """Our own extension points are chosen by registry name, never by a `_target_` path."""
    ours = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "conf").rglob("*.yaml"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"_target_:\s*distill\.", line)
    ]
    assert ours == []
