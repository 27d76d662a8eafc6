"""What Claude answers cost: prices from the catalog, cost from `usage`, and the budget cap.

The budget reserves each request's worst case (every prompt byte a token billed at the dearest
input price, plus `max_tokens` at the output price) before it is sent, so spend never passes
the cap, even with many requests in flight.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from distill.teachers.base import Messages

MTOK = 1_000_000
# Per-message framing the tokenizer adds (role markers); generous on purpose.
MESSAGE_OVERHEAD_TOKENS = 16


@dataclass(frozen=True)
class Prices:
    """USD per million tokens for one model, and the Message Batches multiplier."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    batch_discount: float = 0.5

    @classmethod
    def from_card(cls, card: Any) -> Prices:
        """From a `ModelCard` (a dataclass or a DictConfig)."""
        keys = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
        return cls(
            *(float(card[k] if isinstance(card, dict) else getattr(card, k)) for k in keys),
            batch_discount=float(getattr(card, "batch_discount", 0.5)),
        )


def cache_writes(usage: dict[str, int], ttl: str = "5m") -> tuple[int, int]:
    """(5-minute, 1-hour) cache-write tokens; without the API's split, all at `ttl`."""
    if "ephemeral_5m_input_tokens" in usage or "ephemeral_1h_input_tokens" in usage:
        return usage.get("ephemeral_5m_input_tokens", 0), usage.get("ephemeral_1h_input_tokens", 0)
    written = usage.get("cache_creation_input_tokens", 0)
    return (0, written) if ttl == "1h" else (written, 0)


def usage_cost(
    usage: dict[str, int], prices: Prices, batch: bool = False, ttl: str = "5m"
) -> float:
    """The USD cost of one response from its `usage` (tokens by kind)."""
    w5, w1 = cache_writes(usage, ttl)
    total = (
        usage.get("input_tokens", 0) * prices.input
        + usage.get("output_tokens", 0) * prices.output
        + usage.get("cache_read_input_tokens", 0) * prices.cache_read
        + w5 * prices.cache_write_5m
        + w1 * prices.cache_write_1h
    ) / MTOK
    return total * (prices.batch_discount if batch else 1.0)


def prompt_token_bound(messages: Messages) -> int:
    """An upper bound on the prompt's tokens: a token is never shorter than one UTF-8 byte."""
    text = json.dumps(messages, ensure_ascii=False).encode()
    return len(text) + MESSAGE_OVERHEAD_TOKENS * (len(messages) + 1)


def worst_case_cost(
    messages: Messages, max_tokens: int, prices: Prices, batch: bool = False
) -> float:
    """The most one request can cost: the prompt bound at the dearest input price (a cache write
    costs more than plain input) and `max_tokens` of output."""
    dearest = max(prices.input, prices.cache_write_5m, prices.cache_write_1h)
    total = (prompt_token_bound(messages) * dearest + max_tokens * prices.output) / MTOK
    return total * (prices.batch_discount if batch else 1.0)


class BudgetExhausted(Exception):
    """The next request's worst case would take spend past `teacher.budget_usd`."""


class Budget:
    """Spend so far plus what is reserved for requests in flight never exceeds `cap_usd`.

    Args:
        cap_usd: the cap (None: no cap, only accounting).
        spent_usd: spend already committed (earlier runs, from the ledger).
        reserved_usd: reservations carried over (batches still running from an earlier run).
    """

    def __init__(
        self, cap_usd: float | None, spent_usd: float = 0.0, reserved_usd: float = 0.0
    ) -> None:
        self.cap, self.spent, self.reserved = cap_usd, spent_usd, reserved_usd
        self._changed = asyncio.Condition()

    def fits(self, amount: float) -> bool:
        return self.cap is None or self.spent + self.reserved + amount <= self.cap + 1e-12

    def reserve_now(self, amount: float) -> bool:
        """Reserve `amount` if it fits now; no waiting."""
        if not self.fits(amount):
            return False
        self.reserved += amount
        return True

    async def reserve(self, amount: float) -> None:
        """Reserve `amount`, waiting while requests in flight may still free some.

        Raises:
            BudgetExhausted: it cannot fit even once everything in flight has settled.
        """
        async with self._changed:
            while not self.fits(amount):
                if self.reserved <= 1e-12:
                    raise BudgetExhausted(self.describe(amount))
                await self._changed.wait()
            self.reserved += amount

    def settle(self, reserved: float, cost: float) -> None:
        """A request that reserved `reserved` was billed `cost` (0 when surely not billed)."""
        self.reserved = max(0.0, self.reserved - reserved)
        self.spent += cost
        self._notify()

    def describe(self, amount: float) -> str:
        return (
            f"teacher.budget_usd={self.cap}: ${self.spent:.4f} spent (earlier runs included) and "
            f"the next request could cost up to ${amount:.4f}; stopped sending. Raise "
            "teacher.budget_usd and rerun: nothing answered is asked again"
        )

    def _notify(self) -> None:
        async def wake() -> None:
            async with self._changed:
                self._changed.notify_all()

        try:
            asyncio.get_running_loop().create_task(wake())
        except RuntimeError:  # no loop: nobody is waiting
            pass
