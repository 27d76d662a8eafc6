"""Turn a model spec (`embedded:<name>`, `tiny:<role>`, a folder or a hub id) into a local folder.

Derived models (the GGUF conversion, tiny random models) are built once into the cache and reused;
each is written to a temporary folder and renamed, so an interrupted build leaves no half model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """`$DISTILL_CACHE`, else `$XDG_CACHE_HOME/distill`, else `~/.cache/distill`."""
    if os.environ.get("DISTILL_CACHE"):
        return Path(os.environ["DISTILL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "distill"


def build_once(name: str, build: Callable[[Path], None]) -> Path:
    """Return `cache_root()/name`, calling `build(tmp_dir)` first if it does not exist yet."""
    target = cache_root() / name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first; its copy is as good as ours
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_dir(spec: str) -> str:
    """A local folder for `spec`; hub ids are returned unchanged for `from_pretrained`."""
    scheme, _, name = spec.partition(":")
    if scheme == "embedded":
        from distill.models.embedded import embedded_model_dir

        return str(embedded_model_dir(name))
    if scheme == "tiny":
        from distill.testing import tiny_model_dir

        return str(tiny_model_dir(name))
    return spec


def cache_key(*parts: object) -> str:
    """A short stable hash of `parts`, for naming derived folders."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:10]
