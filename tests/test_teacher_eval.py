"""`distill eval eval.model=teacher` with Claude: the benchmark goes through the official SDK
(against the fake API on loopback), every answer is paid once, and Claude's own code is scored."""

from __future__ import annotations

import pytest

from distill.checks import stage_checks
from distill.config import validate
from distill.errors import UserError
from distill.evaluation.benchmarks import load_humaneval
from distill.teacher_eval import run_eval
from tests.conftest import compose_config
from tests.teachers.fake_anthropic import FakeAnthropic

PROBLEMS = load_humaneval(3)


def reply(prompt: str) -> str:
    """Claude's answer: the reference for HumanEval/0 and /2, a wrong body for /1."""
    (problem,) = [p for p in PROBLEMS if p.prompt.strip() in prompt]
    body = "    return []\n" if problem.task_id == "HumanEval/1" else problem.canonical_solution
    return f"Here you go:\n```python\n{problem.prompt}{body}```\nIt handles the edge cases."


@pytest.fixture
def claude(monkeypatch):
    with FakeAnthropic(reply=reply) as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        yield api


def config(*overrides: str):
    cfg = compose_config(
        "eval",
        ["eval.model=teacher", "teacher=claude_sonnet", "eval.limit=3",
         "teacher.cache.count_tokens=false", *overrides],
    )  # fmt: skip
    validate(cfg, *stage_checks("eval"))
    return cfg


def test_claude_is_scored_through_its_client_and_paid_once(claude, tmp_path) -> None:
    run_dir = tmp_path / "run"
    metrics = run_eval(config(), run_dir)
    assert metrics["eval/humaneval/pass@1"] == pytest.approx(2 / 3)
    assert metrics["eval/humaneval/num_problems"] == 3
    assert len(claude.model.bills) == 3 and claude.billed_twice() == 0
    assert metrics["eval/humaneval/teacher_cost_usd"] > 0
    sent = [r["messages"][-1]["content"] for r in claude.requests]
    assert all("Complete the following Python function" in str(m) for m in sent)
    # A rerun reuses the samples; with the samples lost, the ledger still holds what was paid.
    assert run_eval(config(), run_dir)["eval/humaneval/pass@1"] == pytest.approx(2 / 3)
    (run_dir / "eval" / "teacher_samples.jsonl").unlink()
    assert run_eval(config(), run_dir)["eval/humaneval/pass@1"] == pytest.approx(2 / 3)
    assert len(claude.model.bills) == 3


def test_claude_needs_chat_prompts(claude, tmp_path) -> None:
    with pytest.raises(UserError, match="eval.prompt_format=chat"):
        run_eval(config("eval.prompt_format=completion"), tmp_path / "run")
    assert not claude.requests
