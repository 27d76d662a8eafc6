"""The ledger: an append-only journal of everything a generate run pays for.

Beside the dataset (`dataset.ledger.jsonl`), one JSON event a line, each written with one
`write` and fsynced before the caller goes on:

| event | when | a restart |
|---|---|---|
| `sent` | a request goes out (once per request per run) | in flight at a crash: may re-bill |
| `answer` | an answer arrived: its text, usage and cost | rebuilds the record, never asks again |
| `failed` | no answer this run (error class, message, permanent?) | retries unless permanent |
| `maybe_billed` | an attempt failed after the API may have billed it | counts against the budget |
| `submit` | a Message Batch is about to be created | adopts the batch if it was created |
| `batch` | the batch id exists | polls it instead of resubmitting |
| `batch_end` | every result of a batch is journaled | forgets the batch |
| `submit_abandoned` | no batch was created for a `submit` | resubmits its requests |

A crash can tear only the final line; it is cut off on the next open (that answer was in flight).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from distill.data.store import DatasetError
from distill.teachers.base import Answer, Failure

log = logging.getLogger(__name__)


def ledger_path(dataset: Path) -> Path:
    """`<dir>/<name>.ledger.jsonl` beside the dataset file `<dir>/<name>.jsonl`."""
    dataset = Path(dataset)
    return dataset.with_name(dataset.stem + ".ledger.jsonl")


class Ledger:
    """The journal of one dataset (implements `distill.teachers.base.Journal`).

    Args:
        path: the ledger file (created on the first event).

    Attributes:
        answers: request id -> {text, usage, cost_usd} of every answer ever received.
        failures: request id -> {kind, message, permanent} of requests whose last outcome failed.
        orphans: ids that were in flight when the last run ended without an outcome.
        resent_orphans: how many of `orphans` this run sent again (possibly billed twice).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.answers: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, dict[str, Any]] = {}
        self._in_flight: dict[str, float] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._submits: dict[str, dict[str, Any]] = {}
        self.known_batch_ids: set[str] = set()
        self.orphaned_usd = self.maybe_billed_usd = 0.0
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._replay()
        self.orphans = set(self._in_flight) | {
            rid for s in self._submits.values() for rid in s["ids"]
        }
        self.resent_orphans = 0
        self._resent: set[str] = set()

    # --- the Journal interface (called from the teacher's thread) ----------------------------

    def sent(self, rid: str, reserve_usd: float) -> None:
        self._count_resent([rid])
        self._append({"e": "sent", "id": rid, "reserve_usd": reserve_usd, "t": time.time()})

    def answered(self, rid: str, answer: Answer) -> None:
        event = {"e": "answer", "id": rid, **asdict(answer), "t": time.time()}
        self._append(event)

    def failed(self, rid: str, failure: Failure) -> None:
        self._append({"e": "failed", "id": rid, **asdict(failure), "t": time.time()})

    def maybe_billed(self, rid: str, usd: float) -> None:
        self._append({"e": "maybe_billed", "id": rid, "usd": usd})

    def batch_submitting(self, rids: list[str], reserve_usd: float) -> str:
        self._count_resent(rids)
        token = uuid.uuid4().hex
        event = {"e": "submit", "token": token, "ids": rids, "reserve_usd": reserve_usd}
        self._append({**event, "t": time.time()})
        return token

    def batch_created(self, batch_id: str, rids: list[str], reserve_usd: float, token: str) -> None:
        event = {"e": "batch", "batch_id": batch_id, "ids": rids, "reserve_usd": reserve_usd}
        self._append({**event, "token": token})

    def batch_ended(self, batch_id: str) -> None:
        self._append({"e": "batch_end", "batch_id": batch_id})

    def submit_abandoned(self, token: str) -> None:
        self._append({"e": "submit_abandoned", "token": token})

    def open_batches(self) -> dict[str, tuple[list[str], float]]:
        """Batches to poll: created, not ended, and still holding an unanswered request."""
        return {
            b: (e["ids"], e["reserve_usd"])
            for b, e in self._batches.items()
            if any(rid not in self.answers for rid in e["ids"])
        }

    def unconfirmed_submits(self) -> list[dict[str, Any]]:
        return list(self._submits.values())

    # --- what a restart needs -----------------------------------------------------------------

    def answer_for(self, rid: str) -> Answer | None:
        a = self.answers.get(rid)
        return Answer(a["text"], a["usage"], a["cost_usd"]) if a else None

    @property
    def paid_usd(self) -> float:
        """What the answers in the ledger cost."""
        return sum(a["cost_usd"] for a in self.answers.values())

    @property
    def committed_usd(self) -> float:
        """Spend a budget must assume: answers, attempts that may have been billed, and the
        worst case of every request in flight at a crash."""
        in_flight = sum(self._in_flight.values())
        return self.paid_usd + self.maybe_billed_usd + self.orphaned_usd + in_flight

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # --- internals ----------------------------------------------------------------------------

    def _count_resent(self, rids: list[str]) -> None:
        with self._lock:
            new = [r for r in rids if r in self.orphans and r not in self._resent]
            self._resent.update(new)
            self.resent_orphans += len(new)

    def _append(self, event: dict[str, Any]) -> None:
        data = (json.dumps(event, ensure_ascii=False) + "\n").encode()
        with self._lock:
            if self._fd is None:
                new = not self.path.exists()
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                if new:  # make the new file's directory entry durable too
                    _fsync_dir(self.path.parent)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
            self._apply(event)

    def _replay(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut < len(data):  # a torn final line: the event never completed
            with open(self.path, "r+b") as f:
                f.truncate(cut)
            log.warning("%s ended in a torn line (a crash mid-append); cut it off", self.path)
        for lineno, line in enumerate(data[:cut].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                self._apply(json.loads(line))
            except (ValueError, KeyError) as err:
                raise DatasetError(
                    f"{self.path}:{lineno}: not a ledger event ({err}); the ledger is written only "
                    "by `distill generate`: restore it or move it away (answers in it are lost)"
                ) from None

    def _apply(self, e: dict[str, Any]) -> None:
        kind = e["e"]
        if kind == "sent":
            if e["id"] in self._in_flight:  # sent again without an outcome: the run died
                self.orphaned_usd += self._in_flight[e["id"]]
            self._in_flight[e["id"]] = e["reserve_usd"]
        elif kind == "answer":
            self._in_flight.pop(e["id"], None)
            self.failures.pop(e["id"], None)
            self.answers[e["id"]] = {k: e[k] for k in ("text", "usage", "cost_usd")}
        elif kind == "failed":
            self._in_flight.pop(e["id"], None)
            self.failures[e["id"]] = {k: e[k] for k in ("kind", "message", "permanent")}
        elif kind == "maybe_billed":
            self.maybe_billed_usd += e["usd"]
        elif kind == "submit":
            self._submits[e["token"]] = e
        elif kind == "batch":
            self._submits.pop(e.get("token"), None)
            self._batches[e["batch_id"]] = e
            self.known_batch_ids.add(e["batch_id"])
        elif kind == "batch_end":
            self._batches.pop(e["batch_id"], None)
        elif kind == "submit_abandoned":
            self._submits.pop(e["token"], None)
        else:
            raise KeyError(f"unknown event {kind!r}")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
