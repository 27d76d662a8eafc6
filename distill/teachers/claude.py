"""Claude as a text teacher through the official `anthropic` SDK's async client.

This is the foundation version: bounded concurrency, the SDK's own retries, usage and cost per
answer, and answers yielded as they complete so the caller stores each one at once. Rate
limiting, batches, prompt caching and the budget cap build on this.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig

from distill.teachers.base import Answer, Messages

log = logging.getLogger(__name__)

# USD per million tokens: (input, output). Cache fields are billed as input until caching lands.
PRICES_PER_MTOK = {
    "claude-opus-4-5": (5.0, 25.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
}


def cost_usd(model: str, usage: dict[str, int]) -> float:
    """Cost of one response from its `usage`; 0 for a model without a known price."""
    price_in, price_out = PRICES_PER_MTOK.get(model, (0.0, 0.0))
    tokens_in = (
        usage.get("input_tokens", 0)
        + usage.get("cache_read_input_tokens", 0)
        + usage.get("cache_creation_input_tokens", 0)
    )
    return (tokens_in * price_in + usage.get("output_tokens", 0) * price_out) / 1e6


class ClaudeTeacher:
    """Answers prompts with a Claude model.

    Args:
        model: the API model id.
        name: recorded as the `teacher` of each record.
        max_tokens: per answer.
        max_concurrency: requests in flight at once.
        api_key: the Anthropic API key.
    """

    white_box = False

    def __init__(
        self, model: str, name: str, max_tokens: int, max_concurrency: int, api_key: str
    ) -> None:
        self.model, self.name = model, name
        self.max_tokens, self.max_concurrency, self.api_key = max_tokens, max_concurrency, api_key

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ClaudeTeacher:
        api_key = os.environ.get(cfg.api_key_env)
        if not api_key:
            raise RuntimeError(
                f"${cfg.api_key_env} is not set: export {cfg.api_key_env}=sk-ant-..."
            )
        return cls(cfg.model, cfg.name, cfg.max_new_tokens, cfg.max_concurrency, api_key)

    def settings(self) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self.max_tokens}

    def answer(self, conversations: list[Messages]) -> Iterator[tuple[int, Answer]]:
        """Run the async requests on a worker thread; yield answers here as they arrive."""
        results: queue.Queue = queue.Queue()
        worker = threading.Thread(target=lambda: asyncio.run(self._run(conversations, results)))
        worker.start()
        for _ in range(len(conversations)):
            item = results.get()
            if isinstance(item, BaseException):
                worker.join()
                raise item
            yield item
        worker.join()

    async def _run(self, conversations: list[Messages], results: queue.Queue) -> None:
        from anthropic import AsyncAnthropic

        limit = asyncio.Semaphore(self.max_concurrency)
        async with AsyncAnthropic(api_key=self.api_key) as client:

            async def one(index: int, messages: Messages) -> None:
                system = "\n".join(m["content"] for m in messages if m["role"] == "system")
                turns = [m for m in messages if m["role"] != "system"]
                async with limit:
                    response = await client.messages.create(
                        model=self.model,
                        max_tokens=self.max_tokens,
                        messages=turns,
                        **({"system": system} if system else {}),
                    )
                text = "".join(b.text for b in response.content if b.type == "text")
                usage = {k: v for k, v in response.usage.model_dump().items() if isinstance(v, int)}
                results.put((index, Answer(text, usage, cost_usd(self.model, usage))))

            try:
                await asyncio.gather(*(one(i, m) for i, m in enumerate(conversations)))
            except BaseException as err:  # surface the failure to the consuming thread
                results.put(err)
