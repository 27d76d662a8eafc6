"""The run directory: where each stage reads and writes, and the merged `metrics.json`."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from distill.redaction import scrub_text

log = logging.getLogger(__name__)
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
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # one per process: DDP ranks share the folder
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True))
    tmp.replace(path)
    return merged


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# --- Job records and sweeps --------------------------------------------------------------------

STATUS_FILE = "status.json"
SWEEP_FILE = "sweep_status.json"
JOB_NAME_CHARS = re.compile(r"[^A-Za-z0-9._=,+\-]")
MAX_JOB_NAME = 96


def job_name(num: Any, overrides: str = "") -> str:
    """A job's directory name: its number, then its overrides, filesystem-safe and short.

    `job_name(3, "loss=kl,train.max_steps=8")` is `3_loss=kl,train.max_steps=8`; characters
    outside [A-Za-z0-9._=,+-] become `_`, and a long name keeps its head and a hash of the rest.
    """
    # a key typed into an override names no folder
    clean = JOB_NAME_CHARS.sub("_", scrub_text(str(overrides or "")))
    if len(clean) > MAX_JOB_NAME:
        digest = hashlib.sha1(clean.encode()).hexdigest()[:8]
        clean = f"{clean[: MAX_JOB_NAME - 9]}~{digest}"
    return f"{num}_{clean}" if clean else str(num)


def write_status(run_dir: Path, status: str, **fields: Any) -> None:
    """Record a job's state (`running`, `completed`, `failed`) and details in status.json."""
    path = Path(run_dir) / STATUS_FILE
    record = {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({k: _plain(v) for k, v in record.items()}, indent=2))
    tmp.replace(path)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / STATUS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def sweep_jobs(sweep_dir: Path) -> list[Path]:
    """The job directories of a sweep (they hold `.hydra/`), in job-number order."""

    def number(path: Path) -> tuple[int, str]:
        head = path.name.split("_", 1)[0]
        return (int(head) if head.isdigit() else 1 << 30, path.name)

    return sorted((p for p in Path(sweep_dir).iterdir() if (p / ".hydra").is_dir()), key=number)


def summarize_sweep(sweep_dir: Path) -> dict[str, Any]:
    """Every job's status, written to the sweep's sweep_status.json; failed jobs listed first."""
    jobs = []
    for job_dir in sweep_jobs(sweep_dir):
        record = read_status(job_dir) or {"status": "unknown (no status.json: killed?)"}
        jobs.append({"job": job_dir.name, **record})
    failed = [j for j in jobs if j["status"] != "completed"]
    summary = {"jobs": len(jobs), "failed": [j["job"] for j in failed], "records": jobs}
    (Path(sweep_dir) / SWEEP_FILE).write_text(json.dumps(summary, indent=2))
    return summary


class SweepReport(Callback):
    """Hydra callback: at the end of a multirun, every job's outcome, the failed ones by name.

    Jobs never stop each other (each records its own failure, see `distill.cli.run_stage`); this
    lists them, writes sweep_status.json, and makes the command exit with 1 when any failed.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        summary = summarize_sweep(sweep_dir)
        failed = [r for r in summary["records"] if r["status"] != "completed"]
        log.info("sweep %s: %d job(s), %d failed", sweep_dir, summary["jobs"], len(failed))
        for record in failed:
            log.error(
                "  failed: %s: %s", record["job"], record.get("error", record["status"])[:500]
            )
        if failed:
            raise SystemExit(1)
