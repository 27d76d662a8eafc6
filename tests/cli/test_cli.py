"""The `distill` command through its real entry point, in subprocesses."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.evaluation.conftest import plant_reference

DISTILL = [sys.executable, "-m", "distill"]


def run(
    args: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DISTILL, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_the_commands(tmp_path):
    out = run(["--help"], tmp_path)
    assert out.returncode == 0
    for command in ("generate", "train", "eval", "pipeline", "losses"):
        assert command in out.stdout


def test_command_help_is_hydras(tmp_path):
    out = run(["train", "--help"], tmp_path)
    assert out.returncode == 0
    assert "distill train is powered by Hydra" in out.stdout
    presets = sorted(f.stem for f in (Path(__file__).parents[2] / "conf/loss").glob("*.yaml"))
    assert f"loss: {', '.join(presets)}" in out.stdout


def test_unknown_command_suggests_the_closest(tmp_path):
    out = run(["trian"], tmp_path)
    assert out.returncode == 2
    assert "did you mean 'train'" in out.stderr


def test_unknown_option_lists_the_available_ones(tmp_path):
    out = run(["train", "loss=nope"], tmp_path)
    assert out.returncode != 0
    assert "Could not find 'loss/nope'" in out.stderr
    assert "ce_kl" in out.stderr


def test_claude_without_key_stops_before_anything_loads(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    start = time.perf_counter()
    out = run(["generate", "teacher=claude_sonnet", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert out.returncode == 2
    assert "export ANTHROPIC_API_KEY=" in out.stderr + out.stdout
    assert not (tmp_path / "run" / "data").exists()
    assert time.perf_counter() - start < 30  # no weights, no requests: only imports


def test_corrupt_dataset_line_names_file_and_line(tmp_path):
    good = {"id": "a", "messages": [{"role": "user", "content": "hi"}], "response": "hello"}
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(good) + "\n" + '{"id": "b", "messages": [\n')
    out = run(
        [
            "train",
            "experiment=tiny_smoke",
            f"data.dataset={data}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        tmp_path,
    )
    assert out.returncode == 2
    assert f"{data}:2: not valid JSON" in out.stderr + out.stdout


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory) -> Path:
    """One `distill pipeline` on the tiny models; the tests below read its run directory."""
    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    out = run(["pipeline", "experiment=tiny_smoke", f"hydra.run.dir={run_dir}"], run_dir.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir.parent / "console.txt").write_text(out.stdout + out.stderr)
    return run_dir


def test_pipeline_writes_its_run_directory(pipeline_run):
    for rel in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "data/dataset.jsonl",
        "adapters/adapter_config.json",
        "adapters/adapter_model.safetensors",
        "eval/student_after_samples.jsonl",
        "eval/student_after_results.jsonl",
        "metrics.json",
        "report.md",
    ):
        assert (pipeline_run / rel).is_file(), rel
    results = [json.loads(x) for x in (pipeline_run / "eval/student_after_results.jsonl").open()]
    assert len(results) == 3 and {"task_id", "completion", "passed", "result"} <= results[0].keys()
    table = (pipeline_run / "report.md").read_text()
    for row in ("teacher", "student before", "student after"):
        assert f"| {row} |" in table
    assert "HumanEval pass@1 [95% CI]" in table
    # the tiny random models solve nothing: no change, and the paired test says so
    assert "student after vs student before: +0.0 points of pass@1 on 3 problems" in table
    metrics = json.loads((pipeline_run / "metrics.json").read_text())
    assert metrics["pipeline/after_vs_before/p_value"] == 1.0


def test_pipeline_trained_the_adapters_and_lowered_the_loss(pipeline_run):
    metrics = json.loads((pipeline_run / "metrics.json").read_text())
    assert metrics["train/loss_last"] < metrics["train/loss_first"]
    assert metrics["pipeline/student_after/ce"] < metrics["pipeline/student_before/ce"]
    assert metrics["generate/records"] == 16
    weights = load_file(pipeline_run / "adapters/adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b)  # B starts at zero: it was trained
    assert not any("base_layer" in name for name in weights)  # adapters only, never the base


def test_the_run_reports_what_it_cost(pipeline_run):
    metrics = json.loads((pipeline_run / "metrics.json").read_text())
    # 8 steps of 4 examples: the tokens trained on are counted, never more than the batches hold
    assert 0 < metrics["train/tokens"] <= 8 * 4 * 512
    assert metrics["train/tokens_per_s"] > 0 and metrics["train/step_s"] > 0
    assert metrics["train/peak_memory_mib"] > 100  # the process's resident peak, in MiB
    stages = {"generate", "load", "baselines", "train", "eval"}
    assert {k.rsplit("/", 1)[1] for k in metrics if k.startswith("pipeline/seconds/")} == stages
    report = (pipeline_run / "report.md").read_text()
    assert "Cost: generate " in report and " tokens/s, " in report


def test_the_console_shows_each_line_once_and_no_adverts(pipeline_run):
    console = (pipeline_run.parent / "console.txt").read_text()
    assert console.count("GPU available") == 1  # Lightning's line, through Hydra's handler only
    assert "💡" not in console and "litlogger" not in console
    assert "train: 100%" in console and "8/8" in console and "tok/s=" in console
    assert "Epoch" not in console


def test_generate_rerun_pays_for_nothing_it_has(pipeline_run, tmp_path):
    out = run(["generate", "experiment=tiny_smoke", f"hydra.run.dir={pipeline_run}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((pipeline_run / "metrics.json").read_text())
    assert metrics["generate/answered"] == 0
    assert metrics["generate/already_stored"] == 16


def test_eval_scores_a_trained_run(pipeline_run, tmp_path):
    args = [
        "eval",
        "experiment=tiny_smoke",
        f"eval.adapters={pipeline_run / 'adapters'}",
        f"hydra.run.dir={tmp_path}",
    ]
    out = run(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["eval/humaneval/num_problems"] == 3
    assert (tmp_path / "eval/student_results.jsonl").is_file()
    # Rerun with the reference solution stored for one problem: exactly that one passes.
    plant_reference(tmp_path / "eval/student_samples.jsonl", "HumanEval/2")
    out = run(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["eval/humaneval/pass@1"] == pytest.approx(1 / 3)
    passed = [json.loads(x)["passed"] for x in (tmp_path / "eval/student_results.jsonl").open()]
    assert passed == [False, False, True]


@pytest.mark.slow
def test_pipeline_on_the_embedded_default(tmp_path):
    """The real default pair, the embedded coder (GGUF assembly and conversion, pruned 4-bit
    student, LoRA), at a tiny budget."""
    run_dir = tmp_path / "run"
    out = run(
        [
            "pipeline",
            f"hydra.run.dir={run_dir}",
            "data.num_examples=8",
            "data.val_fraction=0.3",
            "teacher.max_new_tokens=64",
            # 64 tokens cut most answers mid-code: keep them, so 8 records still split
            "data.quality.drop_syntax_errors=false",
            "data.quality.drop_failed_tests=false",
            # a few steps that visibly move the student (the default's 16 at lr 2e-4 with
            # warm-up barely start in 3)
            "train.max_steps=6",
            "train.val_every_n_steps=6",
            "train.optimizer.lr=1e-3",
            "train.scheduler.num_warmup_steps=0",
            "eval.limit=1",
            "eval.max_new_tokens=32",
        ],
        tmp_path,
        timeout=1800,  # a hang guard: 7 min alone here, 13-15 when the suite shares the cores
        # a 0.5B model, unlike the tiny ones the suite pins to one thread, uses both cores
        env={"OMP_NUM_THREADS": str(os.cpu_count() or 1)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["generate/records"] == 8 and metrics["generate/with_code"] > 0
    before, after = metrics["pipeline/student_before/ce"], metrics["pipeline/student_after/ce"]
    assert metrics["pipeline/teacher/ce"] < before  # the pruned 4-bit student starts behind
    assert after < before  # six steps of distillation already pull it toward the teacher
    assert (run_dir / "adapters/adapter_model.safetensors").is_file()


def test_multirun_runs_every_job_in_its_own_directory(tmp_path):
    sweep = tmp_path / "sweep"
    out = run(
        ["pipeline", "-m", "experiment=tiny_smoke", "loss=ce,ce_kl", f"hydra.sweep.dir={sweep}"],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for num, loss in (("0", ["ce"]), ("1", ["ce", "kl"])):
        (job,) = sweep.glob(f"{num}_*")  # <job number>_<its overrides>
        assert "loss=" in job.name
        metrics = json.loads((job / "metrics.json").read_text())
        assert "eval/humaneval/pass@1" in metrics
        config = (job / ".hydra/config.yaml").read_text()
        assert all(f"    {name}:" in config for name in loss)


def test_wandb_logger_runs_offline(pipeline_run, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    out = run(
        [
            "train",
            "experiment=tiny_smoke",
            "logger=wandb",
            f"data.dataset={pipeline_run / 'data/dataset.jsonl'}",
            f"hydra.run.dir={run_dir}",
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


def test_losses_lists_every_component_and_a_plugin(tmp_path):
    (tmp_path / "my_losses.py").write_text(
        "from distill.losses import DistillLoss, register_loss\n\n"
        "@register_loss('my_zero')\n"
        "class MyZero(DistillLoss):\n"
        "    requires = frozenset({'logits'})\n\n"
        "    def __init__(self, scale: float = 2.0):\n"
        "        super().__init__()\n\n"
        "    def forward(self, out, batch):\n"
        "        return out.student_logits.float().sum() * 0\n"
    )
    out = run(["losses", "my_losses"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| kl | logits, teacher_logits | temperature=1.0 |" in out.stdout
    assert "| jsd | logits, teacher_logits | beta=0.5, temperature=1.0 |" in out.stdout
    assert "| my_zero | logits | scale=2.0 |" in out.stdout


def first_logged(run_dir: Path, key: str) -> float:
    """The first value of `key` in the run's CSV log."""
    (csv_file,) = run_dir.glob("**/metrics.csv")
    rows = [r for r in csv.DictReader(csv_file.open()) if r.get(key)]
    return float(rows[0][key])


def test_train_from_the_sparse_logit_cache_matches_the_online_teacher(pipeline_run, tmp_path):
    """`distill teacher-cache`, then training on it without loading the teacher: the first step's
    KL equals the online one up to the top-k tail bucket (k=64 of a 128-id vocabulary)."""
    dataset = pipeline_run / "data/dataset.jsonl"
    common = ["experiment=tiny_smoke", f"data.dataset={dataset}", "train.max_steps=1"]
    out = run(["teacher-cache", *common, f"hydra.run.dir={tmp_path / 'cache'}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = {}
    for source in ("online", "cache"):
        runs[source] = tmp_path / source
        out = run(
            [
                "train",
                *common,
                "loss=ce_kl",
                f"train.teacher_logits={source}",
                f"teacher_cache.path={tmp_path / 'cache/teacher_cache'}",
                f"hydra.run.dir={runs[source]}",
            ],
            tmp_path,
        )
        assert out.returncode == 0, out.stderr[-3000:]
    online = first_logged(runs["online"], "train/loss/kl")
    cached = first_logged(runs["cache"], "train/loss/kl")
    assert cached <= online + 1e-4  # the tail bucket is a coarsening: never above the dense KL
    assert cached == pytest.approx(online, rel=0.05)
    assert first_logged(runs["cache"], "train/loss/ce") == pytest.approx(
        first_logged(runs["online"], "train/loss/ce"), rel=1e-5
    )


def test_training_from_a_missing_cache_is_a_config_error(tmp_path):
    out = run(
        [
            "train",
            "experiment=tiny_smoke",
            "train.teacher_logits=cache",
            f"teacher_cache.path={tmp_path / 'nowhere'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        tmp_path,
    )
    assert out.returncode == 2
    assert "train.teacher_logits=cache needs a built cache" in out.stderr + out.stdout
