"""The run directory: where each stage reads and writes, and the merged `metrics.json`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

METRICS_FILE = "metrics.json"


def dataset_path(cfg: DictConfig, run_dir: Path) -> Path:
    """`data.dataset` when given, else this run's own `data/dataset.jsonl`."""
    return Path(cfg.data.dataset) if cfg.data.dataset else Path(run_dir) / "data" / "dataset.jsonl"


def adapters_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "adapters"


def update_metrics(run_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Merge `metrics` into the run's metrics.json (written atomically) and return the whole."""
    path = Path(run_dir) / METRICS_FILE
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update({k: _plain(v) for k, v in metrics.items()})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True))
    tmp.replace(path)
    return merged


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
