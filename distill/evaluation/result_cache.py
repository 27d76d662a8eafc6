"""Opt-in on-disk cache of execution verdicts, keyed by what decides them.

The key is the sha256 of the program (or strict setup), the tests, the limits, the timeout, the
scoring mode and :data:`CACHE_VERSION`; bump the version whenever the sandbox or the verdict rules
change. One small JSON file per verdict, written atomically, so concurrent runs can share a folder.
Verdicts from a lost sandbox worker are never stored. Timeouts are stored like any verdict: a run
on a busier machine with the same key gets the same answer (clear the folder to re-measure).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

CACHE_VERSION = "sandbox-1"


def cache_key(**parts: Any) -> str:
    """The sha256 hex digest of ``parts`` (JSON, sorted keys) and :data:`CACHE_VERSION`."""
    blob = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResultCache:
    """A folder of cached verdicts (any frozen dataclass whose fields are JSON values)."""

    def __init__(self, folder: Path, result_type: type) -> None:
        self.folder = Path(folder)
        self.result_type = result_type
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        """The cached verdict for ``key``, or None (also for an unreadable entry)."""
        try:
            data = json.loads(self._path(key).read_text())
            return self.result_type(**data)
        except (OSError, ValueError, TypeError):
            return None

    def put(self, key: str, result: Any) -> None:
        """Store ``result`` under ``key`` (atomically: a reader never sees half a file)."""
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(dataclasses.asdict(result), f)
        os.replace(tmp, path)
