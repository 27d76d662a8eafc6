"""The fake API's Message Batches: created at once, processed after a delay, results as JSONL.

An item's first submission may come back expired or errored (`batch_faults`); a resubmission
succeeds. Succeeded items are billed at the batch price (the bill says `batch`); expired and
errored ones are not billed, as with the API.
"""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


class FakeBatches:
    """Batches of one fake server.

    Args:
        fake: the `FakeAnthropic` (its base URL and model).
        processing_s: how long a batch stays `in_progress`.
        faults: {"expired"|"errored": probability} on an item's first submission.
    """

    def __init__(self, fake: Any, processing_s: float, faults: dict[str, float]) -> None:
        self.fake, self.processing_s, self.faults = fake, processing_s, faults
        self.batches: dict[str, dict[str, Any]] = {}
        self.items: dict[str, list[dict[str, Any]]] = {}
        self.results_of: dict[str, list[dict[str, Any]]] = {}
        self.seen: set[str] = set()
        self.rng = random.Random(0)
        self.lock = threading.Lock()

    def create(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        now = time.time()
        with self.lock:
            bid = f"msgbatch_{len(self.batches) + 1:04d}"
            self.items[bid] = requests
            self.batches[bid] = {
                "id": bid,
                "type": "message_batch",
                "processing_status": "in_progress",
                "request_counts": {
                    "processing": len(requests),
                    "succeeded": 0,
                    "errored": 0,
                    "canceled": 0,
                    "expired": 0,
                },
                "created_at": _iso(now),
                "expires_at": _iso(now + timedelta(hours=24).total_seconds()),
                "ended_at": None,
                "cancel_initiated_at": None,
                "archived_at": None,
                "results_url": None,
            }
        timer = threading.Timer(self.processing_s, self._process, args=(bid,))
        timer.daemon = True
        timer.start()
        return dict(self.batches[bid])

    def _process(self, bid: str) -> None:
        results = []
        for item in self.items[bid]:
            rid = item["custom_id"]
            with self.lock:
                first = rid not in self.seen
                self.seen.add(rid)
                roll = self.rng.random()
            if first and roll < self.faults.get("expired", 0.0):
                results.append({"custom_id": rid, "result": {"type": "expired"}})
            elif first and roll < self.faults.get("expired", 0.0) + self.faults.get("errored", 0):
                error = {"type": "api_error", "message": "Internal server error"}
                result = {"type": "errored", "error": {"type": "error", "error": error}}
                results.append({"custom_id": rid, "result": result})
            else:
                message = self.fake.model.answer(item["params"], batch=True)
                results.append(
                    {"custom_id": rid, "result": {"type": "succeeded", "message": message}}
                )
        with self.lock:
            batch = self.batches[bid]
            counts = batch["request_counts"]
            counts["processing"] = 0
            for r in results:
                counts[r["result"]["type"]] += 1
            self.results_of[bid] = results
            batch.update(
                processing_status="ended",
                ended_at=_iso(time.time()),
                results_url=f"{self.fake.base_url}/v1/messages/batches/{bid}/results",
            )

    def get(self, bid: str) -> dict[str, Any] | None:
        with self.lock:
            batch = self.batches.get(bid)
            return json.loads(json.dumps(batch)) if batch else None

    def results(self, bid: str) -> bytes | None:
        with self.lock:
            results = self.results_of.get(bid)
        if results is None:
            return None
        return "".join(json.dumps(r) + "\n" for r in results).encode()

    def listing(self) -> dict[str, Any]:
        with self.lock:
            data = [json.loads(json.dumps(b)) for b in reversed(self.batches.values())]
        return {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
