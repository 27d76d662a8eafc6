"""An OpenAI-compatible chat endpoint as a text teacher: an open model served by vLLM, SGLang,
TGI, llama.cpp's server or Ollama (`POST {base_url}/chat/completions`).

`teacher=openai_compatible teacher.model=<served name> teacher.base_url=http://host:8000/v1`.
Requests run `max_concurrency` at a time on threads; 429, 5xx, timeouts and dropped connections
are retried with backoff (`teacher.retry`), any other 4xx is recorded as failed with the server's
message. The endpoint reports no prices: answers cost 0 in the records.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import httpx
from omegaconf import MISSING, DictConfig, OmegaConf

from distill.config import Checks, TeacherConfig
from distill.teachers.base import Answer, Failure, Journal, Request, register_teacher
from distill.teachers.retry import RetryConfig, backoff_s

log = logging.getLogger(__name__)
RETRIED_STATUS = {408: "timeout", 429: "rate_limited", 409: "server_error"}


@dataclass
class OpenAICompatibleConfig(TeacherConfig):
    """The endpoint, the served model's name, and how answers are sampled and retried."""

    kind: str = "openai_compatible"
    name: str = "${.model}"
    model: str = MISSING  # the name the server serves the model under
    base_url: str = "http://localhost:8000/v1"
    api_key_env: str | None = None  # e.g. OPENAI_API_KEY; null: the server wants no key
    max_concurrency: int = 8
    timeout_s: float = 600.0
    temperature: float = 0.0  # greedy by default: the same prompt gives the same answer
    # the server's own sampling fields, sent with every request (`+teacher.extra_body.top_k=1`):
    # llama.cpp's Python server applies repeat_penalty 1.1 unless told 1.0, so temperature 0
    # alone is not greedy there (experiments/serving)
    extra_body: dict[str, Any] = field(default_factory=dict)
    retry: RetryConfig = field(default_factory=lambda: RetryConfig(max_attempts=4))

    def __post_init__(self) -> None:
        check = Checks()
        check.require(self.max_new_tokens > 0, "teacher.max_new_tokens must be > 0")
        check.require(self.max_concurrency > 0, "teacher.max_concurrency must be > 0")
        check.require(self.timeout_s > 0, f"teacher.timeout_s={self.timeout_s}: must be > 0")
        check.require(self.temperature >= 0, f"teacher.temperature={self.temperature}: >= 0")
        check.require(self.retry.max_attempts >= 1, "teacher.retry.max_attempts must be >= 1")
        check.require(
            self.base_url.startswith(("http://", "https://")),
            f"teacher.base_url={self.base_url!r}: give the server's URL, e.g. "
            "http://localhost:8000/v1",
        )
        check.done()


@register_teacher("openai_compatible")
class OpenAICompatibleTeacher:
    """Answers prompts through a chat-completions endpoint.

    Args:
        config: the `teacher` config (OpenAICompatibleConfig).
        api_key: sent as a bearer token, or None.
    """

    Config = OpenAICompatibleConfig
    capabilities = frozenset({"text"})  # a served model's logits do not reach us

    def __init__(self, config: OpenAICompatibleConfig, api_key: str | None = None) -> None:
        self.cfg, self.name, self.max_tokens = config, config.name, config.max_new_tokens
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._rng = random.Random(0)

    @classmethod
    def problems(cls, cfg: DictConfig) -> Iterable[str]:
        env = cfg.teacher.api_key_env
        if env and not os.environ.get(env):
            yield (
                f"teacher={cfg.teacher.name}: teacher.api_key_env={env} but ${env} is not set: "
                f"run `export {env}=...`, or set teacher.api_key_env=null for a server without keys"
            )

    @classmethod
    def from_config(
        cls, cfg: DictConfig, hardware: DictConfig | None = None
    ) -> OpenAICompatibleTeacher:
        """`hardware` is not used: the model runs on the server."""
        config = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg
        return cls(config, os.environ.get(config.api_key_env) if config.api_key_env else None)

    def settings(self, max_tokens: int | None = None) -> dict[str, Any]:
        # not the URL: the same model served elsewhere gives the same answers
        return {
            "model": self.cfg.model,
            "temperature": self.cfg.temperature,
            "max_tokens": max_tokens or self.max_tokens,
            **dict(self.cfg.extra_body),
        }

    def answer(self, requests: list[Request], journal: Journal) -> Iterator[tuple[str, Any]]:
        """Yield (request id, Answer or Failure) as each completes, journaled first."""
        if not requests:
            return
        limits = httpx.Limits(max_connections=self.cfg.max_concurrency)
        with (
            httpx.Client(timeout=self.cfg.timeout_s, limits=limits, headers=self.headers) as http,
            ThreadPoolExecutor(self.cfg.max_concurrency) as pool,
        ):
            futures = {pool.submit(self._ask, http, r): r.id for r in requests}
            for future in as_completed(futures):
                rid, outcome = futures[future], future.result()
                if isinstance(outcome, Failure):
                    journal.failed(rid, outcome)
                else:
                    journal.answered(rid, outcome)
                yield rid, outcome

    def _ask(self, http: httpx.Client, request: Request) -> Answer | Failure:
        """One request, retried while the error is one that passes."""
        body = {
            **dict(self.cfg.extra_body),
            "model": self.cfg.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": self.cfg.temperature,
        }
        url = f"{self.cfg.base_url.rstrip('/')}/chat/completions"
        for attempt in range(1, self.cfg.retry.max_attempts + 1):
            kind, message = self._post(http, url, body)
            if isinstance(kind, Answer):
                return kind
            if kind == "client_error" or attempt == self.cfg.retry.max_attempts:
                tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                return Failure(kind, f"{message}{tries}", permanent=kind == "client_error")
            wait = backoff_s(kind, attempt, self.cfg.retry, self._rng)
            log.debug("%s: %s (%s); retrying in %.1f s", request.id, kind, message, wait)
            time.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns")

    def _post(self, http: httpx.Client, url: str, body: dict[str, Any]) -> tuple[Any, str]:
        """(Answer, "") or (error class, message) for one POST."""
        try:
            response = http.post(url, json=body)
        except httpx.TimeoutException as err:
            return "timeout", str(err) or "timed out"
        except httpx.TransportError as err:
            return "connection", f"{type(err).__name__}: {err} ({url})"
        if response.status_code >= 400:
            kind = RETRIED_STATUS.get(response.status_code)
            kind = kind or ("server_error" if response.status_code >= 500 else "client_error")
            return kind, f"HTTP {response.status_code}: {response.text[:300]}"
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"]
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as err:
            return "malformed", f"{type(err).__name__}: {response.text[:300]}"
        tokens = {
            "input_tokens": int(usage.get("prompt_tokens", 0)),
            "output_tokens": int(usage.get("completion_tokens", 0)),
        }
        return Answer(str(text or "").strip(), tokens), ""
