"""The cache of derived models (the GGUF conversion, pruned students, tiny random models).

Each is built once into `cache_root()`: written to a temporary folder and renamed, so an
interrupted build leaves no half model, with the size and sha256 of every file it wrote recorded,
so a damaged copy is found (once per process) before anything loads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from distill.errors import UserError

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """`$DISTILL_CACHE`, else `$XDG_CACHE_HOME/distill`, else `~/.cache/distill`."""
    if os.environ.get("DISTILL_CACHE"):
        return Path(os.environ["DISTILL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "distill"


BUILD_RECORD = "distill-build.json"
_verified: dict[Path, int] = {}  # folder -> mtime of the record it was verified against


class CorruptCache(UserError, RuntimeError):
    """A cached derived model is incomplete or its files changed since they were built."""


def build_once(name: str, build: Callable[[Path], None]) -> Path:
    """Return `cache_root()/name`, calling `build(tmp_dir)` first if it does not exist yet.

    Raises:
        CorruptCache: the folder exists but a file is missing or differs from what was built.
    """
    target = cache_root() / name
    if target.exists():
        verify_build(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        build(tmp)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        record = {str(p.relative_to(tmp)): _digest(p) for p in files}
        (tmp / BUILD_RECORD).write_text(json.dumps(record, indent=1))
        try:
            tmp.rename(target)
        except OSError:  # another process finished first; its copy is as good as ours
            if not (target / BUILD_RECORD).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _verified[target] = (target / BUILD_RECORD).stat().st_mtime_ns
    return target


def verify_build(folder: Path) -> None:
    """Check every file of a built folder against its build record (hashed once per process)."""
    record_path = folder / BUILD_RECORD
    fix = f"delete it (`rm -rf {folder}`) and run again: it is rebuilt from its source"
    if not record_path.is_file():
        raise CorruptCache(
            f"the cached model {folder} has no {BUILD_RECORD} (an older distill built it, or it "
            f"was damaged): {fix}"
        )
    stamp = record_path.stat().st_mtime_ns
    if _verified.get(folder) == stamp:
        return
    for rel, (size, sha256) in json.loads(record_path.read_text()).items():
        path = folder / rel
        found = _digest(path, want_size=size) if path.is_file() else None
        if found != [size, sha256]:
            state = "is missing" if found is None else "differs from what was built"
            raise CorruptCache(f"the cached model {folder} is damaged: {rel} {state}; {fix}")
    _verified[folder] = stamp


def _digest(path: Path, want_size: int | None = None) -> list:
    """`[size, sha256]` of a file (the hash is skipped when the size already differs)."""
    size = path.stat().st_size
    if want_size is not None and size != want_size:
        return [size, None]
    return [size, file_sha256(path)]


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(*parts: object) -> str:
    """A short stable hash of `parts`, for naming derived folders."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:10]
