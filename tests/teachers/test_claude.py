"""The Claude teacher with the official `anthropic` SDK against the fake API on loopback."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from distill.data.generation.generate import generate_dataset
from distill.data.generation.ledger import Ledger
from distill.data.instructions.templates import sample_instructions
from distill.data.store import DatasetStore
from distill.teachers.base import Answer, Request
from distill.teachers.claude import ClaudeTeacher
from tests.teachers.conftest import claude_config, prices_of

LONG_SYSTEM = "You are an expert programmer. " * 200  # ~1,500 fake tokens: above 1,024


def requests(n: int, system: str = "be brief", max_tokens: int = 256) -> list[Request]:
    return [
        Request(
            f"r{i:03d}",
            [{"role": "system", "content": system}, {"role": "user", "content": "x" * (10 + i)}],
            max_tokens,
        )
        for i in range(n)
    ]


def run(teacher: ClaudeTeacher, reqs: list[Request], tmp_path) -> dict[str, Answer]:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    try:
        return dict(teacher.answer(reqs, ledger))
    finally:
        ledger.close()


def test_answers_every_prompt_within_the_concurrency_limit(serve, tmp_path):
    api = serve(latency_s=0.05)
    teacher = ClaudeTeacher(claude_config(api, "max_concurrency=3"), "sk-ant-test")
    answers = run(teacher, requests(10), tmp_path)
    assert sorted(answers) == [f"r{i:03d}" for i in range(10)]
    for i in range(10):
        assert f"return {10 + i}" in answers[f"r{i:03d}"].text
    assert api.max_in_flight <= 3 and len(api.requests) == 10
    sent = api.requests[-1]
    assert sent["system"][0]["text"] == "be brief"
    assert all(m["role"] != "system" for m in sent["messages"])
    # Current models reject sampling parameters: none is sent unless configured and accepted.
    assert not {"temperature", "top_p", "top_k"} & set(sent)
    assert teacher.stats["answered"] == 10


def test_sampling_parameters_reach_the_api_only_when_the_model_accepts_them(serve, tmp_path):
    api = serve()
    config = claude_config(api, "sampling={temperature: 0.7}")
    teacher = ClaudeTeacher(config, "sk-ant-test")
    run(teacher, requests(1), tmp_path)
    assert api.requests[0]["temperature"] == 0.7
    assert teacher.settings()["sampling"] == {"temperature": 0.7}  # part of every record id


def test_cost_from_usage_equals_what_the_server_billed(serve, tmp_path):
    api = serve(answer_tokens=200)
    config = claude_config(api)
    answers = run(ClaudeTeacher(config, "sk-ant-test"), requests(5), tmp_path)
    assert sum(a.cost_usd for a in answers.values()) == pytest.approx(
        api.billed_usd(prices_of(config)), rel=1e-9
    )
    assert all(a.usage["output_tokens"] >= 190 for a in answers.values())


def test_cache_accounting_matches_the_server(serve, tmp_path):
    """The system prompt carries cache_control; the first answer writes the prefix, the rest
    read it; the 1-hour TTL is billed at its own price; the totals match the server's."""
    api = serve(latency_s=0.01)
    config = claude_config(api, "cache.ttl=1h", "max_concurrency=1")
    teacher = ClaudeTeacher(config, "sk-ant-test")
    answers = run(teacher, requests(6, system=LONG_SYSTEM), tmp_path)
    assert api.requests[0]["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    billed = api.billed_tokens()
    assert billed["cache_write_1h"] > 1024 and billed["cache_write_5m"] == 0
    assert teacher.stats["cache/write_1h_tokens"] == billed["cache_write_1h"]
    assert (
        teacher.stats["cache/read_tokens"] == billed["cache_read"] == 5 * billed["cache_write_1h"]
    )
    assert (teacher.stats["cache/hits"], teacher.stats["cache/writes"]) == (5, 1)
    assert sum(a.cost_usd for a in answers.values()) == pytest.approx(
        api.billed_usd(prices_of(config)), rel=1e-9
    )


def test_few_shot_prefix_is_cached_with_the_system_prompt(serve, tmp_path):
    api = serve()
    shots = [{"role": "user", "content": "add 1 and 2"}, {"role": "assistant", "content": "3"}]
    reqs = [
        Request(r.id, [r.messages[0], *shots, r.messages[1]], r.max_tokens)
        for r in requests(3, system=LONG_SYSTEM)
    ]
    run(ClaudeTeacher(claude_config(api, "max_concurrency=1"), "k"), reqs, tmp_path)
    turns = api.requests[0]["messages"]
    assert [m["role"] for m in turns] == ["user", "assistant", "user"]
    assert (
        "cache_control" in turns[1]["content"][0] and "cache_control" not in turns[2]["content"][0]
    )
    assert api.billed_tokens()["cache_read"] > 0


def test_warns_when_the_prefix_is_too_short_to_cache(serve, tmp_path, caplog):
    api = serve()
    config = claude_config(api, "cache.count_tokens=true")
    with caplog.at_level(logging.WARNING, logger="distill.teachers.claude"):
        teacher = ClaudeTeacher(config, "sk-ant-test")
        run(teacher, requests(1), tmp_path)
    assert "below claude-haiku-4-5's minimum cacheable length of 4096" in caplog.text
    assert 0 < teacher.stats["cache/prefix_tokens"] < 20  # counted by the count_tokens endpoint


def test_long_answers_stream_past_a_client_timeout(serve, tmp_path):
    """A slow answer (1.2 s) outlives a 0.5 s read timeout only when streamed."""
    api = serve(latency_s=1.2, stream_interval_s=0.3)
    slow = claude_config(api, "timeout_s=0.5", "retry.max_attempts=1")
    answers = run(ClaudeTeacher(slow, "k"), requests(1, max_tokens=256), tmp_path)
    assert answers["r000"].kind == "timeout"
    api.latency_s = 0.0  # streamed: the headers come at once, deltas every 0.3 s
    streamed = claude_config(api, "timeout_s=0.5", "stream_min_tokens=128")
    teacher = ClaudeTeacher(streamed, "k")
    answers = run(teacher, requests(1, max_tokens=256), tmp_path)
    assert "return 10" in answers["r000"].text and answers["r000"].usage["output_tokens"] > 0
    assert teacher.stats["streamed"] == 1 and api.requests[-1]["stream"] is True


def test_generate_stores_claude_answers_and_never_pays_twice(serve, tmp_path):
    api = serve()
    instructions = sample_instructions(6, {"python": 1}, {"implement": 1}, {"easy": 1})
    teacher = ClaudeTeacher(claude_config(api), "sk-ant-test")
    store = DatasetStore(tmp_path / "data.jsonl")
    first = generate_dataset(teacher, instructions, store, system_prompt="be brief")
    assert first["generate/answered"] == 6 and first["generate/syntax_ok"] == 6
    assert first["generate/cost_usd"] > 0
    again = generate_dataset(
        teacher, instructions, DatasetStore(tmp_path / "data.jsonl"), "be brief"
    )
    assert again["generate/answered"] == 0 and again["generate/already_stored"] == 6
    assert len(api.requests) == 6


def test_distill_generate_with_claude_through_the_entry_point(serve, tmp_path):
    api = serve()
    env = dict(os.environ, ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=api.base_url)
    args = ["generate", "teacher=claude_haiku", "data.num_examples=5", "data.export=false",
            f"hydra.run.dir={tmp_path}"]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "distill", *args], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(api.requests) == 5
    assert api.requests[0]["model"] == "claude-haiku-4-5"
    assert "expert programmer" in api.requests[0]["system"][0]["text"]
    records = [json.loads(x) for x in (tmp_path / "data/dataset.jsonl").open()]
    assert len(records) == 5 and {r["teacher"] for r in records} == {"claude-haiku-4-5"}
    assert all(r["cost_usd"] > 0 and r["checks"]["syntax"] for r in records)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["generate/answered"] == 5 and metrics["generate/inflight_rebilled"] == 0
    assert "generate summary" in out.stdout and "prompt cache" in out.stdout
