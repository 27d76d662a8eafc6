"""Kill `distill generate` with SIGKILL mid-run (and mid-batch), restart it, and check that no
paid answer is lost, no answered request is billed again, and that the requests re-billed are
only those in flight at the kill (at most the concurrency limit) and are reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.teachers.fake_anthropic import FakeAnthropic

N = 30


def distill_generate(api: FakeAnthropic, run_dir: Path, *overrides: str) -> subprocess.Popen:
    env = dict(os.environ, ANTHROPIC_API_KEY="sk-ant-fake", ANTHROPIC_BASE_URL=api.base_url)
    args = [
        "generate",
        "teacher=claude_haiku",
        f"data.num_examples={N}",
        f"hydra.run.dir={run_dir}",
        "teacher.retry.backoff_s=0.01",
        "teacher.cache.count_tokens=false",
        "data.export=false",  # the export after generation is tested in test_export.py
        *overrides,
    ]
    return subprocess.Popen(
        [sys.executable, "-m", "distill", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # Hydra logs to stdout, tqdm to stderr
        text=True,
    )


def events(ledger: Path) -> list[dict]:
    if not ledger.exists():
        return []
    lines = ledger.read_text().splitlines()
    return [json.loads(x) for x in lines if x.endswith("}")]


def kill_when(proc: subprocess.Popen, ledger: Path, ready, timeout_s: float = 60) -> None:
    """SIGKILL `proc` once the ledger's events satisfy `ready` (polled every 20 ms)."""
    deadline = time.monotonic() + timeout_s
    while not ready(events(ledger)):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the run never reached the kill point"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    return out


def records(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "data/dataset.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sigkill_mid_run_loses_nothing_and_rebills_only_what_was_in_flight(tmp_path):
    concurrency = 4
    with FakeAnthropic(latency_s=0.3) as api:
        ledger = tmp_path / "data/dataset.ledger.jsonl"
        first = distill_generate(api, tmp_path, f"teacher.max_concurrency={concurrency}")
        kill_when(first, ledger, lambda ev: sum(e["e"] == "answer" for e in ev) >= 8)
        answered = {e["id"] for e in events(ledger) if e["e"] == "answer"}
        # A kill between journaling an answer and appending its record leaves it to recover.
        dataset = tmp_path / "data/dataset.jsonl"
        lines = dataset.read_text().splitlines() if dataset.exists() else []
        stored = {json.loads(x)["id"] for x in lines if x.endswith("}")}
        time.sleep(0.5)  # the killed run's requests still finish (and bill) on the server
        billed_before = api.billed_prompts()
        err = finish(distill_generate(api, tmp_path, f"teacher.max_concurrency={concurrency}"))
        got = records(tmp_path)
        assert len(got) == N and len({r["id"] for r in got}) == N  # nothing lost, no duplicate
        by_id = {r["id"]: r["messages"][-1]["content"] for r in got}
        billed = api.billed_prompts()
        assert all(billed[by_id[rid]] == 1 for rid in answered)  # answered: never billed again
        assert all(n <= 2 for n in billed.values()) and sum(billed_before.values()) >= 8
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        rebilled = metrics["generate/inflight_rebilled"]
        assert api.billed_twice() <= rebilled <= concurrency
        assert metrics["generate/recovered"] == len(answered - stored)
        assert metrics["generate/answered"] == N - len(answered)
        assert "in flight at a crash, re-sent" in err


@pytest.mark.slow
def test_sigkill_mid_batch_polls_the_stored_batches_after_restart(tmp_path):
    with FakeAnthropic(batch_processing_s=2.5) as api:
        ledger = tmp_path / "data/dataset.ledger.jsonl"
        batch = [
            "teacher.mode=batch",
            "teacher.batch.chunk_size=10",
            "teacher.batch.poll_interval_s=0.2",
        ]
        first = distill_generate(api, tmp_path, *batch)
        kill_when(first, ledger, lambda ev: sum(e["e"] == "batch" for e in ev) >= 3)
        assert len(api.batches.batches) == 3
        err = finish(distill_generate(api, tmp_path, *batch))
        assert len(api.batches.batches) == 3  # polled, not resubmitted
        assert len(api.bills) == N and api.billed_twice() == 0
        got = records(tmp_path)
        assert len(got) == N and all(r["cost_usd"] > 0 for r in got)
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        assert metrics["generate/batch/resumed"] == 3 and "generate/batch/submitted" not in metrics
        assert "message batches" in err
