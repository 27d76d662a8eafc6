"""Helpers the data tests share: a minimal dataset record, a JSONL writer, the record's fields."""

from __future__ import annotations

import json

RECORD_FIELDS = {
    "id",
    "language",
    "task_kind",
    "difficulty",
    "messages",
    "response",
    "code",
    "teacher",
    "usage",
    "cost_usd",
    "checks",
    "created_at",
}


def record(i: int, response: str = "def f():\n    return 1", prompt: str = "Write f.") -> dict:
    return {
        "id": f"r{i:03d}",
        "messages": [{"role": "user", "content": f"{prompt} ({i})"}],
        "response": response,
    }


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
