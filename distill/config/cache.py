"""The white-box teacher's sparse logit cache (`distill teacher-cache`)."""

from __future__ import annotations

from dataclasses import dataclass

from distill.config.base import CACHE_DTYPES, CACHE_KINDS, Checks


@dataclass
class LogitCacheConfig:
    """The precomputed sparse teacher logit cache that `distill teacher-cache` writes.

    `kind: topk` keeps the `k` most likely ids, their log-probabilities and the log of the mass
    outside them; `kind: sampled` keeps `draws` tokens drawn with replacement (Anshumann et al.
    2025, arXiv 2503.16870) as unique ids with their counts. Both at `temperature`.
    """

    path: str | None = None  # null: <run dir>/teacher_cache
    kind: str = "topk"
    k: int = 64
    draws: int = 64
    temperature: float = 1.0
    logp_dtype: str = "float16"
    shard_records: int = 256
    batch_size: int | None = None  # null: teacher.batch_size
    device: str = "auto"  # auto: cuda when available, else cpu

    def __post_init__(self) -> None:
        check = Checks()
        check.require(
            self.kind in CACHE_KINDS, f"teacher_cache.kind={self.kind!r}: use one of {CACHE_KINDS}"
        )
        check.require(self.k >= 1, f"teacher_cache.k={self.k}: must be >= 1")
        check.require(1 <= self.draws <= 65535, f"teacher_cache.draws={self.draws}: use 1..65535")
        check.require(self.temperature > 0, f"teacher_cache.temperature={self.temperature}: > 0")
        check.require(
            self.logp_dtype in CACHE_DTYPES,
            f"teacher_cache.logp_dtype={self.logp_dtype!r}: use one of {CACHE_DTYPES}",
        )
        check.require(self.shard_records >= 1, "teacher_cache.shard_records must be >= 1")
        check.require(
            self.batch_size is None or self.batch_size >= 1,
            f"teacher_cache.batch_size={self.batch_size}: must be >= 1 or null",
        )
        check.done()
