"""Shared fixtures: a session cache for derived models, composed configs, the tiny pair, a batch."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

# Derived models (tiny random ones, the GGUF conversion) go to a cache of the test session's own
# unless DISTILL_CACHE is set (then that one is reused); subprocesses inherit it.
# Only the process that made it removes it (pytest-xdist workers inherit the variable), at exit:
# a full run leaves 2.4 GB there.
if "DISTILL_CACHE" not in os.environ:
    os.environ["DISTILL_CACHE"] = tempfile.mkdtemp(prefix="distill-test-cache-")
    atexit.register(shutil.rmtree, os.environ["DISTILL_CACHE"], ignore_errors=True)
os.environ.setdefault("WANDB_MODE", "offline")
# Tiny models gain nothing from a second thread and lose much to thread sync on a busy machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from distill.cli import register_hydra  # noqa: E402
from distill.testing import fake_batch, tiny_pair, tiny_tokenizer  # noqa: E402

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    torch.manual_seed(0)
    random.seed(0)
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)


def compose_config(stage: str = "pipeline", overrides: list[str] | None = None) -> DictConfig:
    """Compose `conf/<stage>.yaml` with overrides through Hydra's compose API."""
    register_hydra()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=stage, overrides=overrides or [])


@pytest.fixture
def cfg() -> DictConfig:
    return compose_config("pipeline", ["experiment=tiny_smoke"])


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny pair's character-level ChatML tokenizer (one per test module: tests may set
    its padding side or template)."""
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_models():
    return tiny_pair()


@pytest.fixture
def batch(tiny_models):
    return fake_batch(tiny_models[2])
