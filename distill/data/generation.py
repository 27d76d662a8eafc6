"""The generate stage's core: instructions -> teacher answers -> checked records in the store."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from distill.data.quality import checks_for, extract_code
from distill.data.store import DatasetStore, record_id
from distill.data.templates import Instruction
from distill.teachers.base import Teacher

log = logging.getLogger(__name__)


def to_messages(instruction: Instruction, system_prompt: str | None) -> list[dict[str, str]]:
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return system + [{"role": "user", "content": instruction.prompt}]


def generate_dataset(
    teacher: Teacher,
    instructions: list[Instruction],
    store: DatasetStore,
    system_prompt: str | None = None,
) -> dict[str, Any]:
    """Ask the teacher every instruction whose record is not stored yet; store each answer at once.

    Returns:
        A summary: counts of requested, already stored, answered, and check outcomes, the cost and
        the time taken.
    """
    start = time.perf_counter()
    settings = teacher.settings()
    todo, skipped = [], 0
    for ins in instructions:
        messages = to_messages(ins, system_prompt)
        rid = record_id(messages, teacher.name, settings)
        if rid in store:
            skipped += 1
        else:
            todo.append((rid, ins, messages))
    log.info("%d instructions: %d already stored, %d to ask", len(instructions), skipped, len(todo))
    checks: Counter[str] = Counter()
    cost = 0.0
    for index, answer in teacher.answer([m for _, _, m in todo]):
        rid, ins, messages = todo[index]
        code = extract_code(answer.text, ins.language)
        record = {
            "id": rid,
            "language": ins.language,
            "task_kind": ins.task_kind,
            "difficulty": ins.difficulty,
            "messages": messages,
            "response": answer.text,
            "code": code,
            "teacher": teacher.name,
            "usage": answer.usage,
            "cost_usd": answer.cost_usd,
            "checks": checks_for(code, ins.language),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        store.append(record)  # durable before anything else happens to the answer
        cost += answer.cost_usd
        checks["with_code"] += bool(code)
        checks["syntax_ok"] += bool(record["checks"]["syntax"])
    return {
        "generate/requested": len(instructions),
        "generate/already_stored": skipped,
        "generate/answered": len(todo),
        "generate/with_code": checks["with_code"],
        "generate/syntax_ok": checks["syntax_ok"],
        "generate/records": len(store),
        "generate/cost_usd": round(cost, 6),
        "generate/seconds": round(time.perf_counter() - start, 1),
    }
