"""Sweeps through the real `distill` entry point: job names, W&B (offline) runs and their group,
secrets kept out of the run directory, failed jobs that do not stop the sweep, the submitit
launcher, and a real SIGKILL followed by `resume=true`."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill.redaction import scrub
from distill.runs import job_name, summarize_sweep, write_status
from distill.testing import tiny_model_dir
from tests.training.test_resume import write_tiny_dataset

DISTILL = [sys.executable, "-m", "distill"]
ANTHROPIC_KEY = "sk-ant-test-SECRET0123456789"
WANDB_KEY = "0123456789abcdef0123456789abcdef01234567"


def run(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [*DISTILL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_job_names_are_readable_safe_and_short():
    assert job_name(3, "loss=kl,train.max_steps=8") == "3_loss=kl,train.max_steps=8"
    assert job_name(0, "") == "0"
    assert job_name(1, "eval.samples=/a/b c.jsonl") == "1_eval.samples=_a_b_c.jsonl"
    long = job_name(2, "loss.components.kl.weight=0.1," * 10)
    assert len(long) <= 100 and long.startswith("2_loss.components.kl.weight=0.1,")
    assert long != job_name(2, "loss.components.kl.weight=0.2," * 10)  # the hash tells them apart
    assert "sk-ant" not in job_name(4, f"teacher.system_prompt={ANTHROPIC_KEY}")


def test_secrets_are_masked_by_env_value_key_name_and_shape(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-123456789")
    monkeypatch.setenv("MAX_NEW_TOKENS", "12345678")  # not a secret: no secret suffix
    config = {
        "teacher": {"api_key_env": "ANTHROPIC_API_KEY", "system_prompt": f"use {ANTHROPIC_KEY}"},
        "wandb": {"api_key": "abc", "note": "tok-123456789 and 12345678"},
        "runs": [{"token": "x"}, "plain"],
    }
    assert scrub(config) == {
        "teacher": {"api_key_env": "ANTHROPIC_API_KEY", "system_prompt": "use ***"},
        "wandb": {"api_key": "***", "note": "*** and 12345678"},
        "runs": [{"token": "***"}, "plain"],
    }


def test_a_sweep_summary_lists_failed_and_killed_jobs(tmp_path):
    for name, status in (("0_loss=ce", "completed"), ("1_loss=kl", "failed"), ("10_x", None)):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        if status:
            write_status(tmp_path / name, status, error="ValueError: boom")
    (tmp_path / "not_a_job").mkdir()
    summary = summarize_sweep(tmp_path)
    assert [r["job"] for r in summary["records"]] == ["0_loss=ce", "1_loss=kl", "10_x"]
    assert summary["failed"] == ["1_loss=kl", "10_x"]  # no status.json: it never finished
    assert json.loads((tmp_path / "sweep_status.json").read_text()) == summary


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    tiny_model_dir("teacher"), tiny_model_dir("student")  # built once, loaded by every job
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "data.jsonl")


def wandb_records(job_dir: Path) -> dict[str, list]:
    """The records of the job's offline W&B run by kind (`run`: group, job type, tags, name,
    config; `exit`: the exit code). The file is a LevelDB-style log of protobuf records after a
    7-byte `:W&B` header, in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    (path,) = job_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, pos, block, parts = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    records: dict[str, list] = {}
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (kind == 0 and length == 0):
            pos += left  # the rest of the block is padding
            continue
        parts, pos = parts + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            name = record.WhichOneof("record_type")
            records.setdefault(name, []).append(getattr(record, name))
    return records


def wandb_run_record(job_dir: Path):
    return wandb_records(job_dir)["run"][0]


@pytest.fixture(scope="module")
def wandb_sweep(dataset, tmp_path_factory) -> Path:
    """Two jobs with W&B offline, fake keys in the environment and planted in the config."""
    sweep = tmp_path_factory.mktemp("sweep") / "sweep"
    env = {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "WANDB_API_KEY": WANDB_KEY, "WANDB_MODE": "offline"}
    out = run(
        [
            "train",
            "-m",
            "experiment=tiny_smoke",
            "logger=wandb",
            f"data.dataset={dataset}",
            "loss.components.kl.weight=0.1,0.5",
            # A key pasted into the config, and one interpolated from the environment:
            f"teacher.system_prompt=my key is {ANTHROPIC_KEY}",
            "teacher.name=${oc.env:WANDB_API_KEY}",
            f"hydra.sweep.dir={sweep}",
        ],
        sweep.parent,
        env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return sweep


@pytest.mark.slow
def test_multirun_names_each_job_by_its_overrides_and_groups_the_wandb_runs(wandb_sweep):
    jobs = sorted(p.name for p in wandb_sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2
    for num, weight in (("0", "0.1"), ("1", "0.5")):  # number, then the overrides (no paths)
        (name,) = [j for j in jobs if j.startswith(f"{num}_logger=wandb,")]
        assert name.startswith(f"{num}_logger=wandb,loss.components.kl.weight={weight},teacher.")
        assert "/" not in name and "data.dataset" not in name and len(name) <= 100
    records = []
    for job in sorted(p for p in wandb_sweep.iterdir() if p.is_dir()):
        for rel in ("metrics.json", "status.json", "adapters/adapter_model.safetensors"):
            assert (job / rel).is_file(), (job.name, rel)
        assert json.loads((job / "status.json").read_text())["status"] == "completed"
        records.append(wandb_run_record(job))
    assert [r.display_name for r in records] == sorted(jobs)
    assert {r.run_group for r in records} == {"tiny_smoke"}  # the experiment
    assert {r.job_type for r in records} == {"train"}
    assert all(
        {"experiment=tiny_smoke", "loss=ce_kl", "hardware=cpu"} <= set(r.tags) for r in records
    )
    summary = json.loads((wandb_sweep / "sweep_status.json").read_text())
    assert summary["jobs"] == 2 and summary["failed"] == []


@pytest.mark.slow
def test_no_api_key_anywhere_in_the_sweep_directory(wandb_sweep):
    leaks = [
        str(path.relative_to(wandb_sweep))
        for path in wandb_sweep.rglob("*")
        if path.is_file()
        for secret in (ANTHROPIC_KEY, WANDB_KEY)
        if secret.encode() in path.read_bytes()
    ]
    assert leaks == []
    assert not [p for p in wandb_sweep.rglob("*") if "SECRET" in p.name or WANDB_KEY in p.name]
    config = next(wandb_sweep.glob("0_*/.hydra/config.yaml")).read_text()
    assert "my key is ***" in config  # masked in Hydra's record, not dropped


@pytest.mark.slow
def test_a_failed_job_does_not_stop_the_sweep_and_is_listed_at_the_end(dataset, tmp_path):
    sweep = tmp_path / "sweep"
    # data.max_length=16 leaves no room for any answer: that job fails once its data is read.
    out = run(
        [
            "train",
            "-m",
            "experiment=tiny_smoke",
            f"data.dataset={dataset}",
            "data.max_length=16,320",
            "optimize_metric=val/kl",
            "logger=wandb",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
        {"WANDB_MODE": "offline"},
    )
    assert out.returncode == 1  # the sweep ran to its end, then reports the failure
    failed = sweep / "0_data.max_length=16,logger=wandb"
    ok = sweep / "1_data.max_length=320,logger=wandb"
    status = json.loads((failed / "status.json").read_text())
    assert status["status"] == "failed" and status["error"].startswith("DatasetError: ")
    assert "raise data.max_length" in status["error"] and "Traceback" in status["traceback"]
    done = json.loads((ok / "status.json").read_text())
    metrics = json.loads((ok / "metrics.json").read_text())
    assert done == {**done, "status": "completed", "optimize_metric": "val/kl"}
    assert done["metric"] == pytest.approx(metrics["val/kl"])  # what the sweeper receives
    summary = json.loads((sweep / "sweep_status.json").read_text())
    assert summary["failed"] == [failed.name] and summary["jobs"] == 2
    assert f"failed: {failed.name}: DatasetError" in out.stdout + out.stderr
    # The W&B run of each job was finished, the failed one with a failing exit code.
    assert [e.exit_code for e in wandb_records(failed)["exit"]] == [1]
    assert [e.exit_code for e in wandb_records(ok)["exit"]] == [0]


@pytest.mark.slow
def test_pipeline_logs_its_eval_samples_as_wandb_tables(dataset, tmp_path):
    run_dir = tmp_path / "run"
    args = ["pipeline", "experiment=tiny_smoke", "logger=wandb", f"data.dataset={dataset}"]
    out = run([*args, f"hydra.run.dir={run_dir}"], tmp_path, {"WANDB_MODE": "offline"})
    assert out.returncode == 0, out.stderr[-3000:]
    tables = {p.parent.name for p in run_dir.glob("wandb/*/files/media/table/eval/*/*.table.json")}
    assert tables == {"teacher", "student_before", "student_after"}
    columns = json.loads(next(run_dir.glob("wandb/*/files/media/table/**/*.json")).read_text())
    assert {"task_id", "code", "passed", "result"} <= set(columns["columns"])
    assert wandb_run_record(run_dir).job_type == "pipeline"


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_two_job_sweep(dataset, tmp_path):
    sweep = tmp_path / "sweep"
    out = run(
        [
            "train",
            "-m",
            "hydra/launcher=slurm_local",
            "experiment=tiny_smoke",
            f"data.dataset={dataset}",
            "loss=ce,ce_kl",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for job, components in (("0_loss=ce", ["ce"]), ("1_loss=ce_kl", ["ce", "kl"])):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["train/steps"] == 8 and "val/ce" in metrics
        assert json.loads((sweep / job / "status.json").read_text())["status"] == "completed"
        config = (sweep / job / ".hydra/config.yaml").read_text()
        assert all(f"    {name}:" in config for name in components)
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))  # submitit ran the jobs


def adapter_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapters/adapter_model.safetensors")


@pytest.mark.slow
def test_sigkill_then_resume_ends_where_the_uninterrupted_run_ends(dataset, tmp_path):
    common = [
        "train",
        "experiment=tiny_smoke",
        f"data.dataset={dataset}",
        "train.max_steps=40",
        "train.val_every_n_steps=10",
        "train.checkpoint_every_n_steps=3",
        "student.lora.dropout=0.1",
    ]
    full = tmp_path / "full"
    assert run([*common, f"hydra.run.dir={full}"], tmp_path).returncode == 0

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*DISTILL, *common, f"hydra.run.dir={killed}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = killed / "checkpoints/last.ckpt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    step = torch.load(checkpoint, weights_only=False)["global_step"]
    assert 3 <= step < 40 and not (killed / "adapters").exists()

    out = run([*common, "resume=true", f"hydra.run.dir={killed}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resuming at optimizer step {step}" in (killed / "train.log").read_text()
    a, b = (
        json.loads((full / "metrics.json").read_text()),
        json.loads((killed / "metrics.json").read_text()),
    )
    assert b["train/loss_last"] == pytest.approx(a["train/loss_last"], rel=1e-4)
    assert b["val/ce"] == pytest.approx(a["val/ce"], rel=1e-4)
    full_weights, resumed = adapter_weights(full), adapter_weights(killed)
    for name, weight in full_weights.items():
        torch.testing.assert_close(resumed[name], weight, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_sweep_arms_score_the_teacher_and_the_untrained_student_once(dataset, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["pipeline", "-m", "experiment=tiny_smoke", f"data.dataset={dataset}", "loss=ce,kl"]
    args += ["baselines=${hydra:sweep.dir}/baselines", f"hydra.sweep.dir={sweep}"]
    out = run(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    first, second = sorted(p for p in sweep.iterdir() if p.name[0].isdigit())
    assert (first / "eval/teacher_results.jsonl").is_file()
    assert not (second / "eval/teacher_results.jsonl").exists()  # read, not scored again
    assert len(list((sweep / "baselines").glob("*.json"))) == 1
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (first, second))
    for row in ("teacher", "student_before"):
        for key in ("ce", "top1_agreement", "eval/humaneval/pass@1"):
            assert m2[f"pipeline/{row}/{key}"] == m1[f"pipeline/{row}/{key}"], (row, key)
    assert m2["pipeline/student_after/ce"] != m1["pipeline/student_after/ce"]  # trained apart
