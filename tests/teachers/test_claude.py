"""The Claude teacher with the official `anthropic` SDK against a fake server on loopback."""

from __future__ import annotations

import pytest

from distill.data.generation import generate_dataset
from distill.data.store import DatasetStore
from distill.data.templates import sample_instructions
from distill.teachers.claude import ClaudeTeacher, cost_usd
from tests.teachers.fake_anthropic import FakeAnthropic


@pytest.fixture
def api(monkeypatch):
    with FakeAnthropic(latency_s=0.05, fail_first=2) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
        yield server


def teacher(max_concurrency: int = 3) -> ClaudeTeacher:
    return ClaudeTeacher(
        "claude-haiku-4-5", "claude-haiku-4-5", 256, max_concurrency, "sk-ant-test"
    )


def test_answers_every_prompt_within_the_concurrency_limit(api):
    conversations = [
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x" * (10 + i)}]
        for i in range(10)
    ]
    answers = dict(teacher(max_concurrency=3).answer(conversations))
    assert sorted(answers) == list(range(10))
    for i, answer in answers.items():
        assert f"return {10 + i}" in answer.text
        assert answer.usage["output_tokens"] == 20
        assert answer.cost_usd == pytest.approx(cost_usd("claude-haiku-4-5", answer.usage))
    assert api.max_in_flight <= 3
    assert len(api.requests) == 12  # two 500s retried by the SDK
    assert api.requests[-1]["system"] == "be brief"
    assert all(m["role"] != "system" for m in api.requests[-1]["messages"])
    assert "temperature" not in api.requests[-1]


def test_generate_stores_claude_answers_and_never_pays_twice(api, tmp_path):
    instructions = sample_instructions(6, {"python": 1}, {"implement": 1}, {"easy": 1})
    store = DatasetStore(tmp_path / "data.jsonl")
    first = generate_dataset(teacher(), instructions, store, system_prompt="be brief")
    assert first["generate/answered"] == 6 and first["generate/syntax_ok"] == 6
    assert first["generate/cost_usd"] > 0
    billed = len(api.requests)
    again = generate_dataset(
        teacher(), instructions, DatasetStore(tmp_path / "data.jsonl"), "be brief"
    )
    assert again["generate/answered"] == 0 and again["generate/already_stored"] == 6
    assert len(api.requests) == billed


def test_cost_uses_the_price_table():
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    assert cost_usd("claude-sonnet-4-5", usage) == pytest.approx(3.0 + 15.0)


def test_distill_generate_with_claude_through_the_entry_point(tmp_path):
    import json
    import os
    import subprocess
    import sys

    with FakeAnthropic() as server:
        env = dict(os.environ, ANTHROPIC_API_KEY="sk-ant-test", ANTHROPIC_BASE_URL=server.base_url)
        args = [
            "generate",
            "teacher=claude_haiku",
            "data.num_examples=5",
            f"hydra.run.dir={tmp_path}",
        ]
        out = subprocess.run(
            [sys.executable, "-m", "distill", *args], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert len(server.requests) == 5
        assert server.requests[0]["model"] == "claude-haiku-4-5"
        assert "expert programmer" in server.requests[0]["system"]
    records = [json.loads(x) for x in (tmp_path / "data/dataset.jsonl").open()]
    assert len(records) == 5
    assert {r["teacher"] for r in records} == {"claude-haiku-4-5"}
    assert all(r["cost_usd"] > 0 and r["checks"]["syntax"] for r in records)
