"""The client-side rate limiter on its own (a controlled clock) and against the fake API's
enforced limits."""

from __future__ import annotations

import asyncio
import time

from distill.teachers.claude import ClaudeTeacher
from distill.teachers.ratelimit import RateLimiter
from tests.teachers.conftest import claude_config
from tests.teachers.test_claude import requests, run


class Clock:
    """Time that moves only when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter_on(clock: Clock, *limits: float, **kwargs) -> RateLimiter:
    return RateLimiter(*limits, clock=clock, sleep=clock.sleep, **kwargs)


def drive(limiter: RateLimiter, clock: Clock, calls: list[tuple[int, int]]) -> list[float]:
    """Acquire each (input, max_tokens) in order; return the clock at each start."""
    starts: list[float] = []

    async def main() -> None:
        for input_tokens, max_tokens in calls:
            await limiter.acquire(input_tokens, max_tokens)
            starts.append(clock.now)

    asyncio.run(main())
    return starts


def test_requests_per_minute_spread_evenly_after_a_short_burst():
    clock = Clock()
    limiter = limiter_on(clock, 60, 1e9, 1e9, burst_s=3)  # 1 request/s, 3 at once
    starts = drive(limiter, clock, [(1, 1)] * 8)
    assert starts[:3] == [0.0, 0.0, 0.0]
    assert [round(b - a, 6) for a, b in zip(starts[2:], starts[3:], strict=False)] == [1.0] * 5


def test_output_tokens_are_reserved_from_max_tokens_and_refunded():
    clock = Clock()
    limiter = limiter_on(clock, 1e9, 1e9, 600, burst_s=10)  # 10 tokens/s, 100 at once
    starts = drive(limiter, clock, [(1, 100), (1, 100)])
    assert starts == [0.0, 10.0]  # the second waits for the first's reservation to refill
    limiter.settle(1, 1, max_tokens=100, output=10)  # it used 10: 90 come back at once
    assert drive(limiter, clock, [(1, 90)]) == [10.0]


def test_headers_adjust_the_limits_and_a_pause_holds_everyone():
    clock = Clock()
    limiter = limiter_on(clock, 50, 1000, 1000)
    limiter.observe({"anthropic-ratelimit-requests-limit": "4000",
                     "anthropic-ratelimit-output-tokens-limit": "400",
                     "anthropic-ratelimit-output-tokens-remaining": "7"})  # fmt: skip
    assert limiter.limits() == {"requests": 4000, "input": 1000, "output": 400}
    assert limiter.buckets["output"].level == 7
    capped = limiter_on(clock, 50, 1000, 1000, follow_headers=False)
    capped.observe({"anthropic-ratelimit-requests-limit": "4000",
                    "anthropic-ratelimit-input-tokens-limit": "10"})  # fmt: skip
    assert capped.limits() == {"requests": 50, "input": 10, "output": 1000}
    limiter.pause(2.5)
    assert drive(limiter, clock, [(1, 1)]) == [2.5]


def test_the_client_keeps_to_an_enforced_limit(serve, tmp_path):
    """The fake API enforces 480 requests/min with 429s; the client stays under it (no 429)
    and close to it."""
    api = serve(rate_limits={"requests": 480}, latency_s=0.05)
    config = claude_config(api, "rate_limits.requests_per_minute=480", "rate_limits.burst_s=1",
                           "max_concurrency=8")  # fmt: skip
    teacher = ClaudeTeacher(config, "k")
    start = time.perf_counter()
    outcomes = run(teacher, requests(24), tmp_path)
    seconds = time.perf_counter() - start
    assert len(outcomes) == 24 and teacher.stats["answered"] == 24
    assert teacher.stats["errors/rate_limited"] == 0
    # 8 at once, then 8 a second: 2 s for 24 at the limit.
    assert 1.9 <= seconds < 5, seconds
