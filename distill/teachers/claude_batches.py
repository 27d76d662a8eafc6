"""Message Batches mode (`teacher.mode=batch`): half price, answers within 24 hours.

Requests go out in chunks of `teacher.batch.chunk_size`. Each chunk is journaled as `submit`
before the create call and its batch id the moment it exists, so a restart polls the stored
batches instead of resubmitting; a batch created but never journaled (a crash or a timeout in
between) is found again with `batches.list` and adopted. Only expired, canceled and
transiently errored items go out again, at most `teacher.retry.max_attempts` times.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from distill.teachers.base import Answer, Failure, Request
from distill.teachers.claude_common import (
    RunContext,
    message_text,
    request_params,
    sampling_params,
    spend_limit_message,
    usage_dict,
)
from distill.teachers.pricing import usage_cost, worst_case_cost
from distill.teachers.retry import MAYBE_BILLED, TYPE_CLASSES, backoff_s, classify

ADOPT_SLACK_S = 600.0  # clock skew allowed between us and the API when matching a lost batch


class _Batches:
    """The state of one batch-mode run."""

    def __init__(self, ctx: RunContext, requests: list[Request]) -> None:
        self.ctx = ctx
        self.todo = {r.id: r for r in requests}
        self.active: dict[str, list[str]] = {}
        self.held: dict[str, float] = {}  # request id -> budget reserved for it
        self.submissions: Counter[str] = Counter()
        self.poll_failures: Counter[str] = Counter()
        self.done: set[str] = set()

    async def run(self) -> None:
        for bid, (ids, reserve) in self.ctx.journal.open_batches().items():
            self._track(bid, ids, reserve)
            self.ctx.stats["batch/resumed"] += 1
        await self._adopt(self.ctx.journal.unconfirmed_submits())
        waiting = {rid for ids in self.active.values() for rid in ids}
        queue = [r for r in self.todo.values() if r.id not in waiting]
        while (queue and self.ctx.stopped is None) or self.active:
            while queue and self.ctx.stopped is None:
                chunk = self._take_chunk(queue)
                if not chunk:
                    break
                await self._submit(chunk)
            if not self.active:
                break
            await asyncio.sleep(self.ctx.cfg.batch.poll_interval_s)
            for bid in list(self.active):
                queue += await self._poll(bid)

    def _track(self, bid: str, ids: list[str], reserve: float) -> None:
        self.active[bid] = list(ids)
        for rid in ids:
            self.held[rid] = reserve / max(len(ids), 1)

    def _take_chunk(self, queue: list[Request]) -> list[Request]:
        """Up to `chunk_size` requests whose worst case fits the budget now."""
        chunk: list[Request] = []
        while queue and len(chunk) < self.ctx.cfg.batch.chunk_size:
            r = queue[0]
            worst = worst_case_cost(r.messages, r.max_tokens, self.ctx.prices, batch=True)
            if not self.ctx.budget.reserve_now(worst):
                if not chunk and not self.active:  # nothing will free budget: stop here
                    self.ctx.stop("budget", self.ctx.budget.describe(worst))
                break  # else wait for running batches to settle
            self.held[r.id] = worst
            chunk.append(queue.pop(0))
        return chunk

    async def _submit(self, chunk: list[Request]) -> None:
        ids = [r.id for r in chunk]
        reserve = sum(self.held[rid] for rid in ids)
        token = self.ctx.journal.batch_submitting(ids, reserve)
        self.submissions.update(ids)
        sampling = sampling_params(self.ctx.cfg)
        body = [
            {"custom_id": r.id, "params": {**request_params(r, self.ctx.cfg), **sampling}}
            for r in chunk
        ]
        started = time.time()
        batch = await self._call(
            lambda: self.ctx.client.messages.batches.create(requests=body),
            on_maybe_billed=lambda: self._find_lost(started, len(ids)),
        )
        if isinstance(batch, Failure):
            self.ctx.journal.submit_abandoned(token)
            for rid in ids:
                self._release(rid)
                self.ctx.fail(rid, batch)
            return
        self.ctx.journal.batch_created(batch.id, ids, reserve, token)
        self.active[batch.id] = ids
        self.ctx.stats["batch/submitted"] += 1
        self.ctx.stats["batch/requests"] += len(ids)

    async def _poll(self, bid: str) -> list[Request]:
        """Check one batch; when it has ended, take its results. Returns requests to resubmit."""
        batch = await self._call(lambda: self.ctx.client.messages.batches.retrieve(bid))
        if isinstance(batch, Failure) or batch.processing_status != "ended":
            if isinstance(batch, Failure):
                self._poll_failed(bid, batch)
            return []
        resubmit: list[Request] = []
        try:
            results = await self.ctx.client.messages.batches.results(bid)
            async for item in results:
                resubmit += self._result(item)
        except Exception as err:  # noqa: BLE001 (answers so far are journaled; poll again)
            self._poll_failed(bid, Failure(classify(err).kind, str(err)))
            return resubmit
        self.ctx.journal.batch_ended(bid)
        del self.active[bid]
        return resubmit

    def _poll_failed(self, bid: str, failure: Failure) -> None:
        self.poll_failures[bid] += 1
        if self.poll_failures[bid] >= self.ctx.cfg.retry.max_attempts:
            self.active.pop(bid)  # stays open in the ledger: the next run polls it again
            self.ctx.stop(
                "batch_poll",
                f"batch {bid} could not be polled ({failure.kind}: {failure.message}); rerun "
                "the same command later: it polls the batch again and resubmits nothing",
            )

    def _result(self, item: Any) -> list[Request]:
        rid, result = item.custom_id, item.result
        request = self.todo.get(rid)
        if request is None or rid in self.done:
            return []
        self.done.add(rid)
        if result.type == "succeeded":
            usage = usage_dict(result.message.usage)
            cost = usage_cost(usage, self.ctx.prices, batch=True, ttl=self.ctx.cfg.cache.ttl)
            self.ctx.budget.settle(self.held.pop(rid, 0.0), cost)
            answer = Answer(message_text(result.message), usage, cost)
            self.ctx.deliver(rid, answer, result.message.stop_reason)
            return []
        self._release(rid)
        self.ctx.stats[f"batch/{result.type}"] += 1
        if result.type == "errored":
            error = result.error.error
            kind = TYPE_CLASSES.get(error.type, "client_error")
            failure = Failure(kind, f"{error.type}: {error.message}", kind == "client_error")
        else:  # expired or canceled: never processed, never billed
            failure = Failure(result.type, f"the batch item {result.type}")
        if failure.permanent or self.submissions[rid] >= self.ctx.cfg.retry.max_attempts:
            self.ctx.fail(rid, failure)
            return []
        self.done.discard(rid)
        self.ctx.stats["batch/resubmitted"] += 1
        return [request]

    async def _adopt(self, submits: list[dict[str, Any]]) -> None:
        """Find the batches of submissions whose id never reached the ledger."""
        for submit in submits:
            batch = await self._find_lost(submit["t"], len(submit["ids"]))
            if batch is None:
                self.ctx.journal.submit_abandoned(submit["token"])
                continue
            self.ctx.journal.batch_created(
                batch.id, submit["ids"], submit["reserve_usd"], submit["token"]
            )
            self._track(batch.id, submit["ids"], submit["reserve_usd"])
            self.ctx.budget.reserved += submit["reserve_usd"]  # it may all be billed
            self.ctx.stats["batch/adopted"] += 1

    async def _find_lost(self, since: float, count: int) -> Any | None:
        """A batch we do not know, created after `since`, holding `count` requests."""
        page = await self._call(lambda: self.ctx.client.messages.batches.list(limit=100))
        if isinstance(page, Failure):
            return None
        known = set(self.active) | set(getattr(self.ctx.journal, "known_batch_ids", ()))
        for batch in page.data:
            total = sum(batch.request_counts.model_dump().values())
            fresh = batch.created_at.timestamp() >= since - ADOPT_SLACK_S
            if batch.id not in known and fresh and total == count:
                return batch
        return None

    async def _call(
        self,
        call: Callable[[], Awaitable[Any]],
        on_maybe_billed: Callable[[], Awaitable[Any]] | None = None,
    ) -> Any:
        """One batch API call with the same error classes and bounded backoff as messages."""
        for attempt in range(1, self.ctx.cfg.retry.max_attempts + 1):
            try:
                return await call()
            except Exception as err:  # noqa: BLE001 (classify re-raises non-API errors)
                c = classify(err)
            self.ctx.stats[f"errors/{c.kind}"] += 1
            if c.kind in MAYBE_BILLED and on_maybe_billed is not None:
                found = await on_maybe_billed()  # it may exist although the answer was lost
                if found is not None:
                    return found
            if c.kind == "spend_limit":
                self.ctx.stop("spend_limit", spend_limit_message(c.message))
            if not c.retryable or self.ctx.stopped is not None:
                return Failure(c.kind, c.message, c.kind == "client_error")
            self.ctx.stats["retries"] += 1
            delay = c.retry_after or backoff_s(c.kind, attempt, self.ctx.cfg.retry, self.ctx.rng)
            await asyncio.sleep(delay)
        return Failure(c.kind, f"{c.message} (after {attempt} attempts)")

    def _release(self, rid: str) -> None:
        self.ctx.budget.settle(self.held.pop(rid, 0.0), 0.0)


async def run_batches(ctx: RunContext, requests: list[Request]) -> None:
    """Answer `requests` through Message Batches, resuming the batches the journal holds."""
    await _Batches(ctx, requests).run()
