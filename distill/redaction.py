"""Masking secrets in everything a run writes (configs, logs, folder names).

Secrets are the values of environment variables named like `*API_KEY`, `*TOKEN`, `*SECRET`,
`*PASSWORD`, strings that look like Anthropic or W&B keys, and config values under keys named
`api_key`, `token`, `secret` or `password`. They are replaced by `***`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
SECRET_ENV = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)
SECRET_KEY = re.compile(r"(^|_)(api_?key|token|secret|password|passwd)$", re.IGNORECASE)
# Key formats worth catching wherever they appear, set in the environment or not.
SECRET_PATTERNS = (re.compile(r"sk-ant-[A-Za-z0-9_\-]{4,}"), re.compile(r"\blocal-[0-9a-f]{40}\b"))
MIN_SECRET_CHARS = 8  # shorter values ("1", "true") are no secrets and would mask too much


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the environment's secret-looking variables, longest first."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if SECRET_ENV.search(k) and len(v) >= MIN_SECRET_CHARS}
    return sorted(values, key=len, reverse=True)


def scrub_text(text: str, secrets: list[str] | None = None) -> str:
    """`text` with every secret value and key-like string replaced by `***`."""
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, MASK)
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(MASK, text)
    return text


def scrub(value: Any, secrets: list[str] | None = None) -> Any:
    """A copy of a plain container (dicts, lists, scalars) with secrets masked."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(value, Mapping):
        return {
            k: MASK if SECRET_KEY.search(str(k)) and value[k] else scrub(value[k], secrets)
            for k in value
        }
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    return scrub_text(value, secrets) if isinstance(value, str) else value
