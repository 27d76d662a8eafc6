"""The ledger (what a run pays for, fsynced event by event) and the generate pipeline's use of
it: a restart rebuilds records from answers already paid for, counts what was in flight, and
sizes each request from its instruction."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from distill.data.generation.generate import generate_dataset, plan_requests
from distill.data.generation.ledger import Ledger, ledger_path
from distill.data.instructions.templates import sample_instructions
from distill.data.store import DatasetError, DatasetStore
from distill.teachers.base import Answer, Failure
from distill.teachers.claude import ClaudeTeacher
from tests.teachers.conftest import claude_config
from tests.teachers.fake_anthropic import FakeAnthropic

MIX = ({"python": 1}, {"implement": 1}, {"easy": 1, "medium": 1})


@pytest.fixture
def api():
    with FakeAnthropic() as server:
        yield server


@dataclass(frozen=True)
class SizedInstruction:
    """An instruction whose template sized its answer (the `max_tokens` hint)."""

    language: str
    task_kind: str
    difficulty: str
    prompt: str
    max_tokens: int | None = None


def test_ledger_replays_answers_failures_in_flight_and_batches(tmp_path):
    path = tmp_path / "d.ledger.jsonl"
    ledger = Ledger(path)
    ledger.sent("a", 0.5)
    ledger.answered("a", Answer("text", {"input_tokens": 3}, 0.01))
    ledger.sent("b", 0.25)  # in flight when the run dies
    ledger.sent("c", 0.5)
    ledger.failed("c", Failure("client_error", "400 bad", permanent=True))
    ledger.maybe_billed("d", 0.125)
    token = ledger.batch_submitting(["e", "f"], 0.2)
    ledger.batch_created("msgbatch_1", ["e", "f"], 0.2, token)
    ledger.batch_submitting(["g"], 0.1)  # the create call never returned
    ledger.close()

    again = Ledger(path)
    assert again.answer_for("a") == Answer("text", {"input_tokens": 3}, 0.01)
    assert again.failures["c"]["permanent"] and again.orphans == {"b", "g"}
    assert again.open_batches() == {"msgbatch_1": (["e", "f"], 0.2)}
    assert [s["ids"] for s in again.unconfirmed_submits()] == [["g"]]
    assert again.committed_usd == pytest.approx(0.01 + 0.125 + 0.25)  # paid, maybe, in flight
    again.sent("b", 0.25)  # sent again: possibly billed twice, and counted
    assert again.resent_orphans == 1
    again.close()
    assert Ledger(path).orphaned_usd == pytest.approx(0.25)


def test_a_torn_last_line_is_cut_and_a_corrupt_line_is_named(tmp_path):
    path = tmp_path / "d.ledger.jsonl"
    ledger = Ledger(path)
    ledger.answered("a", Answer("x"))
    ledger.close()
    with open(path, "a") as f:
        f.write('{"e": "answer", "id": "b", "te')  # a SIGKILL mid-write
    assert set(Ledger(path).answers) == {"a"}
    assert path.read_text().endswith("}\n")
    with open(path, "a") as f:
        f.write('{"e": "mystery"}\n')
    with pytest.raises(DatasetError, match=r"d.ledger.jsonl:2: not a ledger event"):
        Ledger(path)


def test_answers_paid_before_a_crash_are_stored_without_asking_again(api, tmp_path):
    instructions = sample_instructions(6, *MIX)
    store_path = tmp_path / "data.jsonl"
    teacher = ClaudeTeacher(claude_config(api), "k")
    generate_dataset(teacher, instructions, DatasetStore(store_path), "hi")
    assert ledger_path(store_path).name == "data.ledger.jsonl"
    # A crash after the ledger append and before the store append loses only the store lines.
    lines = store_path.read_text().splitlines()
    store_path.write_text("\n".join(lines[:2]) + "\n")
    summary = generate_dataset(teacher, instructions, DatasetStore(store_path), "hi")
    assert summary["generate/recovered"] == 4 and summary["generate/answered"] == 0
    assert summary["generate/records"] == 6 and len(api.requests) == 6
    records = [json.loads(x) for x in store_path.read_text().splitlines()]
    assert all(r["checks"]["syntax"] and r["cost_usd"] > 0 for r in records)


def test_requests_in_flight_at_a_crash_are_resent_and_reported(api, tmp_path):
    instructions = sample_instructions(4, *MIX)
    teacher = ClaudeTeacher(claude_config(api), "k")
    store_path = tmp_path / "data.jsonl"
    crashed = Ledger(ledger_path(store_path))  # what a run killed mid-request leaves behind
    for planned in plan_requests(teacher, instructions, "hi")[:2]:
        crashed.sent(planned.request.id, 0.001)
    crashed.close()
    summary = generate_dataset(teacher, instructions, DatasetStore(store_path), "hi")
    assert summary["generate/answered"] == 4 and summary["generate/inflight_rebilled"] == 2


def test_each_request_is_sized_by_its_instruction_within_the_ceiling(api, tmp_path):
    teacher = ClaudeTeacher(claude_config(api), "k")
    sized = [
        SizedInstruction("python", "implement", "easy", "Write add(a, b).", max_tokens=64),
        SizedInstruction("python", "implement", "easy", "Write sub(a, b)."),
        SizedInstruction("python", "implement", "easy", "Write mul(a, b).", max_tokens=10**6),
    ]
    plan = plan_requests(teacher, sized, "hi")
    ceiling = teacher.max_tokens  # teacher.max_new_tokens
    assert [p.request.max_tokens for p in plan] == [64, ceiling, ceiling]
    longer = SizedInstruction("python", "implement", "easy", "Write add(a, b).", 128)
    same_prompt = plan_requests(teacher, [longer], "hi")
    assert same_prompt[0].request.id != plan[0].request.id  # the cap is part of the id
    generate_dataset(teacher, sized, DatasetStore(tmp_path / "d.jsonl"), "hi")
    assert sorted(b["max_tokens"] for b in api.requests) == [64, ceiling, ceiling]
