"""The README's "Extending distill" section as a new user follows it: its loss file and its
teacher file and YAML, dropped into a copy of the project, work with no other change."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.test_resume import write_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]


def readme_files() -> dict[str, str]:
    """The code blocks of the section whose first line names their file (`# <path>`)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Extending distill", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:python|yaml)\n(.*?)```\n", section, re.S)
    return {b.split("\n", 1)[0].removeprefix("# "): b.split("\n", 1)[1] for b in blocks}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("extended")
    skip = shutil.ignore_patterns("__pycache__")
    for folder in ("distill", "conf"):
        shutil.copytree(ROOT / folder, root / folder, ignore=skip)
    for path, text in readme_files().items():
        (root / path).write_text(text)
    return root


def run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(
        [sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_readme_shows_a_loss_a_teacher_and_a_benchmark_with_their_yamls():
    assert sorted(readme_files()) == [
        "conf/eval/my_problems.yaml",
        "conf/loss/hellinger.yaml",
        "conf/teacher/canned.yaml",
        "distill/evaluation/benchmarks/my_problems.py",
        "distill/losses/hellinger.py",
        "distill/teachers/canned.py",
    ]


@pytest.mark.slow
def test_the_new_loss_is_listed_and_keeps_the_contract(project):
    listed = run(project, "-m", "distill", "losses")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "hellinger" in listed.stdout
    code = (
        "from distill.testing import check_loss_contract; print(check_loss_contract('hellinger'))"
    )
    checked = run(project, "-c", code)
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert 0 < float(checked.stdout.strip().removeprefix("tensor(").split(")")[0]) < 1


@pytest.mark.slow
def test_the_new_loss_preset_trains(project, tmp_path):
    run_dir = tmp_path / "run"
    out = run(
        project,
        *("-m", "distill", "train", "experiment=tiny_smoke", "loss=hellinger"),
        f"data.dataset={write_tiny_dataset(tmp_path / 'data.jsonl')}",
        *("train.max_steps=2", "train.val_every_n_steps=2", f"hydra.run.dir={run_dir}"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    config = (run_dir / ".hydra/config.yaml").read_text()
    assert "components:\n    hellinger:\n      weight: 1.0\n" in config  # the preset, alone
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 < metrics["train/loss_first"] < 1  # a squared Hellinger distance is in [0, 1]


@pytest.mark.slow
def test_the_new_teacher_generates_a_dataset(project, tmp_path):
    run_dir = tmp_path / "run"
    out = run(
        project,
        *("-m", "distill", "generate", "teacher=canned", "data.num_examples=3"),
        *("data.export=false", f"hydra.run.dir={run_dir}"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (run_dir / "data/dataset.jsonl").open()]
    assert len(rows) == 3 and {r["teacher"] for r in rows} == {"canned"}
    assert {r["code"] for r in rows} == {"def identity(x):\n    return x"}


@pytest.mark.slow
def test_the_new_benchmark_scores_its_own_problems(project, tmp_path):
    from distill.evaluation.benchmarks import load_humaneval

    problems = load_humaneval(3)
    mine = [
        {"task_id": f"Mine/{i}", "prompt": p.prompt, "test": p.test,
         "entry_point": p.entry_point, "canonical_solution": p.canonical_solution}
        for i, p in enumerate(problems)
    ]  # fmt: skip
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(m) + "\n" for m in mine))
    samples = tmp_path / "samples.jsonl"
    rows = [{"task_id": m["task_id"], "completion": m["canonical_solution"]} for m in mine]
    rows[2]["completion"] = "    return None\n"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    missing = run(project, "-m", "distill", "eval", "eval=my_problems", f"eval.samples={samples}")
    assert missing.returncode != 0 and "MY_PROBLEMS" in missing.stderr + missing.stdout
    out = run(
        project,
        *("-m", "distill", "eval", "eval=my_problems", f"eval.data_path={data}"),
        *(f"eval.samples={samples}", f"hydra.run.dir={tmp_path / 'run'}"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["eval/my_problems/pass@1"] == pytest.approx(2 / 3)
