"""Claude as a text teacher through the official `anthropic` SDK's async client.

`ClaudeTeacher.answer` runs the async requests on a worker thread and yields answers as they
arrive; each answer is journaled (the ledger, fsynced) on that thread before it is yielded. The
parts: `ratelimit` (requests/input/output tokens per minute, adapted from the response headers),
`retry` (error classes, backoff), `pricing` (cost from usage, the budget cap),
`claude_messages` (one request per prompt, streaming the long ones) and `claude_batches`
(Message Batches, resumable). The SDK's own retries are off so every error is classified here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from distill.errors import UserError
from distill.teachers.base import Answer, Failure, Journal, Request, register_teacher
from distill.teachers.claude_common import RunContext, estimate_tokens, request_params
from distill.teachers.claude_config import ClaudeTeacherConfig, api_key_problems
from distill.teachers.pricing import Budget, Prices
from distill.teachers.ratelimit import RateLimiter
from distill.teachers.retry import classify

log = logging.getLogger(__name__)


@register_teacher("claude")
class ClaudeTeacher:
    """Answers prompts with a Claude model.

    Args:
        config: the `teacher` config (model, limits, retry, cache, batch, budget, catalog).
        api_key: the Anthropic API key.

    Attributes:
        stats: counters of the last `answer` run (answers, errors by class, cache, batches).
        stopped: (reason, message) when the last run stopped sending early, else None.
    """

    Config = ClaudeTeacherConfig
    capabilities = frozenset({"text"})  # the API gives no token log-probabilities

    def __init__(self, config: ClaudeTeacherConfig, api_key: str) -> None:
        self.cfg, self.api_key = config, api_key
        self.name, self.model = config.name, config.model
        self.max_tokens = config.max_new_tokens
        self.card = config.catalog.models[config.model]
        self.prices = Prices.from_card(self.card)
        self.stats: Counter = Counter()
        self.stopped: tuple[str, str] | None = None
        self._task: tuple[asyncio.AbstractEventLoop, asyncio.Task] | None = None

    @classmethod
    def problems(cls, cfg: DictConfig) -> Iterable[str]:
        return api_key_problems(cfg)

    @classmethod
    def from_config(
        cls, cfg: DictConfig | ClaudeTeacherConfig, hardware: DictConfig | None = None
    ) -> ClaudeTeacher:
        """`hardware` is not used: Claude runs at Anthropic."""
        config = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg
        api_key = os.environ.get(config.api_key_env)
        if not api_key:
            raise UserError(
                f"${config.api_key_env} is not set: export {config.api_key_env}=sk-ant-..."
            )
        return cls(config, api_key)

    def settings(self, max_tokens: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens or self.max_tokens}
        if self.cfg.sampling:
            out["sampling"] = dict(sorted(self.cfg.sampling.items()))
        return out

    def answer(self, requests: list[Request], journal: Journal) -> Iterator[tuple[str, Any]]:
        """Yield (request id, Answer | Failure) as each arrives, each journaled first."""
        if not requests:
            return
        out: queue.Queue = queue.Queue()
        done = object()

        def work() -> None:
            try:
                asyncio.run(self._run(requests, journal, out.put))
            except BaseException as err:  # noqa: BLE001 (surfaced in the consuming thread)
                out.put(err)
            finally:
                out.put(done)

        worker = threading.Thread(target=work, name="claude-teacher", daemon=True)
        worker.start()
        try:
            while (item := out.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if worker.is_alive() and self._task is not None:  # the consumer stopped early
                loop, task = self._task
                loop.call_soon_threadsafe(task.cancel)
            worker.join()

    async def _run(self, requests: list[Request], journal: Journal, put: Any) -> None:
        from anthropic import AsyncAnthropic

        self._task = (asyncio.get_running_loop(), asyncio.current_task())
        self.stats, self.stopped = Counter(), None
        cfg, limits = self.cfg, self.cfg.rate_limits
        batch_reserve = sum(r for _, r in journal.open_batches().values())
        committed = float(getattr(journal, "committed_usd", 0.0))  # earlier runs
        ctx = RunContext(
            client=AsyncAnthropic(
                api_key=self.api_key, base_url=cfg.base_url, max_retries=0, timeout=cfg.timeout_s
            ),
            cfg=cfg,
            prices=self.prices,
            limiter=RateLimiter(
                limits.requests_per_minute,
                limits.input_tokens_per_minute,
                limits.output_tokens_per_minute,
                limits.burst_s,
                limits.follow_headers,
            ),
            budget=Budget(cfg.budget_usd, committed, batch_reserve),
            journal=journal,
            emit=lambda rid, outcome: put((rid, outcome)),
            stats=self.stats,
        )
        async with ctx.client:
            if cfg.cache.enabled:
                await self._warn_uncacheable(ctx, requests[0])
            if cfg.mode == "batch":
                from distill.teachers.claude_batches import run_batches

                await run_batches(ctx, requests)
            else:
                from distill.teachers.claude_messages import run_messages

                await run_messages(ctx, requests)
        self.stopped = ctx.stopped

    async def _warn_uncacheable(self, ctx: RunContext, request: Request) -> None:
        """Warn when the shared prefix (system prompt + few-shot) is below the model's minimum
        cacheable length: the API then caches nothing and says nothing."""
        prefix = request.messages[:-1]
        if not prefix:
            return
        tokens = estimate_tokens(prefix)
        if self.cfg.cache.count_tokens:
            probe = Request(request.id, [*prefix, {"role": "user", "content": "."}], 1)
            params = request_params(probe, self.cfg)
            params.pop("max_tokens")
            try:
                tokens = (await ctx.client.messages.count_tokens(**params)).input_tokens
            except Exception as err:  # noqa: BLE001 (an estimate is good enough for a warning)
                log.debug("count_tokens failed (%s); estimating the prefix", classify(err).kind)
        ctx.stats["cache/prefix_tokens"] = tokens
        minimum = self.card.min_cache_tokens
        if tokens < minimum:
            log.warning(
                "the shared prompt prefix (system prompt + few-shot) is about %d tokens, below "
                "%s's minimum cacheable length of %d (teacher.catalog.models.%s.min_cache_tokens):"
                " the API caches nothing and raises no error. Lengthen teacher.system_prompt or "
                "teacher.few_shot to benefit, or set teacher.cache.enabled=false",
                tokens,
                self.model,
                minimum,
                self.model,
            )


__all__ = ["Answer", "ClaudeTeacher", "Failure"]
