"""The Messages API path: one request per prompt, `max_concurrency` at a time.

Per request: reserve its worst case in the budget, journal it as in flight, then per attempt wait
for the rate limiter, send (streaming when it may be long), and either deliver the answer
(journaled before anything else) or classify the error and retry, wait, fail or stop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from distill.teachers.base import Answer, Failure, Request
from distill.teachers.claude_common import (
    RunContext,
    estimate_tokens,
    message_text,
    request_params,
    sampling_params,
    spend_limit_message,
    usage_dict,
)
from distill.teachers.pricing import BudgetExhausted, usage_cost, worst_case_cost
from distill.teachers.retry import (
    MAYBE_BILLED,
    Classified,
    MalformedAnswer,
    backoff_s,
    classify,
)


@dataclass
class _Job:
    """One request's state across its attempts."""

    request: Request
    worst_usd: float
    est_input: int
    held_usd: float = 0.0  # the budget reservation this request holds now
    attempt: int = 0


async def run_messages(ctx: RunContext, requests: list[Request]) -> None:
    """Answer `requests` with at most `teacher.max_concurrency` in flight."""
    queue = deque(requests)

    async def worker() -> None:
        while queue and ctx.stopped is None:
            await answer_one(ctx, queue.popleft())

    await asyncio.gather(*(worker() for _ in range(min(ctx.cfg.max_concurrency, len(queue)))))


async def answer_one(ctx: RunContext, request: Request) -> None:
    job = _Job(
        request,
        worst_case_cost(request.messages, request.max_tokens, ctx.prices),
        estimate_tokens(request.messages),
    )
    if not await _reserve(ctx, job):
        return
    ctx.journal.sent(request.id, job.worst_usd)
    while True:
        job.attempt += 1
        await ctx.limiter.acquire(job.est_input, request.max_tokens)
        try:
            message, headers = await send(ctx, request)
        except Exception as err:  # noqa: BLE001 (classify re-raises anything not from the API)
            if await _on_error(ctx, job, classify(err), getattr(err, "response", None)):
                continue
            return
        _deliver(ctx, job, message, headers)
        return


async def send(ctx: RunContext, request: Request) -> tuple[Any, Any]:
    """One attempt: (the SDK `Message`, the response headers). A request that may run long
    streams, so a slow answer keeps the connection busy instead of hitting the read timeout."""
    params = request_params(request, ctx.cfg)
    if ctx.cfg.sampling:
        params["extra_body"] = sampling_params(ctx.cfg)
    if request.max_tokens >= ctx.cfg.stream_min_tokens:
        ctx.stats["streamed"] += 1
        async with ctx.client.messages.stream(**params) as stream:
            message = await stream.get_final_message()
            headers = stream.response.headers
    else:
        raw = await ctx.client.messages.with_raw_response.create(**params)
        message, headers = await raw.parse(), raw.headers
    if not isinstance(getattr(message, "content", None), list) or not hasattr(message, "usage"):
        raise MalformedAnswer(f"not a complete message: {str(message)[:200]}")
    return message, headers


def _deliver(ctx: RunContext, job: _Job, message: Any, headers: Any) -> None:
    usage = usage_dict(message.usage)
    cost = usage_cost(usage, ctx.prices, ttl=ctx.cfg.cache.ttl)
    limited_input = usage["input_tokens"] + usage["cache_creation_input_tokens"]
    ctx.limiter.settle(job.est_input, limited_input, job.request.max_tokens, usage["output_tokens"])
    ctx.limiter.observe(headers)
    ctx.budget.settle(job.held_usd, cost)
    job.held_usd = 0.0
    ctx.deliver(job.request.id, Answer(message_text(message), usage, cost), message.stop_reason)


async def _on_error(ctx: RunContext, job: _Job, err: Classified, response: Any) -> bool:
    """Count, then decide: True to try again (after waiting), False when the request is done."""
    rid, retry = job.request.id, ctx.cfg.retry
    ctx.stats[f"errors/{err.kind}"] += 1
    ctx.limiter.cancel(job.est_input, job.request.max_tokens)
    if response is not None:
        ctx.limiter.observe(response.headers)
    if err.kind in MAYBE_BILLED:  # the API may have billed it: spend its worst case for good
        ctx.journal.maybe_billed(rid, job.held_usd)
        ctx.budget.settle(job.held_usd, job.held_usd)
        job.held_usd = 0.0
    if err.kind == "spend_limit":
        ctx.stop("spend_limit", spend_limit_message(err.message))
    if not err.retryable or job.attempt >= retry.max_attempts or ctx.stopped is not None:
        _release(ctx, job)
        permanent = err.kind == "client_error"
        tries = f" (after {job.attempt} attempts)" if err.retryable else ""
        ctx.fail(rid, Failure(err.kind, f"{err.message}{tries}", permanent))
        return False
    if err.kind == "rate_limited" and err.retry_after is not None:
        delay = err.retry_after  # the API says exactly when
    else:
        delay = max(backoff_s(err.kind, job.attempt, retry, ctx.rng), err.retry_after or 0.0)
    ctx.stats["retries"] += 1
    if err.kind in ("rate_limited", "overloaded"):  # the whole client waits, not only this one
        ctx.limiter.pause(delay)
    else:
        await asyncio.sleep(delay)
    return await _reserve(ctx, job)


async def _reserve(ctx: RunContext, job: _Job) -> bool:
    """Hold the request's worst case in the budget (again after a maybe-billed attempt)."""
    if job.held_usd > 0:
        return True
    try:
        await ctx.budget.reserve(job.worst_usd)
    except BudgetExhausted as err:
        ctx.stop("budget", str(err))
        if job.attempt:  # it was sent before: record why it ends here
            ctx.fail(job.request.id, Failure("budget", str(err)))
        return False
    job.held_usd = job.worst_usd
    return True


def _release(ctx: RunContext, job: _Job) -> None:
    ctx.budget.settle(job.held_usd, 0.0)
    job.held_usd = 0.0
