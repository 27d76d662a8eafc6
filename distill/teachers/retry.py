"""Error classes of the Anthropic API and how long to wait before trying again.

| class | what | action |
|---|---|---|
| `rate_limited` | 429 | pause every request for `retry-after`, retry |
| `spend_limit` | a reached organization/workspace spend limit or billing stop | stop the run |
| `overloaded` | 529 `overloaded_error` | pause every request, back off longer, retry |
| `server_error` | other 5xx, 409 | exponential backoff with jitter, retry |
| `timeout` | the client's timeout, 408 | backoff, retry (the answer may have been billed) |
| `connection` | a dropped or refused connection | backoff, retry (may have been billed) |
| `malformed` | a 2xx body that does not parse | backoff, retry (may have been billed) |
| `client_error` | any other 4xx | recorded as failed with the API's message, never retried |

Retries are bounded by `teacher.retry.max_attempts`. The SDK's own retries are off
(`max_retries=0`) so every error passes through here and is counted.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

ERROR_CLASSES = (
    "rate_limited",
    "spend_limit",
    "overloaded",
    "server_error",
    "timeout",
    "connection",
    "malformed",
    "client_error",
)
RETRYABLE = frozenset(ERROR_CLASSES) - {"spend_limit", "client_error"}
# May have been billed although no answer arrived.
MAYBE_BILLED = frozenset({"timeout", "connection", "malformed"})
SPEND_LIMIT_MESSAGE = re.compile(r"usage limits|spend limit|credit balance", re.IGNORECASE)
TYPE_CLASSES = {
    "rate_limit_error": "rate_limited",
    "overloaded_error": "overloaded",
    "api_error": "server_error",
    "timeout_error": "timeout",
}


class MalformedAnswer(ValueError):
    """A 2xx response that parsed but is not a complete message."""


@dataclass(frozen=True)
class Classified:
    """One error, classified: its class, the API's message, and any `retry-after` seconds."""

    kind: str
    message: str
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


def classify(err: BaseException) -> Classified:
    """The class of an exception raised by the SDK (or by the HTTP layer under it).

    Raises:
        err itself when it is not an API or transport error (a bug, not a fault to retry).
    """
    import anthropic

    names = {c.__name__ for c in type(err).__mro__}
    if isinstance(err, anthropic.APITimeoutError) or "TimeoutException" in names:
        return Classified("timeout", str(err) or "timed out")
    if isinstance(err, anthropic.APIConnectionError) or "TransportError" in names:
        return Classified("connection", str(err) or type(err).__name__)
    if isinstance(err, anthropic.APIStatusError):
        return _classify_status(err)
    malformed = (anthropic.APIResponseValidationError, json.JSONDecodeError, MalformedAnswer)
    if isinstance(err, malformed) or ("ValidationError" in names):
        return Classified("malformed", f"{type(err).__name__}: {str(err)[:300]}")
    raise err


def _classify_status(err: Any) -> Classified:
    status = err.status_code
    error = err.body.get("error", {}) if isinstance(err.body, dict) else {}
    error = error if isinstance(error, dict) else {}
    kind_of_error = error.get("type") or ""
    message = str(error.get("message") or err.message)
    code = str(getattr(err, "error_code", None) or (error.get("details") or {}).get("error_code"))
    if (
        code.endswith("spend_limit_reached")
        or kind_of_error == "billing_error"
        or (status in (400, 402, 429) and SPEND_LIMIT_MESSAGE.search(message))
    ):
        return Classified("spend_limit", message)
    if status < 300 and kind_of_error in TYPE_CLASSES:  # an `error` event inside a stream
        return Classified(TYPE_CLASSES[kind_of_error], message)
    if status == 429:
        return Classified("rate_limited", message, retry_after_s(err.response.headers))
    if status == 529 or kind_of_error == "overloaded_error":
        return Classified("overloaded", message, retry_after_s(err.response.headers))
    if status == 408:
        return Classified("timeout", message)
    if status >= 500 or status == 409:
        return Classified("server_error", message)
    return Classified("client_error", f"{status} {kind_of_error}: {message}".strip())


def retry_after_s(headers: Any) -> float | None:
    """`retry-after-ms` or `retry-after` (seconds) from response headers, if present."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


@dataclass
class RetryConfig:
    """Bounded retries: exponential backoff with full jitter; 529 overloaded backs off longer."""

    max_attempts: int = 8
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    overloaded_backoff_s: float = 30.0
    max_overloaded_backoff_s: float = 600.0  # overloaded windows can last minutes


def backoff_s(kind: str, attempt: int, retry: Any, rng: random.Random) -> float:
    """Exponential backoff with jitter for the `attempt`-th retry (1-based).

    Args:
        kind: the error class; `overloaded` uses the longer `retry.overloaded_backoff_s` base.
        retry: a `RetryConfig`.
    """
    if kind == "overloaded":
        base, cap = retry.overloaded_backoff_s, retry.max_overloaded_backoff_s
    else:
        base, cap = retry.backoff_s, retry.max_backoff_s
    ceiling = min(cap, base * 2 ** (attempt - 1))
    # Equal jitter: spread over [ceiling/2, ceiling], so a retry never comes back at once.
    return ceiling * (0.5 + 0.5 * rng.random())
