"""Message Batches mode: half price, chunks, only expired or errored items resubmitted, stored
batches polled after a restart, a batch whose id was lost found again."""

from __future__ import annotations

import anthropic
import pytest

from distill.data.generation.ledger import Ledger
from distill.teachers.base import Answer
from distill.teachers.claude import ClaudeTeacher
from distill.teachers.claude_common import request_params
from tests.teachers.conftest import claude_config, prices_of
from tests.teachers.test_claude import LONG_SYSTEM, requests, run


def test_batches_cost_half_of_plain_requests_for_the_same_prompts(serve, tmp_path):
    plain_api, batch_api = serve(), serve()
    plain = run(ClaudeTeacher(claude_config(plain_api), "k"), requests(6), tmp_path / "a")
    config = claude_config(batch_api, "mode=batch", "batch.chunk_size=4")
    teacher = ClaudeTeacher(config, "k")
    batched = run(teacher, requests(6), tmp_path / "b")
    assert {k: a.text for k, a in batched.items()} == {k: a.text for k, a in plain.items()}
    assert sum(a.cost_usd for a in batched.values()) == pytest.approx(
        0.5 * sum(a.cost_usd for a in plain.values())
    )
    assert sum(a.cost_usd for a in batched.values()) == pytest.approx(
        batch_api.billed_usd(prices_of(config))
    )
    assert len(batch_api.batches.batches) == 2 and batch_api.requests == []  # 4 + 2, no messages
    assert all(b["batch"] for b in batch_api.bills) and teacher.stats["batch/submitted"] == 2


def test_only_expired_and_errored_items_are_resubmitted(serve, tmp_path):
    api = serve(batch_faults={"expired": 0.3, "errored": 0.2})
    teacher = ClaudeTeacher(claude_config(api, "mode=batch"), "k")
    outcomes = run(teacher, requests(20), tmp_path)
    assert len(outcomes) == 20 and all(isinstance(o, Answer) for o in outcomes.values())
    first, *rest = api.batches.items.values()
    lost = {
        r["custom_id"]
        for r in api.batches.results_of["msgbatch_0001"]
        if r["result"]["type"] != "succeeded"
    }
    assert lost and len(first) == 20
    assert {item["custom_id"] for batch in rest for item in batch} == lost
    assert len(api.bills) == 20 and api.billed_twice() == 0  # unprocessed items cost nothing
    stats = teacher.stats
    assert (
        stats["batch/expired"] + stats["batch/errored"] == stats["batch/resubmitted"] == len(lost)
    )


def test_a_restart_polls_stored_batches_instead_of_resubmitting(serve, tmp_path):
    """The ledger holds a batch id from an earlier run (created through the SDK, then the run
    died): the next run polls it and submits only what it does not cover."""
    api = serve(batch_processing_s=0.3)
    config = claude_config(api, "mode=batch")
    reqs = requests(5)
    client = anthropic.Anthropic(api_key="k", base_url=api.base_url, max_retries=0)
    body = [{"custom_id": r.id, "params": request_params(r, config)} for r in reqs[:3]]
    batch = client.messages.batches.create(requests=body)
    ledger = Ledger(tmp_path / "ledger.jsonl")
    token = ledger.batch_submitting([r.id for r in reqs[:3]], 0.01)
    ledger.batch_created(batch.id, [r.id for r in reqs[:3]], 0.01, token)
    ledger.close()
    teacher = ClaudeTeacher(config, "k")
    outcomes = run(teacher, reqs, tmp_path)
    assert sorted(outcomes) == [r.id for r in reqs]
    assert [len(items) for items in api.batches.items.values()] == [3, 2]
    assert len(api.bills) == 5 and teacher.stats["batch/resumed"] == 1
    assert Ledger(tmp_path / "ledger.jsonl").open_batches() == {}


def test_a_batch_created_but_never_journaled_is_adopted(serve, tmp_path):
    """The create call times out after the batch exists (the id never reaches the ledger):
    the teacher finds it with batches.list and polls it, instead of paying for it twice."""
    api = serve(batch_create_delay_s=0.8)
    config = claude_config(api, "mode=batch", "timeout_s=0.3")
    teacher = ClaudeTeacher(config, "k")
    outcomes = run(teacher, requests(4, system=LONG_SYSTEM), tmp_path)
    assert len(outcomes) == 4 and all(isinstance(o, Answer) for o in outcomes.values())
    assert len(api.batches.batches) == 1 and len(api.bills) == 4
    assert teacher.stats["errors/timeout"] == 1
