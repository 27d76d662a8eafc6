"""The Claude teacher's config schema: the model, the API client's limits and retries, the prompt
cache, Message Batches, the budget, and the versioned price catalog (prices are config, never code).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from omegaconf import MISSING, DictConfig

from distill.config import Checks, TeacherConfig
from distill.teachers.retry import RetryConfig


@dataclass
class ModelCard:
    """One Claude model in the catalog: USD per million tokens, accepted sampling parameters and
    the minimum cacheable prefix. Prices are config (`conf/teacher/catalog/`), never code."""

    input: float = MISSING
    output: float = MISSING
    cache_write_5m: float = MISSING
    cache_write_1h: float = MISSING
    cache_read: float = MISSING
    batch_discount: float = 0.5  # Message Batches bill this fraction of every price
    min_cache_tokens: int = 1024  # a shorter prefix is silently not cached
    sampling: list[str] = field(default_factory=list)  # parameters the model accepts
    sampling_exclusive: list[str] = field(default_factory=list)  # at most one of these at once


@dataclass
class CatalogConfig:
    """A versioned price and capability table, one `ModelCard` per API model id."""

    version: str = "none"
    models: dict[str, ModelCard] = field(default_factory=dict)


@dataclass
class RateLimitConfig:
    """Client-side limits per minute; `follow_headers` adopts the `anthropic-ratelimit-*-limit`
    response headers (up or down), else headers can only lower them."""

    requests_per_minute: float = 50
    input_tokens_per_minute: float = 50_000
    output_tokens_per_minute: float = 10_000
    burst_s: float = 2.0  # bucket size in seconds of the rate: how much may go out at once
    follow_headers: bool = True


@dataclass
class PromptCacheConfig:
    """`cache_control` on the shared system prompt and few-shot prefix."""

    enabled: bool = True
    ttl: str = "5m"
    count_tokens: bool = True  # measure the prefix once (count_tokens endpoint) for the warning


@dataclass
class BatchConfig:
    """Message Batches mode (`teacher.mode=batch`)."""

    chunk_size: int = 1000
    poll_interval_s: float = 30.0


@dataclass
class ClaudeTeacherConfig(TeacherConfig):
    """Claude through the Anthropic API: model, limits, retries, prompt cache, batches, budget,
    and the price catalog (conf/teacher/catalog/)."""

    kind: str = "claude"
    name: str = "${.model}"
    model: str = MISSING
    max_new_tokens: int = 4096
    api_key_env: str = "ANTHROPIC_API_KEY"
    max_concurrency: int = 8
    base_url: str | None = None  # null: $ANTHROPIC_BASE_URL, else the SDK's default
    mode: str = "messages"  # or "batch": Message Batches, half price, answers within 24 h
    timeout_s: float = 600.0
    stream_min_tokens: int = 2048  # requests allowed this many output tokens stream
    budget_usd: float | None = None  # a hard cap on spend, worst case reserved before sending
    sampling: dict[str, float] = field(default_factory=dict)  # only what the model accepts
    few_shot: list[dict[str, str]] = field(default_factory=list)  # {role, content} turns
    rate_limits: RateLimitConfig = field(default_factory=RateLimitConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    cache: PromptCacheConfig = field(default_factory=PromptCacheConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)

    def __post_init__(self) -> None:
        check = Checks()
        check.require(self.max_new_tokens > 0, "teacher.max_new_tokens must be > 0")
        check.require(self.max_concurrency > 0, "teacher.max_concurrency must be > 0")
        roles = [m.get("role") for m in self.few_shot]
        check.require(
            roles == ["user", "assistant"] * (len(roles) // 2),
            "teacher.few_shot: give user/assistant turns in pairs, each {role: ..., content: ...}",
        )
        check.require(
            bool(self.model), "teacher.model is empty: set teacher.model=<Claude model id>"
        )
        if self.model:
            check.problems += claude_problems(self)
        check.done()


def api_key_problems(cfg: DictConfig) -> Iterable[str]:
    """The API key must be in the environment before anything is sent or paid for."""
    if not os.environ.get(cfg.teacher.api_key_env):
        yield (
            f"teacher={cfg.teacher.name} needs an Anthropic API key but ${cfg.teacher.api_key_env} "
            f"is not set: run `export {cfg.teacher.api_key_env}=sk-ant-...` (create a key at "
            "console.anthropic.com), or use the offline default teacher (drop the teacher override)"
        )


CLAUDE_MODES = ("messages", "batch")
CACHE_TTLS = ("5m", "1h")


def claude_problems(t: ClaudeTeacherConfig) -> list[str]:
    """The Claude settings' problems: mode, limits, budget and the model's catalog entry."""
    check = Checks()
    check.require(t.mode in CLAUDE_MODES, f"teacher.mode={t.mode!r}: use one of {CLAUDE_MODES}")
    check.require(t.cache.ttl in CACHE_TTLS, f"teacher.cache.ttl={t.cache.ttl!r}: use 5m or 1h")
    check.require(
        t.budget_usd is None or t.budget_usd > 0,
        f"teacher.budget_usd={t.budget_usd}: give a positive cap in USD, or null for none",
    )
    check.require(t.timeout_s > 0, f"teacher.timeout_s={t.timeout_s}: must be > 0")
    for key in ("requests_per_minute", "input_tokens_per_minute", "output_tokens_per_minute"):
        value = getattr(t.rate_limits, key)
        check.require(value > 0, f"teacher.rate_limits.{key}={value}: must be > 0")
    check.require(t.retry.max_attempts >= 1, "teacher.retry.max_attempts must be >= 1")
    check.require(
        1 <= t.batch.chunk_size <= 100_000,
        f"teacher.batch.chunk_size={t.batch.chunk_size}: use 1..100000 (the API's batch limit)",
    )
    card = t.catalog.models.get(t.model)
    if card is None:
        known = ", ".join(sorted(t.catalog.models)) or "none"
        check.problems.append(
            f"teacher.model={t.model} has no entry in the price table teacher.catalog (version "
            f"{t.catalog.version}; models: {known}): pick one of those or add "
            f"teacher.catalog.models.{t.model} with its prices"
        )
        return check.problems
    for name in t.sampling:
        check.require(
            name in card.sampling,
            f"teacher.sampling.{name}: {t.model} does not accept {name} (it accepts: "
            f"{', '.join(card.sampling) or 'no sampling parameters'}); remove it, diversity "
            "comes from the prompts",
        )
    both = [n for n in card.sampling_exclusive if n in t.sampling]
    check.require(
        len(both) <= 1, f"teacher.sampling: {t.model} takes only one of {both}; remove one"
    )
    return check.problems
