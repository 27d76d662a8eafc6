"""The sparse teacher logit cache: its on-disk format, its manifest, and the reader training uses.

`distill teacher-cache` (the builder is `distill.data.cache.builder`) writes one folder:

    manifest.json    what the cache was built from: teacher, tokenizer, chat template, kind, ...
    index.json       record id -> [shard, first position, positions, first slot]; written last,
                     so a folder without it is a build that has not finished
    shard-00000/     `teacher_cache.shard_records` records, renamed into place once complete
        records.json   the shard's record ids and their [first position, positions, first slot]
        ids.npy        (S,) token ids of every slot, position after position (uint16 or int32)
        val.npy        (S,) topk: log-probabilities (float16/float32); sampled: draw counts
        width.npy      (N,) sampled only: slots of each position (the unique ids drawn)
        tail.npy       (N,) topk only: log of the teacher mass outside the k ids (float32)
        entropy.npy    (N,) the teacher's entropy at the capture temperature (float32)

The positions of a record are its scored positions t (labels[t+1] != -100), in order; position t
holds the teacher's distribution over the token at t+1, like logits.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerBase

from distill.errors import UserError
from distill.losses.base import IGNORE_INDEX, SparseTargets

FORMAT_VERSION = 1
MANIFEST, INDEX = "manifest.json", "index.json"
# Manifest fields a training run must share with the cache, and the override that sets each.
MATCH_FIELDS = {
    "teacher": "teacher.path",
    "teacher_weights": "teacher.path",
    "vocab": "student.path",
    "chat_template": "student.path",
    "max_length": "data.max_length",
    "kind": "teacher_cache.kind",
    "k": "teacher_cache.k",
    "draws": "teacher_cache.draws",
    "temperature": "teacher_cache.temperature",
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
FINGERPRINT_BYTES = 1 << 16


class CacheError(UserError, ValueError):
    """A teacher cache that is missing, unfinished, or built for other settings."""


def cache_dir(cfg: DictConfig, run_dir: Path) -> Path:
    """`teacher_cache.path` when given, else `<run dir>/teacher_cache`."""
    path = cfg.teacher_cache.get("path")
    return Path(path) if path else Path(run_dir) / "teacher_cache"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def weights_fingerprint(model_dir: str | Path) -> str | None:
    """A cheap identity of a local model folder's weights: names, sizes, first and last 64 KiB.

    None for a hub id (no local folder); the hash of every byte would take minutes for a 7B model.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES):
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        with open(file, "rb") as f:
            digest.update(f.read(FINGERPRINT_BYTES))
            f.seek(max(0, size - FINGERPRINT_BYTES))
            digest.update(f.read())
    return digest.hexdigest()[:16]


def tokenizer_identity(tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    """Hashes of the vocabulary (added tokens included) and of the chat template."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    return {"vocab": _sha(vocab), "chat_template": _sha(str(tokenizer.chat_template))}


def expected_manifest(cfg: DictConfig, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The `MATCH_FIELDS` a cache must hold to serve the run `cfg` (student tokenizer given).

    Resolves `teacher.path` to its folder (no weights are loaded) to fingerprint the weights.
    """
    from distill.models.sources import resolve_model_dir

    tc = cfg.teacher_cache
    return {
        "teacher": str(cfg.teacher.path),
        "teacher_weights": weights_fingerprint(resolve_model_dir(cfg.teacher.path)),
        **tokenizer_identity(tokenizer),
        "max_length": int(cfg.data.max_length),
        "kind": str(tc.kind),
        "k": int(tc.k) if tc.kind == "topk" else None,
        "draws": int(tc.draws) if tc.kind == "sampled" else None,
        "temperature": float(tc.temperature),
    }


def manifest_differences(found: dict[str, Any], expect: dict[str, Any]) -> list[str]:
    """'field: cache X, run Y' for each field of `expect` that `found` holds differently."""
    return [
        f"{key}: cache {found.get(key)!r}, run {value!r}"
        for key, value in expect.items()
        if found.get(key) != value
    ]


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _mismatch_error(path: Path, problems: list[str], expect: dict[str, Any]) -> CacheError:
    fields = [p.split(":")[0] for p in problems]
    overrides = sorted(
        {
            f"{MATCH_FIELDS[f]}={expect[f]}"
            for f in fields
            if MATCH_FIELDS.get(f, "").startswith(("teacher_cache.", "data."))
            and expect.get(f) is not None
        }
    )
    hint = f" {' '.join(overrides)}" if overrides else ""
    return CacheError(
        f"teacher cache {path} was built for other settings than this run's: "
        + "; ".join(problems)
        + f". Rebuild it with `distill teacher-cache teacher_cache.path={path}{hint}` and this "
        "run's teacher, student and data (delete the folder first), or set teacher_cache.path to "
        "a cache built for these settings"
    )


class LogitCache:
    """Reads a finished cache; `batch` lays its sparse targets out like a batch's logits.

    Picklable (DataLoader workers): shards are memory-mapped lazily and never pickled.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], index: dict[str, Any]) -> None:
        self.path, self.manifest = Path(path), manifest
        self.shard_names: list[str] = index["shards"]
        self.records: dict[str, list[int]] = index["records"]
        self._shards: dict[int, dict[str, np.ndarray]] = {}

    @classmethod
    def open(cls, path: str | Path, expect: dict[str, Any] | None = None) -> LogitCache:
        """Open the cache at `path`, checking its manifest against `expect` (`expected_manifest`).

        Raises:
            CacheError: the cache is missing or unfinished, or a field differs (each is named).
        """
        path = Path(path)
        if not (path / MANIFEST).exists():
            raise CacheError(
                f"teacher cache {path} does not exist: build it with "
                f"`distill teacher-cache teacher_cache.path={path}` (same teacher, student, data)"
            )
        manifest = json.loads((path / MANIFEST).read_text())
        problems = manifest_differences(manifest, expect or {})
        if problems:
            raise _mismatch_error(path, problems, expect or {})
        if not (path / INDEX).exists():
            raise CacheError(
                f"teacher cache {path} is unfinished (a build was stopped): rerun "
                f"`distill teacher-cache teacher_cache.path={path}`, which resumes it"
            )
        return cls(path, manifest, json.loads((path / INDEX).read_text()))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_shards": {}}

    def __contains__(self, record_id: str) -> bool:
        return record_id in self.records

    def __len__(self) -> int:
        return len(self.records)

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    def _shard(self, i: int) -> dict[str, np.ndarray]:
        if i not in self._shards:
            folder = self.path / self.shard_names[i]
            self._shards[i] = {f.stem: np.load(f, mmap_mode="r") for f in folder.glob("*.npy")}
        return self._shards[i]

    def record(self, record_id: str) -> dict[str, np.ndarray]:
        """The stored arrays of one record: `width` (n,), flat `ids`/`logp` (S,), `tail`, `entropy`.

        Raises:
            CacheError: naming the id when the cache does not hold it.
        """
        if record_id not in self.records:
            raise CacheError(
                f"record {record_id} is not in the teacher cache {self.path}: the dataset gained "
                f"records since the cache was built; rerun `distill teacher-cache "
                f"teacher_cache.path={self.path}` with this dataset (it adds only what is missing)"
            )
        shard_i, p0, n, f0 = self.records[record_id]
        shard = self._shard(shard_i)
        if self.kind == "topk":
            width = np.full(n, self.manifest["k"], dtype=np.int64)
            tail = np.asarray(shard["tail"][p0 : p0 + n], dtype=np.float32)
        else:
            width = np.asarray(shard["width"][p0 : p0 + n], dtype=np.int64)
            tail = np.full(n, -np.inf, dtype=np.float32)
        stop = f0 + int(width.sum())
        val = np.asarray(shard["val"][f0:stop], dtype=np.float32)
        if self.kind == "sampled":  # counts -> log(count / draws), exact from the integers
            val = np.log(val) - math.log(self.manifest["draws"])
        return {
            "width": width,
            "ids": np.asarray(shard["ids"][f0:stop], dtype=np.int64),
            "logp": val,
            "tail": tail,
            "entropy": np.asarray(shard["entropy"][p0 : p0 + n], dtype=np.float32),
        }

    def check_covers(self, record_ids: list[str]) -> None:
        """Raise before training when records of the dataset are missing from the cache."""
        missing = [rid for rid in record_ids if rid not in self]
        if missing:
            raise CacheError(
                f"the teacher cache {self.path} lacks {len(missing)} of the dataset's "
                f"{len(record_ids)} records (e.g. {', '.join(missing[:3])}): the dataset changed "
                f"since the cache was built; rerun `distill teacher-cache data.dataset=... "
                f"teacher_cache.path={self.path}` (it computes only the missing shards)"
            )

    def batch(self, record_ids: list[str], labels: torch.Tensor) -> SparseTargets:
        """The teacher's sparse targets for a batch, aligned with its positions.

        Args:
            record_ids: the dataset id of each row (B,).
            labels: (B, T) with IGNORE_INDEX on prompt and padding, as collated for training.

        Returns:
            SparseTargets with ids/logp (B, T, K) (K = k for topk; the most unique ids of any
            position in the batch for sampled), tail_logp and entropy (B, T). Positions that are
            not scored hold id 0 and logp 0 in slot 0, -inf elsewhere; unused slots id 0, -inf.

        Raises:
            CacheError: a record is missing, or its scored positions differ from the cache's.
        """
        scored = (labels[:, 1:] != IGNORE_INDEX).cpu().numpy()
        b_size, t_size = labels.shape
        rows = [self._row(rid, scored[b]) for b, rid in enumerate(record_ids)]
        width = max([int(r["width"].max(initial=0)) for r in rows] + [1])
        if self.kind == "topk":
            width = max(width, int(self.manifest["k"]))
        ids = np.zeros((b_size, t_size, width), dtype=np.int64)
        logp = np.full((b_size, t_size, width), -np.inf, dtype=np.float32)
        logp[:, :, 0] = 0.0
        tail = np.full((b_size, t_size), -np.inf, dtype=np.float32)
        entropy = np.zeros((b_size, t_size), dtype=np.float32)
        for b, row in enumerate(rows):
            pos, w = row["positions"], row["width"]
            at = np.repeat(pos, w)
            slot = np.arange(len(at)) - np.repeat(np.cumsum(w) - w, w)
            logp[b, pos, 0] = -np.inf
            ids[b, at, slot], logp[b, at, slot] = row["ids"], row["logp"]
            tail[b, pos], entropy[b, pos] = row["tail"], row["entropy"]
        return SparseTargets(
            ids=torch.from_numpy(ids),
            logp=torch.from_numpy(logp),
            tail_logp=torch.from_numpy(tail),
            kind=self.kind,
            temperature=float(self.manifest["temperature"]),
            entropy=torch.from_numpy(entropy),
        )

    def _row(self, record_id: str, scored: np.ndarray) -> dict[str, np.ndarray]:
        row = self.record(record_id)
        positions = np.flatnonzero(scored)
        if len(positions) != len(row["width"]):
            raise CacheError(
                f"record {record_id}: the teacher cache {self.path} holds {len(row['width'])} "
                f"scored positions but the batch has {len(positions)}: the cache was built with "
                "another tokenisation (student tokenizer, data.max_length); rebuild it with "
                f"`distill teacher-cache teacher_cache.path={self.path}` (delete it first)"
            )
        return {**row, "positions": positions}
