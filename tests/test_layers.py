"""The layering of DESIGN.md holds: import-linter's contracts in pyproject.toml are kept, and
they are strict enough that one upward import, however deep in a function, breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
LAYERS = "distill's layers point one way"
PLUGINS = "a loss never imports Lightning or Hydra, a teacher never the trainer"
ACYCLIC = "no import cycles between the modules of any package"
DATA = "the data stage flows one way"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` over the `distill` package found first on the path at `root`."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The package and its contracts, copied so a test can break them."""
    root = tmp_path_factory.mktemp("layers")
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "distill", root / "distill", ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", root)
    return root


def test_the_package_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # a lazy upward import inside a function: the kind that used to close cycles
        ("config/base.py", "def _upward():\n    import distill.runs\n", LAYERS),
        ("models/sources.py", "def _upward():\n    import distill.testing\n", LAYERS),
        ("losses/kl.py", "import lightning\n", PLUGINS),
        ("losses/chunked.py", "import distill.losses.kl\n", ACYCLIC),
        ("data/store.py", "def _upward():\n    import distill.data.quality.checks\n", DATA),
    ],
)
def test_one_bad_import_breaks_a_contract(copy, module, line, broken):
    path = copy / "distill" / module
    original = path.read_text()
    path.write_text(original + "\n\n" + line)
    try:
        result = lint_imports(copy)
    finally:
        path.write_text(original)
    assert result.returncode != 0
    assert f"{broken} BROKEN" in result.stdout
