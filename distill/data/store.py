"""The dataset store: one JSON record a line, appended atomically, never re-paid on restart.

Each append is a single `write` of one line followed by flush and fsync, so a crash leaves at most a
torn final line; reading reports any line that is not valid JSON with its file and line number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distill.errors import UserError

log = logging.getLogger(__name__)
REQUIRED_FIELDS = ("id", "messages", "response")


class DatasetError(UserError, ValueError):
    """A dataset file that cannot be read as records."""


def record_id(messages: list[dict[str, str]], teacher: str, settings: dict[str, Any]) -> str:
    """A stable id: the hash of the prompt, the teacher and its sampling settings."""
    key = json.dumps(
        {"messages": messages, "teacher": teacher, "settings": settings}, sort_keys=True
    )
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSONL dataset, naming the file and line of any bad one."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(
                    f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno}); fix or "
                    "delete that line (a torn last line is what an interrupted append leaves)"
                ) from None
            missing = (
                [k for k in REQUIRED_FIELDS if k not in record]
                if isinstance(record, dict)
                else REQUIRED_FIELDS
            )
            if missing:
                raise DatasetError(f"{path}:{lineno}: record lacks {', '.join(missing)}")
            yield record


class DatasetStore:
    """Append-only JSONL store of teacher answers.

    Args:
        path: the dataset file (created on first append).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._set_aside_torn_tail()
        self._ids = {r["id"] for r in read_records(self.path)} if self.path.exists() else set()

    def __contains__(self, rid: str) -> bool:
        return rid in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably; a record whose id is already stored is not written again."""
        if record["id"] in self._ids:
            return
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._ids.add(record["id"])

    def _set_aside_torn_tail(self) -> None:
        """Move a final line without its newline (an append cut by a crash) to `<file>.torn`."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        try:  # a complete record that only lacks its newline (another tool wrote it) is kept
            json.loads(data[cut:])
        except ValueError:
            pass
        else:
            with open(self.path, "ab") as f:
                f.write(b"\n")
            return
        with open(self.path.with_suffix(self.path.suffix + ".torn"), "ab") as f:
            f.write(data[cut:] + b"\n")
        with open(self.path, "r+b") as f:
            f.truncate(cut)
        log.warning(
            "%s ended in a torn line (an interrupted append); moved it to %s.torn",
            self.path,
            self.path.name,
        )

    def records(self) -> list[dict[str, Any]]:
        return list(read_records(self.path)) if self.path.exists() else []


def is_validation(record_id: str, val_fraction: float) -> bool:
    """A stable split by id hash: a record stays on its side when the dataset grows."""
    bucket = int(hashlib.sha256(record_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < val_fraction
