"""What the Claude request paths share: the run's context, request bodies and usage."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distill.teachers.base import Answer, Failure, Journal, Request
from distill.teachers.pricing import Budget, Prices, cache_writes
from distill.teachers.ratelimit import RateLimiter

log = logging.getLogger("distill.teachers.claude")
CHARS_PER_TOKEN = 4  # a rough estimate for rate limiting; the budget uses a true upper bound


@dataclass
class RunContext:
    """Everything the requests of one run share.

    Attributes:
        client: the SDK's `AsyncAnthropic` (its own retries off).
        cfg: the `TeacherConfig`.
        emit: hands (request id, Answer | Failure) to the caller; called after the journal.
        stats: counters for the progress bar and the summary.
        stopped: (reason, message) once the run stops sending (budget, spend limit).
    """

    client: Any
    cfg: Any
    prices: Prices
    limiter: RateLimiter
    budget: Budget
    journal: Journal
    emit: Callable[[str, Answer | Failure], None]
    stats: Counter = field(default_factory=Counter)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    stopped: tuple[str, str] | None = None

    def stop(self, reason: str, message: str) -> None:
        """Send nothing more; requests already in flight finish."""
        if self.stopped is None:
            self.stopped = (reason, message)
            log.error("stopping: %s", message)

    def deliver(self, rid: str, answer: Answer, stop_reason: str | None = None) -> None:
        """Journal an answer (durably), count it, then hand it on."""
        self.journal.answered(rid, answer)
        u = answer.usage
        self.stats["answered"] += 1
        self.stats["cost_usd"] += answer.cost_usd
        self.stats["usage/input_tokens"] += u.get("input_tokens", 0)
        self.stats["usage/output_tokens"] += u.get("output_tokens", 0)
        self.stats["cache/read_tokens"] += u.get("cache_read_input_tokens", 0)
        self.stats["cache/write_tokens"] += u.get("cache_creation_input_tokens", 0)
        w5, w1 = cache_writes(u, self.cfg.cache.ttl)
        self.stats["cache/write_5m_tokens"] += w5
        self.stats["cache/write_1h_tokens"] += w1
        self.stats["cache/hits"] += u.get("cache_read_input_tokens", 0) > 0
        self.stats["cache/writes"] += u.get("cache_creation_input_tokens", 0) > 0
        self.stats["truncated"] += stop_reason == "max_tokens"
        self.emit(rid, answer)

    def fail(self, rid: str, failure: Failure) -> None:
        self.journal.failed(rid, failure)
        self.stats["failed"] += 1
        self.stats[f"failed/{failure.kind}"] += 1
        self.emit(rid, failure)


def spend_limit_message(api_message: str) -> str:
    return (
        f"the Anthropic API refused with a reached spend limit: {api_message!r}. Nothing more is "
        "sent. Raise the limit in the Claude Console (Settings > Limits, or Billing) or wait for "
        "it to reset, then rerun the same command: stored answers are not asked again"
    )


def cache_control(ttl: str) -> dict[str, str]:
    return {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}


def request_params(request: Request, cfg: Any) -> dict[str, Any]:
    """The Messages API body for `request` (sampling aside, see `sampling_params`): the system
    prompt as a block and every turn but the last (the few-shot prefix) marked with
    `cache_control`, so the shared prefix is cached."""
    system = "\n".join(m["content"] for m in request.messages if m["role"] == "system")
    turns = [m for m in request.messages if m["role"] != "system"]
    mark = cache_control(cfg.cache.ttl) if cfg.cache.enabled else None
    messages = []
    for i, turn in enumerate(turns):
        block: dict[str, Any] = {"type": "text", "text": turn["content"]}
        if mark and i == len(turns) - 2:  # the end of the shared few-shot prefix
            block["cache_control"] = mark
        messages.append({"role": turn["role"], "content": [block]})
    params: dict[str, Any] = {
        "model": cfg.model,
        "max_tokens": request.max_tokens,
        "messages": messages,
    }
    if system:
        head: dict[str, Any] = {"type": "text", "text": system}
        if mark:
            head["cache_control"] = mark
        params["system"] = [head]
    return params


def sampling_params(cfg: Any) -> dict[str, float]:
    """The configured sampling parameters (validation allows only those the model accepts).

    The SDK's typed `create` no longer takes them, so messages send them as `extra_body`."""
    return dict(cfg.sampling)


def usage_dict(usage: Any) -> dict[str, int]:
    """The token counts of an SDK `Usage`, with the 5m/1h cache-write split flattened."""
    out = {
        "input_tokens": int(usage.input_tokens or 0),
        "output_tokens": int(usage.output_tokens or 0),
        "cache_creation_input_tokens": int(usage.cache_creation_input_tokens or 0),
        "cache_read_input_tokens": int(usage.cache_read_input_tokens or 0),
    }
    split = getattr(usage, "cache_creation", None)
    if split is not None:
        out["ephemeral_5m_input_tokens"] = int(split.ephemeral_5m_input_tokens or 0)
        out["ephemeral_1h_input_tokens"] = int(split.ephemeral_1h_input_tokens or 0)
    return out


def message_text(message: Any) -> str:
    return "".join(b.text for b in message.content if getattr(b, "type", None) == "text")


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A rough token count of a prompt (for rate limiting and the cache warning)."""
    return sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN + 4 * len(messages)
