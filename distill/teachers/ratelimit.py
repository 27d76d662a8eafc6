"""Client-side rate limiting on requests, input tokens and output tokens per minute.

Each limit is a token bucket refilled continuously at `limit / 60` per second (the API's own
algorithm), holding at most `burst_s` seconds of it so the client never fires a minute's quota at
once. A request may take a bucket into debt (an answer can need more output tokens than a short
bucket holds); the next one waits until the debt is repaid. Output tokens are reserved from
`max_tokens` when a request starts and the unused part is given back when it ends, as the API
does. The `anthropic-ratelimit-*` headers of every response adjust the limits, and a 429 or 529
pauses every request, not only the one that saw it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

MAX_NAP_S = 0.25
HEADER_KINDS = {"requests": "requests", "input-tokens": "input", "output-tokens": "output"}


class TokenBucket:
    """A bucket of `per_minute` units a minute, at most `burst_s` seconds of them at once."""

    def __init__(self, per_minute: float, burst_s: float, now: float) -> None:
        self.burst_s = burst_s
        self.per_minute = float(per_minute)
        self.level = self.capacity
        self.updated = now

    @property
    def capacity(self) -> float:
        return max(1.0, self.per_minute * self.burst_s / 60.0)

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.per_minute / 60)
        self.updated = now

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until `amount` may be taken (when the level reaches min(amount, capacity))."""
        self.refill(now)
        missing = min(amount, self.capacity) - self.level
        return max(0.0, missing * 60.0 / self.per_minute)

    def take(self, amount: float) -> None:
        self.level -= amount

    def give(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)

    def set_limit(self, per_minute: float) -> None:
        self.per_minute = float(per_minute)
        self.level = min(self.level, self.capacity)


class RateLimiter:
    """Requests, input tokens and output tokens per minute, shared by all requests of a run.

    Args:
        requests_per_minute, input_tokens_per_minute, output_tokens_per_minute: the limits.
        burst_s: how many seconds of each limit may go out at once.
        follow_headers: adopt the limits the API reports (else the headers only lower them).
        clock, sleep: monotonic seconds and the async sleep (tests may pass their own).
    """

    def __init__(
        self,
        requests_per_minute: float,
        input_tokens_per_minute: float,
        output_tokens_per_minute: float,
        burst_s: float = 2.0,
        follow_headers: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        now = clock()
        self.configured = {
            "requests": requests_per_minute,
            "input": input_tokens_per_minute,
            "output": output_tokens_per_minute,
        }
        self.buckets = {k: TokenBucket(v, burst_s, now) for k, v in self.configured.items()}
        self.follow_headers, self.clock, self.sleep = follow_headers, clock, sleep
        self.paused_until = 0.0
        self.waited_s = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self, input_tokens: int, max_tokens: int) -> None:
        """Wait until one request of `input_tokens` in and up to `max_tokens` out may start.

        Callers are served first come, first served (asyncio.Lock is fair).
        """
        want = {"requests": 1, "input": input_tokens, "output": max_tokens}
        async with self._lock:
            while True:
                now = self.clock()
                wait = max(self.paused_until - now, 0.0)
                wait = max([wait] + [b.wait_s(want[k], now) for k, b in self.buckets.items()])
                if wait <= 0:
                    break
                # Short naps: a response's headers may raise the limits meanwhile.
                nap = min(wait, MAX_NAP_S)
                self.waited_s += nap
                await self.sleep(nap)
            for key, bucket in self.buckets.items():
                bucket.take(want[key])

    def settle(self, estimated_input: int, input_tokens: int, max_tokens: int, output: int) -> None:
        """Correct the reservation with what the request really used (input counts the tokens
        the API rate-limits: uncached input plus cache writes)."""
        self.buckets["input"].give(estimated_input - input_tokens)
        self.buckets["output"].give(max_tokens - output)

    def cancel(self, estimated_input: int, max_tokens: int) -> None:
        """A request the API refused: its tokens were never used (the request still counts)."""
        self.settle(estimated_input, 0, max_tokens, 0)

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` (after a 429 retry-after or a 529)."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Adopt the `anthropic-ratelimit-<kind>-limit` / `-remaining` headers of a response."""
        now = self.clock()
        for name, key in HEADER_KINDS.items():
            bucket = self.buckets[key]
            limit = _number(headers.get(f"anthropic-ratelimit-{name}-limit"))
            if limit:
                ceiling = None if self.follow_headers else self.configured[key]
                new = limit if ceiling is None else min(limit, ceiling)
                if new != bucket.per_minute:
                    bucket.refill(now)
                    bucket.set_limit(new)
            remaining = _number(headers.get(f"anthropic-ratelimit-{name}-remaining"))
            if remaining is not None:
                bucket.refill(now)
                bucket.level = min(bucket.level, remaining)

    def limits(self) -> dict[str, float]:
        return {k: b.per_minute for k, b in self.buckets.items()}


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
