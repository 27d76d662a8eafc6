"""The fake API's model: token counts, a prefix cache, answers, billing and rate limits.

Tokens are counted as one per four characters (at least one per block) plus three per message.
The prefix cache follows the API's rules: a `cache_control` block ends a cacheable prefix; a
prefix shorter than `min_cache_tokens` is never cached (silently); a read is the longest cached
prefix, a write the rest up to the last breakpoint, with its 5-minute or 1-hour lifetime.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

TTL_S = {"5m": 300.0, "1h": 3600.0}


def tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _blocks(body: dict[str, Any]) -> list[tuple[str, dict | None]]:
    """(text, cache_control) of every prompt block in order: system, then each message."""
    out: list[tuple[str, dict | None]] = []
    system = body.get("system") or []
    for block in [{"text": system}] if isinstance(system, str) else system:
        out.append((block["text"], block.get("cache_control")))
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            out.append((content, None))
        else:
            out += [(b["text"], b.get("cache_control")) for b in content]
    return out


class FakeModel:
    """Answers, caches and bills; enforces per-minute limits when given."""

    def __init__(
        self,
        answer_tokens: int | None,
        min_cache_tokens: int,
        rate_limits: dict[str, float] | None,
        burst_s: float = 5.0,
        reply: Callable[[str], str] | None = None,
    ) -> None:
        self.reply = reply  # the answer's text for a prompt (None: a short code block)
        self.answer_tokens, self.min_cache_tokens = answer_tokens, min_cache_tokens
        self.bills: list[dict[str, Any]] = []
        self.cache: dict[str, float] = {}  # prefix hash -> expiry time
        self.limits = dict(rate_limits or {})
        now = time.monotonic()
        self.levels = {k: (v, now) for k, v in self.limits.items()}
        self.burst_s = burst_s
        self.lock = threading.Lock()

    def count_input(self, body: dict[str, Any]) -> int:
        return sum(tokens(t) for t, _ in _blocks(body)) + 3 * len(body["messages"])

    def answer(self, body: dict[str, Any], batch: bool) -> dict[str, Any]:
        """The complete message for `body`, billed."""
        prompt = body["messages"][-1]["content"]
        prompt = prompt if isinstance(prompt, str) else prompt[-1]["text"]
        text = f"```python\ndef answer():\n    return {len(prompt)}\n```"
        if self.reply is not None:
            text = self.reply(prompt)
        if self.answer_tokens:
            text += "\n\n" + "word " * max(0, self.answer_tokens - tokens(text))
        stop = "end_turn"
        if tokens(text) > body["max_tokens"]:
            text, stop = text[: body["max_tokens"] * 4], "max_tokens"
        usage = self._cache_usage(body)
        usage["output_tokens"] = tokens(text)
        self._bill(body, prompt, usage, batch)
        self._charge_output(body["max_tokens"], usage["output_tokens"])
        return {
            "id": f"msg_{len(self.bills)}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }

    def _cache_usage(self, body: dict[str, Any]) -> dict[str, Any]:
        total = self.count_input(body)
        points, seen, hasher = [], 0, hashlib.sha256(body["model"].encode())
        for text, control in _blocks(body):
            seen += tokens(text)
            hasher.update(json.dumps(text).encode())
            if control and seen >= self.min_cache_tokens:
                points.append((seen, hasher.hexdigest(), control.get("ttl", "5m")))
        now, hit = time.monotonic(), 0
        writes = {"5m": 0, "1h": 0}
        with self.lock:
            for size, key, _ttl in reversed(points):
                if self.cache.get(key, 0) > now:
                    hit = size
                    break
            for size, key, ttl in points:
                if size > hit and self.cache.get(key, 0) <= now:
                    writes[ttl] += size - hit - sum(writes.values())
                self.cache[key] = now + TTL_S[ttl]
        written = sum(writes.values())
        return {
            "input_tokens": total - hit - written,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": hit,
            "cache_creation": {
                "ephemeral_5m_input_tokens": writes["5m"],
                "ephemeral_1h_input_tokens": writes["1h"],
            },
        }

    def _bill(self, body: dict[str, Any], prompt: str, usage: dict[str, Any], batch: bool) -> None:
        key_body = {k: v for k, v in body.items() if k != "stream"}
        with self.lock:
            self.bills.append(
                {
                    "key": hashlib.sha256(
                        json.dumps(key_body, sort_keys=True).encode()
                    ).hexdigest(),
                    "prompt": prompt,
                    "model": body["model"],
                    "batch": batch,
                    "input": usage["input_tokens"],
                    "output": usage["output_tokens"],
                    "cache_read": usage["cache_read_input_tokens"],
                    "cache_write_5m": usage["cache_creation"]["ephemeral_5m_input_tokens"],
                    "cache_write_1h": usage["cache_creation"]["ephemeral_1h_input_tokens"],
                }
            )

    # --- rate limits: token buckets like the API's, refilled continuously ------------------

    def _level(self, kind: str, now: float) -> float:
        level, then = self.levels[kind]
        capacity = self.limits[kind] * self.burst_s / 60
        return min(capacity, level + (now - then) * self.limits[kind] / 60)

    def admit(self, body: dict[str, Any]) -> dict[str, str] | None:
        """Take the request's share of every limit; None, or 429 headers with retry-after."""
        if not self.limits:
            return None
        want = {"requests": 1, "input": self.count_input(body), "output": body["max_tokens"]}
        now = time.monotonic()
        with self.lock:
            waits = []
            for kind in self.limits:
                capacity = self.limits[kind] * self.burst_s / 60
                missing = min(want[kind], capacity) - self._level(kind, now)
                waits.append(max(0.0, missing * 60 / self.limits[kind]))
            if max(waits) > 0:
                return {"retry-after": f"{max(waits):.3f}", **self._headers(now)}
            for kind in self.limits:
                self.levels[kind] = (self._level(kind, now) - want[kind], now)
        return None

    def _charge_output(self, max_tokens: int, used: int) -> None:
        if "output" in self.limits:  # reserved max_tokens up front; give back what was unused
            with self.lock:
                now = time.monotonic()
                self.levels["output"] = (self._level("output", now) + max_tokens - used, now)

    def ratelimit_headers(self) -> dict[str, str]:
        with self.lock:
            return self._headers(time.monotonic())

    def _headers(self, now: float) -> dict[str, str]:
        names = {"requests": "requests", "input": "input-tokens", "output": "output-tokens"}
        out = {}
        for kind, name in names.items():
            limit = self.limits.get(kind, 1_000_000)
            remaining = self._level(kind, now) if kind in self.limits else limit
            out[f"anthropic-ratelimit-{name}-limit"] = str(int(limit))
            out[f"anthropic-ratelimit-{name}-remaining"] = str(max(0, int(remaining)))
        return out
