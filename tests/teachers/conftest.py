"""Fixtures for the Claude teacher: the fake API on loopback and fast teacher configs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from distill.cli import register_hydra
from distill.teachers.claude_config import ClaudeTeacherConfig
from tests.conftest import CONF_DIR
from tests.teachers.fake_anthropic import FakeAnthropic

# Backoffs short enough for tests; everything else as shipped in conf/teacher/claude_haiku.yaml.
FAST = [
    "retry.backoff_s=0.01",
    "retry.max_backoff_s=0.05",
    "retry.overloaded_backoff_s=0.02",
    "retry.max_overloaded_backoff_s=0.1",
    "batch.poll_interval_s=0.05",
    "cache.count_tokens=false",
]


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeAnthropic]]:
    """Start fake APIs (keyword arguments of `FakeAnthropic`); all stop after the test."""
    servers: list[FakeAnthropic] = []

    def start(**kwargs) -> FakeAnthropic:
        server = FakeAnthropic(**kwargs).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


def claude_config(
    server: FakeAnthropic, *overrides: str, teacher: str = "claude_haiku"
) -> ClaudeTeacherConfig:
    """`conf/teacher/<teacher>.yaml` (composed by Hydra, catalog included) over the schema,
    pointed at `server`, with fast retries and `overrides` (`key=value` below `teacher.`)."""
    register_hydra()  # the teacher's schema, its YAML's first default
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composed = compose(config_name=f"teacher/{teacher}").teacher
    dotlist = OmegaConf.from_dotlist([f"base_url={server.base_url}", *FAST, *overrides])
    return OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(ClaudeTeacherConfig), composed, dotlist)
    )


def prices_of(config: ClaudeTeacherConfig) -> dict[str, dict[str, float]]:
    """The catalog as plain dicts, for the fake's own dollar arithmetic."""
    return {
        m: OmegaConf.to_container(OmegaConf.structured(c)) for m, c in config.catalog.models.items()
    }
