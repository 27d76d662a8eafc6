"""The generate stage's core: instructions -> requests -> teacher answers -> checked records.

Order of events for one answer: the teacher journals it in the ledger (fsynced), yields it,
then quality checks run and the record is appended to the store. A restart rebuilds records for
answers that reached the ledger but not the store, skips everything stored, and asks only the
rest; requests that were in flight at a crash are the only ones that may be billed twice, and
the summary counts them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from distill.data.generation.ledger import Ledger, ledger_path
from distill.data.generation.progress import Progress, summary_table
from distill.data.instructions.templates import Instruction
from distill.data.quality.checks import checks_for, extract_code
from distill.data.store import DatasetStore, record_id
from distill.teachers.base import Answer, Failure, Request, Teacher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Planned:
    """One request and the instruction it came from."""

    request: Request
    instruction: Instruction


def to_messages(
    instruction: Instruction,
    system_prompt: str | None,
    few_shot: Sequence[dict[str, str]] = (),
) -> list[dict[str, str]]:
    """System prompt, few-shot turns, then the instruction: what the teacher sees."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    shots = [{"role": m["role"], "content": m["content"]} for m in few_shot]
    return system + shots + [{"role": "user", "content": instruction.prompt}]


def plan_requests(
    teacher: Teacher,
    instructions: list[Instruction],
    system_prompt: str | None = None,
    few_shot: Sequence[dict[str, str]] = (),
) -> list[Planned]:
    """One request per distinct instruction, its answer capped at `Instruction.max_tokens` (the
    template's budget, which rate limits reserve) within the teacher's own ceiling."""
    planned: dict[str, Planned] = {}
    for ins in instructions:
        max_tokens = min(getattr(ins, "max_tokens", None) or teacher.max_tokens, teacher.max_tokens)
        messages = to_messages(ins, system_prompt, few_shot)
        rid = record_id(messages, teacher.name, teacher.settings(max_tokens))
        planned.setdefault(rid, Planned(Request(rid, messages, max_tokens), ins))
    return list(planned.values())


def build_record(
    planned: Planned, answer: Answer, teacher: str, check_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The dataset record of one answer, with its quality checks (`checks_for`; options such as
    `compile_timeout_s` and `test_timeout_s` from `data.quality`)."""
    ins = planned.instruction
    code = extract_code(answer.text, ins.language)
    checks = checks_for(code, ins.language, response=answer.text, **dict(check_options or {}))
    return {
        "id": planned.request.id,
        "language": ins.language,
        "task_kind": ins.task_kind,
        "difficulty": ins.difficulty,
        "messages": planned.request.messages,
        "response": answer.text,
        "code": code,
        "teacher": teacher,
        "usage": answer.usage,
        "cost_usd": answer.cost_usd,
        "checks": checks,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def generate_dataset(
    teacher: Teacher,
    instructions: list[Instruction],
    store: DatasetStore,
    system_prompt: str | None = None,
    few_shot: Sequence[dict[str, str]] = (),
    ledger: Ledger | None = None,
    check_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Ask the teacher every instruction whose record is not stored yet; store each answer.

    Args:
        few_shot: user/assistant turns between the system prompt and each instruction.
        ledger: the journal of paid requests (default: beside the store's file).
        check_options: keyword arguments of `checks_for` (timeouts).

    Returns:
        The summary (`generate/...` metrics): counts, errors by class, cache, cost, time, and
        `generate/stopped` with its message when the run stopped sending early.
    """
    start = time.perf_counter()
    ledger = ledger or Ledger(ledger_path(store.path))
    plan = plan_requests(teacher, instructions, system_prompt, few_shot)
    tally: Counter[str] = Counter(requested=len(instructions))
    todo: list[Planned] = []
    for p in plan:
        rid = p.request.id
        if rid in store:
            tally["already_stored"] += 1
        elif (answer := ledger.answer_for(rid)) is not None:  # paid before a crash: keep it
            _store(store, build_record(p, answer, teacher.name, check_options), tally)
            tally["recovered"] += 1
        elif ledger.failures.get(rid, {}).get("permanent"):
            tally["failed_earlier"] += 1
        else:
            todo.append(p)
    log.info(
        "%d instructions: %d stored, %d recovered from the ledger, %d to ask",
        len(instructions),
        tally["already_stored"],
        tally["recovered"],
        len(todo),
    )
    stats = getattr(teacher, "stats", {})
    progress = Progress(len(todo), teacher.name, stats, tally["already_stored"])
    by_id = {p.request.id: p for p in todo}
    try:
        for rid, outcome in teacher.answer([p.request for p in todo], ledger):
            if isinstance(outcome, Failure):
                tally["failed"] += 1
                tally[f"failed/{outcome.kind}"] += 1
                log.debug("%s failed (%s): %s", rid, outcome.kind, outcome.message)
            else:
                record = build_record(by_id[rid], outcome, teacher.name, check_options)
                _store(store, record, tally)
                tally["answered"] += 1
                tally["cost"] += outcome.cost_usd
            progress.update(not isinstance(outcome, Failure), getattr(outcome, "cost_usd", 0.0))
    finally:
        progress.close()
        ledger.close()
    summary = _summary(tally, len(todo), teacher, ledger, len(store), time.perf_counter() - start)
    log.info("generate summary (%s):\n%s", teacher.name, summary_table(summary))
    return summary


def _store(store: DatasetStore, record: dict[str, Any], tally: Counter[str]) -> None:
    store.append(record)
    tally["with_code"] += bool(record["code"])
    tally["syntax_ok"] += bool(record["checks"].get("syntax"))


def _summary(
    tally: Counter[str], asked: int, teacher: Teacher, ledger: Ledger, records: int, seconds: float
) -> dict[str, Any]:
    stats = dict(getattr(teacher, "stats", {}))
    stopped = getattr(teacher, "stopped", None)
    answered = tally["answered"]
    summary: dict[str, Any] = {
        "requested": tally["requested"],
        "already_stored": tally["already_stored"],
        "recovered": tally["recovered"],
        "asked": asked,
        "answered": answered,
        "failed": tally["failed"],
        "failed_earlier": tally["failed_earlier"],
        "not_sent": asked - answered - tally["failed"],
        "inflight_rebilled": ledger.resent_orphans,
        "with_code": tally["with_code"],
        "syntax_ok": tally["syntax_ok"],
        "records": records,
        "cost_usd": round(tally["cost"], 6),
        "cost_usd_total": round(ledger.paid_usd, 6),
        "budget_usd": getattr(getattr(teacher, "cfg", None), "budget_usd", None),
        "seconds": round(seconds, 1),
        "answers_per_min": round(answered / max(seconds, 1e-9) * 60, 1),
        "stopped": stopped[0] if stopped else "",
        "stop_message": stopped[1] if stopped else "",
    }
    summary.update({k: v for k, v in tally.items() if k.startswith("failed/")})
    keep = ("errors/", "cache/", "batch/", "usage/")
    summary.update(
        {
            k: v
            for k, v in stats.items()
            if k.startswith(keep) or k in ("retries", "streamed", "truncated")
        }
    )
    return {f"generate/{k}": v for k, v in summary.items()}
