"""Scores of the teacher and the untrained student, kept once for every arm of a sweep.

In an ablation every arm scores the same teacher and the same untrained student on the same
held-out answers and benchmark problems; only the trained student differs. With
``baselines=<folder>`` the pipeline stores those two rows there under a key of everything that
decides them (the models' configs, the attention implementation, the exact held-out batches, the
eval settings, and the seed when evaluation samples) and later arms read them instead of scoring
again. Greedy scores do not depend on the seed (an untrained LoRA adds exactly zero), so the seeds
of a greedy sweep share one pair of baseline rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from distill.evaluation.prompts import POSTPROCESS_VERSION

VERSION = "baselines-2"  # 2: rows carry per-problem pass@1 (the paired test)


def baseline_key(cfg: DictConfig, student: torch.nn.Module, val_batches: list[dict]) -> str:
    """The sha256 of what decides the teacher's and the untrained student's scores."""
    digest = hashlib.sha256(VERSION.encode())
    parts = {
        group: OmegaConf.to_container(cfg[group], resolve=True)
        for group in ("teacher", "student", "eval", "hardware")
    }
    parts["seed"] = cfg.seed if cfg.eval.get("num_samples", 1) > 1 else None
    parts["postprocess"] = POSTPROCESS_VERSION
    parts["attn"] = getattr(getattr(student, "config", None), "_attn_implementation", None)
    digest.update(json.dumps(parts, sort_keys=True, default=repr).encode())
    for batch in val_batches:
        for name in sorted(batch):
            if isinstance(batch[name], torch.Tensor):
                digest.update(name.encode())
                digest.update(batch[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_baselines(folder: Path, key: str) -> dict[str, dict[str, Any]] | None:
    """The stored rows for ``key``, or None when there are none (or the file is unreadable)."""
    try:
        return json.loads((Path(folder) / f"{key}.json").read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return None


def store_baselines(folder: Path, key: str, rows: dict[str, dict[str, Any]]) -> Path:
    """Write ``rows`` atomically (arms running in parallel may share the folder)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plain = {
        label: {k: v for k, v in row.items() if isinstance(v, int | float | str | bool | dict)}
        for label, row in rows.items()
    }
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"version": VERSION, "rows": plain}, f, indent=1)
    path = folder / f"{key}.json"
    os.replace(tmp, path)
    return path
