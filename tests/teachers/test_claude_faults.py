"""Faults the API really produces, injected by the fake server: each is classified, counted,
retried or recorded as failed with its reason; a reached spend limit stops the run."""

from __future__ import annotations

import time

import pytest

from distill.data.generation.generate import generate_dataset
from distill.data.generation.ledger import Ledger
from distill.data.instructions.templates import sample_instructions
from distill.data.store import DatasetStore
from distill.teachers.base import Answer, Failure
from distill.teachers.claude import ClaudeTeacher
from tests.teachers.conftest import claude_config
from tests.teachers.fake_anthropic import Faults
from tests.teachers.test_claude import requests, run

TWENTY_PERCENT = {"429": 0.04, "529": 0.04, "500": 0.04, "timeout": 0.03, "drop": 0.03,
                  "malformed": 0.02}  # fmt: skip


def test_twenty_percent_faults_complete_every_request_or_record_why(serve, tmp_path):
    api = serve(faults=Faults(rates=TWENTY_PERCENT, seed=3, reject="x" * 47), hang_s=0.6)
    teacher = ClaudeTeacher(claude_config(api, "timeout_s=0.4"), "sk-ant-test")
    reqs = requests(40)  # prompts of 10..49 x: the two longest contain the rejected 47 x
    outcomes = run(teacher, reqs, tmp_path)
    assert set(outcomes) == {r.id for r in reqs}
    failed = {rid: o for rid, o in outcomes.items() if isinstance(o, Failure)}
    assert set(failed) == {"r037", "r038", "r039"}
    for failure in failed.values():  # the API's message, not retried
        assert failure.kind == "client_error" and failure.permanent
        assert "400 invalid_request_error: prompt is not allowed here" in failure.message
    assert all(isinstance(o, Answer) and "return" in o.text for rid, o in outcomes.items()
               if rid not in failed)  # fmt: skip
    time.sleep(0.7)  # let the hung requests finish on the server
    injected, stats = api.injected, teacher.stats
    assert sum(injected[k] for k in TWENTY_PERCENT) >= 6  # the faults really happened
    assert stats["errors/rate_limited"] == injected["429"]
    assert stats["errors/overloaded"] == injected["529"]
    assert stats["errors/server_error"] == injected["500"]
    assert stats["errors/connection"] == injected["drop"]
    assert stats["errors/malformed"] == injected["malformed"]
    assert stats["errors/timeout"] >= injected["timeout"]
    assert stats["errors/client_error"] == 3
    rejected = [b for b in api.requests if "x" * 47 in b["messages"][-1]["content"][0]["text"]]
    assert len(rejected) == 3  # never retried
    # Only a request whose answer was lost to a timeout can be billed twice.
    assert api.billed_twice() <= injected["timeout"]
    ledger = Ledger(tmp_path / "ledger.jsonl")
    assert set(ledger.answers) == {r.id for r in reqs} - set(failed)
    assert {rid for rid, f in ledger.failures.items() if f["permanent"]} == set(failed)


@pytest.mark.parametrize("status", [429, 400])
def test_a_reached_spend_limit_stops_the_run_with_a_clear_message(serve, tmp_path, status):
    api = serve(faults=Faults(spend_limit_after=3, spend_status=status), latency_s=0.02)
    teacher = ClaudeTeacher(claude_config(api, "max_concurrency=2"), "sk-ant-test")
    instructions = sample_instructions(12, {"python": 1}, {"implement": 1}, {"easy": 1})
    summary = generate_dataset(teacher, instructions, DatasetStore(tmp_path / "d.jsonl"), "hi")
    assert summary["generate/stopped"] == "spend_limit"
    message = summary["generate/stop_message"]
    assert "spend limit" in message and "Claude Console" in message and "rerun" in message
    # The limit is reached after 3 answers; one more may already have been under way.
    assert 3 <= summary["generate/answered"] <= 4 and summary["generate/errors/spend_limit"] >= 1
    assert summary["generate/not_sent"] >= 12 - 3 - 2 * 2  # the rest was never sent
    assert len(api.requests) <= 3 + 2 * 2  # at most the requests in flight saw the limit


def test_overloaded_backs_off_longer_and_holds_every_request(serve, tmp_path):
    api = serve(faults=Faults(script=["529"], retry_after_s=0.0))
    config = claude_config(
        api,
        "max_concurrency=1",
        "retry.overloaded_backoff_s=0.4",
        "retry.max_overloaded_backoff_s=1",
        "retry.backoff_s=0.001",
    )
    teacher = ClaudeTeacher(config, "k")
    start = time.perf_counter()
    outcomes = run(teacher, requests(3), tmp_path)
    assert time.perf_counter() - start >= 0.2  # the overloaded backoff, at least half its base
    assert all(isinstance(o, Answer) for o in outcomes.values())
    assert teacher.stats["errors/overloaded"] == 1 and teacher.stats["retries"] == 1


def test_rate_limited_waits_for_retry_after(serve, tmp_path):
    api = serve(faults=Faults(script=["429"], retry_after_s=0.5))
    teacher = ClaudeTeacher(claude_config(api, "retry.backoff_s=0.001"), "k")
    start = time.perf_counter()
    outcomes = run(teacher, requests(1), tmp_path)
    assert time.perf_counter() - start >= 0.5
    assert isinstance(outcomes["r000"], Answer) and teacher.stats["errors/rate_limited"] == 1


def test_retries_are_bounded_and_a_restart_retries_only_transient_failures(serve, tmp_path):
    instructions = sample_instructions(2, {"python": 1}, {"implement": 1}, {"easy": 1})
    rejected = instructions[1].prompt.split("`")[1]  # the second prompt's signature
    api = serve(faults=Faults(script=["500", "500", "500"], reject=rejected))
    config = claude_config(api, "retry.max_attempts=3", "max_concurrency=1")
    path = tmp_path / "d.jsonl"
    first = generate_dataset(ClaudeTeacher(config, "k"), instructions, DatasetStore(path), "hi")
    assert first["generate/failed"] == 2 and first["generate/answered"] == 0
    assert first["generate/failed/server_error"] == 1 and first["generate/failed/client_error"] == 1
    failures = Ledger(tmp_path / "d.ledger.jsonl").failures.values()
    assert sorted((f["kind"], f["permanent"]) for f in failures) == [
        ("client_error", True),
        ("server_error", False),
    ]
    assert any("after 3 attempts" in f["message"] for f in failures)
    again = generate_dataset(ClaudeTeacher(config, "k"), instructions, DatasetStore(path), "hi")
    assert again["generate/answered"] == 1 and again["generate/failed_earlier"] == 1
    sent_rejected = [b for b in api.requests if rejected in b["messages"][-1]["content"][0]["text"]]
    assert len(sent_rejected) == 1  # a permanent failure is never asked again
